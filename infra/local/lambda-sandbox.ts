import { parentPort, workerData } from 'node:worker_threads';
import type { Context } from 'aws-lambda';

/**
 * One Lambda sandbox: a worker thread that lambda-runtime.ts starts with the function's own
 * environment. It imports the function's bundle once (the init phase), tells the runtime whether init
 * worked, then runs each invocation it is sent: JSON in, JSON out, errors as Lambda reports them.
 */

export interface SandboxData {
  /** file URL of the bundle */
  bundle: string;
  /** the handler file's name, for the error Lambda gives when it exports no handler */
  entry: string;
}

/** A function error as Lambda reports it (`X-Amz-Function-Error`, `{errorType, errorMessage, trace}`). */
export interface FunctionErrorBody {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

/** What an invocation's Context holds besides the methods, which cannot cross threads. */
export type InvocationFacts = Omit<Context, 'done' | 'fail' | 'succeed' | 'getRemainingTimeInMillis'>;

export interface Invocation {
  id: number;
  /** the event as JSON text */
  event: string;
  facts: InvocationFacts;
  /** epoch ms when the function times out */
  deadline: number;
}

export type SandboxMessage =
  | { type: 'ready' }
  | { type: 'init-failed'; error: FunctionErrorBody }
  | { type: 'result'; id: number; result: string }
  | { type: 'error'; id: number; error: FunctionErrorBody };

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: Context, callback: Callback) => unknown;

const errorBody = (err: unknown): FunctionErrorBody =>
  err instanceof Error
    ? { errorType: err.name, errorMessage: err.message, trace: err.stack?.split('\n') ?? [] }
    : { errorType: 'Error', errorMessage: String(err), trace: [] };

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';

/** Lambda's handler contract: a returned promise, or the callback / legacy context methods. */
const callHandler = (handler: Handler, event: unknown, context: Omit<Context, 'done' | 'fail' | 'succeed'>) =>
  new Promise<unknown>((resolve, reject) => {
    const settle: Callback = (error, result) => (error ? reject(error) : resolve(result));
    const returned = handler(
      event,
      {
        ...context,
        done: settle,
        succeed: (result: unknown) => resolve(result),
        fail: (error: Error | string) => reject(error),
      },
      settle,
    );
    if (isThenable(returned)) returned.then(resolve, reject);
  });

const init = async (data: SandboxData): Promise<Handler> => {
  const mod = (await import(data.bundle).catch((err: unknown) => {
    // A missing module is the runtime's error; an exception thrown by module init is the function's.
    if ((err as NodeJS.ErrnoException | undefined)?.code === 'ERR_MODULE_NOT_FOUND') {
      throw Object.assign(new Error(String(err)), { name: 'Runtime.ImportModuleError' });
    }
    throw err;
  })) as { handler?: unknown };
  if (typeof mod.handler !== 'function') {
    throw Object.assign(new Error(`${data.entry}.handler is undefined or not exported`), {
      name: 'Runtime.HandlerNotFound',
    });
  }
  return mod.handler as Handler;
};

const port = parentPort;
if (!port) throw new Error('lambda-sandbox.ts runs as a worker thread of the local Lambda runtime');
const post = (message: SandboxMessage) => port.postMessage(message);

try {
  const handler = await init(workerData as SandboxData);
  port.on('message', async ({ id, event, facts, deadline }: Invocation) => {
    try {
      const context = { ...facts, getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()) };
      const result = await callHandler(handler, JSON.parse(event), context);
      // What crosses Lambda's wire: JSON text, so a Date arrives as a string and `undefined` as null.
      post({ type: 'result', id, result: JSON.stringify(result ?? null) });
    } catch (err) {
      post({ type: 'error', id, error: errorBody(err) });
    }
  });
  post({ type: 'ready' });
} catch (err) {
  post({ type: 'init-failed', error: errorBody(err) });
}
