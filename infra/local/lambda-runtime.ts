import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Context } from 'aws-lambda';
import type { FunctionDefinition, FunctionName } from '../../shared/manifest.js';

/**
 * Runs the project's Lambda handlers in this process as Lambda would: the module is loaded once (a warm
 * sandbox), each invocation gets its own Context, the payload and result cross a JSON boundary, errors
 * come back as Lambda's function errors, and the configured timeout is enforced.
 */

/** A function error as Lambda reports it (`X-Amz-Function-Error`, `{errorType, errorMessage, trace}`). */
export class LambdaFunctionError extends Error {
  override readonly name = 'LambdaFunctionError';
  constructor(
    readonly errorType: string,
    readonly errorMessage: string,
    readonly trace: string[] = [],
  ) {
    super(errorMessage);
  }
}

export interface LambdaRuntimeOptions {
  /** absolute path of the directory holding `<entry>.ts` */
  functionsDir: string;
  functions: Record<FunctionName, FunctionDefinition>;
  region?: string;
  accountId?: string;
}

export interface FunctionStats {
  invocations: number;
  errors: number;
  totalMs: number;
}

export interface LambdaRuntime {
  invoke(fn: FunctionName, event: unknown): Promise<unknown>;
  arnOf(fn: FunctionName): string;
  nameOf(fn: FunctionName): string;
  /** The function a name, a full or partial ARN, or a qualified ARN (`:$LATEST`, alias) refers to. */
  functionForArn(arnOrName: string): FunctionName | undefined;
  stats(): Record<FunctionName, FunctionStats>;
}

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: Context, callback: Callback) => unknown;

const FUNCTION_NAME_PREFIX = 'execution-runs-';

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';

const toFunctionError = (err: unknown): LambdaFunctionError => {
  if (err instanceof LambdaFunctionError) return err;
  if (err instanceof Error)
    return new LambdaFunctionError(err.name, err.message, err.stack?.split('\n') ?? []);
  return new LambdaFunctionError('Error', String(err));
};

/** What crosses Lambda's wire: JSON text, so a Date arrives as a string and `undefined` as null. */
const throughJson = (value: unknown): unknown =>
  value === undefined ? null : JSON.parse(JSON.stringify(value));

type InvocationFacts = Omit<Context, 'done' | 'fail' | 'succeed'>;

/** Lambda's handler contract: a returned promise, or the callback / legacy context methods. */
const callHandler = (handler: Handler, event: unknown, facts: InvocationFacts): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const settle: Callback = (error, result) => (error ? reject(error) : resolve(result));
    const context: Context = {
      ...facts,
      done: settle,
      succeed: (result: unknown) => resolve(result),
      fail: (error: Error | string) => reject(error),
    };
    const returned = handler(event, context, settle);
    if (isThenable(returned)) returned.then(resolve, reject);
  });

const logStreamName = (): string => {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  return `${day}/[$LATEST]${randomBytes(16).toString('hex')}`;
};

export const createLambdaRuntime = (options: LambdaRuntimeOptions): LambdaRuntime => {
  const { functionsDir, functions, region = 'us-east-1', accountId = '000000000000' } = options;
  const names = Object.keys(functions) as FunctionName[];
  const loaded = new Map<FunctionName, Promise<Handler>>();
  const failedInits = new Map<FunctionName, number>();
  const streams = new Map<FunctionName, string>();
  const counters = Object.fromEntries(
    names.map((fn) => [fn, { invocations: 0, errors: 0, totalMs: 0 }]),
  ) as Record<FunctionName, FunctionStats>;

  const nameOf = (fn: FunctionName) => `${FUNCTION_NAME_PREFIX}${fn}`;
  const arnOf = (fn: FunctionName) => `arn:aws:lambda:${region}:${accountId}:function:${nameOf(fn)}`;

  const load = (fn: FunctionName, definition: FunctionDefinition): Promise<Handler> => {
    const cached = loaded.get(fn);
    if (cached) return cached;
    const url = pathToFileURL(join(functionsDir, `${definition.entry}.ts`));
    // After a failed init Lambda starts a fresh sandbox; a new URL makes Node evaluate the module anew.
    const failures = failedInits.get(fn) ?? 0;
    if (failures > 0) url.search = `init=${failures}`;
    const loading = import(url.href).then(
      (mod: { handler?: unknown }) => {
        if (typeof mod.handler !== 'function') {
          throw new LambdaFunctionError(
            'Runtime.HandlerNotFound',
            `${definition.entry}.handler is undefined or not exported`,
          );
        }
        return mod.handler as Handler;
      },
      (err: unknown) => {
        // A missing module is the runtime's error; an exception thrown by module init is the function's.
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        if (code === 'ERR_MODULE_NOT_FOUND')
          throw new LambdaFunctionError('Runtime.ImportModuleError', String(err));
        throw err;
      },
    );
    loading.catch(() => {
      loaded.delete(fn);
      failedInits.set(fn, failures + 1);
    });
    loaded.set(fn, loading);
    return loading;
  };

  const invoke = async (fn: FunctionName, event: unknown): Promise<unknown> => {
    const definition = functions[fn];
    if (!definition) throw new LambdaFunctionError('ResourceNotFoundException', `Function not found: ${fn}`);
    const started = Date.now();
    const stats = counters[fn];
    stats.invocations += 1;
    let timer: NodeJS.Timeout | undefined;
    try {
      const handler = await load(fn, definition);
      const timeoutMs = definition.timeoutSeconds * 1000;
      const deadline = Date.now() + timeoutMs;
      let stream = streams.get(fn);
      if (!stream) {
        stream = logStreamName();
        streams.set(fn, stream);
      }
      const facts: InvocationFacts = {
        callbackWaitsForEmptyEventLoop: true,
        functionName: nameOf(fn),
        functionVersion: '$LATEST',
        invokedFunctionArn: arnOf(fn),
        memoryLimitInMB: String(definition.memoryMiB),
        awsRequestId: randomUUID(),
        logGroupName: `/aws/lambda/${nameOf(fn)}`,
        logStreamName: stream,
        getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      };
      // The handler keeps running after a timeout (it cannot be killed in-process); its outcome is dropped.
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new LambdaFunctionError(
                'Sandbox.Timedout',
                `Task timed out after ${definition.timeoutSeconds.toFixed(2)} seconds`,
              ),
            ),
          timeoutMs,
        );
      });
      const result = await Promise.race([callHandler(handler, throughJson(event ?? {}), facts), timedOut]);
      return throughJson(result);
    } catch (err) {
      stats.errors += 1;
      throw toFunctionError(err);
    } finally {
      clearTimeout(timer);
      stats.totalMs += Date.now() - started;
    }
  };

  const byName = new Map(names.map((fn) => [nameOf(fn), fn]));
  const functionForArn = (arnOrName: string): FunctionName | undefined => {
    const parts = arnOrName.split(':');
    if (parts[0] === 'arn') {
      // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
      if (parts[2] !== 'lambda' || parts[3] !== region || parts[4] !== accountId || parts[5] !== 'function') {
        return undefined;
      }
      return byName.get(parts[6] ?? '');
    }
    // <account>:function:<name>[:<qualifier>]
    if (parts[1] === 'function') return parts[0] === accountId ? byName.get(parts[2] ?? '') : undefined;
    // <name>[:<qualifier>]
    return byName.get(parts[0] ?? '');
  };

  return {
    invoke,
    arnOf,
    nameOf,
    functionForArn,
    stats: () => structuredClone(counters),
  };
};
