import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { build } from 'esbuild';
import type { EnvName } from '../../shared/config.js';
import {
  environmentFor,
  FUNCTION_DEFAULT_ENVIRONMENT,
  type FunctionDefinition,
  type FunctionName,
} from '../../shared/manifest.js';
import { bundleFunction, bundleFunctions } from '../bundling/build.js';
import type {
  FunctionErrorBody,
  Invocation,
  InvocationFacts,
  SandboxData,
  SandboxMessage,
} from './lambda-sandbox.js';
import { LogShipper, pipeLines } from './log-shipper.js';

/**
 * Runs the project's Lambda handlers as Lambda would, each function in a sandbox of its own: a worker
 * thread whose environment is exactly what the deployed function gets (its declared variables, the
 * manifest's defaults, what Lambda itself sets, and the local endpoints), so a variable the manifest
 * does not give a function is missing here too. A sandbox starts on the function's first invocation
 * (a cold start) and stays warm; the payload and result cross a JSON boundary, errors come back as
 * Lambda's function errors, and the configured timeout is enforced.
 *
 * Each sandbox runs the function's bundle, built with the settings CDK deploys it with
 * (infra/bundling): the code that runs locally is the code that ships, and a sandbox imports it in
 * about 60 ms where importing the TypeScript through tsx takes about 450 ms. The bundles are built
 * in the background as the runtime is created, all in one esbuild run (about 1 s).
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
  /** where the bundles go, a directory per function */
  bundleDir: string;
  functions: Record<FunctionName, FunctionDefinition>;
  region?: string;
  accountId?: string;
  /** every function's POWERTOOLS_LOG_LEVEL, in place of the deployed default */
  logLevel?: string;
}

/** A local deployment's configuration of the functions, as CDK sets it on AWS. */
export interface FunctionConfiguration {
  /** this deployment's value of each variable; each function gets those it declares */
  values: Partial<Record<EnvName, string>>;
  /** the `AWS_ENDPOINT_URL_<SERVICE>` variables that point a function's SDK clients at the emulators */
  endpoints: (fn: FunctionName) => Record<string, string>;
  /**
   * Where each function's output goes besides this process's: its log group `/aws/lambda/<name>`, a
   * stream per sandbox, as Lambda ships it.
   */
  logs?: CloudWatchLogsClient;
}

export interface FunctionStats {
  invocations: number;
  errors: number;
  totalMs: number;
}

export interface LambdaRuntime {
  invoke(fn: FunctionName, event: unknown): Promise<unknown>;
  /**
   * Changes the configuration as UpdateFunctionConfiguration does (`values` are merged in): sandboxes
   * started from now on get it, and warm ones are retired so that none keeps the old environment.
   */
  configure(changes: Partial<FunctionConfiguration>): void;
  /** the environment a new sandbox of the function gets */
  environmentOf(fn: FunctionName): Record<string, string>;
  arnOf(fn: FunctionName): string;
  nameOf(fn: FunctionName): string;
  /** The function a name, a full or partial ARN, or a qualified ARN (`:$LATEST`, alias) refers to. */
  functionForArn(arnOrName: string): FunctionName | undefined;
  stats(): Record<FunctionName, FunctionStats>;
  /** ends every sandbox */
  close(): Promise<void>;
}

export const FUNCTION_NAME_PREFIX = 'execution-runs-';
const SANDBOX_ENTRY = fileURLToPath(new URL('./lambda-sandbox.ts', import.meta.url));
/** what the emulators accept; Lambda hands a function its role's temporary credentials */
const CREDENTIALS = {
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  AWS_SESSION_TOKEN: 'local',
};

const fromBody = (body: FunctionErrorBody) =>
  new LambdaFunctionError(body.errorType, body.errorMessage, body.trace);

const toFunctionError = (err: unknown): LambdaFunctionError => {
  if (err instanceof LambdaFunctionError) return err;
  if (err instanceof Error)
    return new LambdaFunctionError(err.name, err.message, err.stack?.split('\n') ?? []);
  return new LambdaFunctionError('Error', String(err));
};

const logStreamName = (): string => {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  return `${day}/[$LATEST]${randomBytes(16).toString('hex')}`;
};

interface Pending {
  resolve(result: unknown): void;
  reject(error: LambdaFunctionError): void;
}

interface Sandbox {
  /** the worker once init has run and loaded the handler; the init error otherwise */
  ready: Promise<Worker>;
  logStreamName: string;
  /** its output on the way to its log stream */
  shipper?: LogShipper;
  /** invocations in flight, by id */
  pending: Map<number, Pending>;
  /** takes no new invocations, and ends once those in flight have settled */
  retired: boolean;
}

export const createLambdaRuntime = (options: LambdaRuntimeOptions): LambdaRuntime => {
  const { functionsDir, bundleDir, functions, region = 'us-east-1', accountId = '000000000000' } = options;
  const names = Object.keys(functions) as FunctionName[];
  const counters = Object.fromEntries(
    names.map((fn) => [fn, { invocations: 0, errors: 0, totalMs: 0 }]),
  ) as Record<FunctionName, FunctionStats>;
  let configuration: FunctionConfiguration = { values: {}, endpoints: () => ({}) };
  const sandboxes = new Map<FunctionName, Sandbox>();
  const live = new Set<Worker>();
  let invocationIds = 0;
  let closed = false;

  const nameOf = (fn: FunctionName) => `${FUNCTION_NAME_PREFIX}${fn}`;
  const arnOf = (fn: FunctionName) => `arn:aws:lambda:${region}:${accountId}:function:${nameOf(fn)}`;
  const logGroupOf = (fn: FunctionName) => `/aws/lambda/${nameOf(fn)}`;
  const taskRoot = (fn: FunctionName) => path.join(bundleDir, fn);

  // The sandbox's own code, built too: a worker thread does not inherit this process's TypeScript loader.
  const sandboxScript = path.join(bundleDir, 'lambda-sandbox.mjs');
  const buildSandbox = build({
    entryPoints: [SANDBOX_ENTRY],
    outfile: sandboxScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    logLevel: 'error',
  });
  const bundledTogether = bundleFunctions(
    Object.fromEntries(names.map((fn) => [fn, functions[fn].entry])),
    bundleDir,
    functionsDir,
  );
  // each function's cold start reports what went wrong for it
  bundledTogether.catch(() => undefined);
  const bundles = new Map<FunctionName, Promise<string>>();
  /**
   * The function's bundle: all are built together as the runtime starts; when that fails, each alone,
   * so that only a broken one fails (and is tried again at its next cold start).
   */
  const bundleOf = (fn: FunctionName): Promise<string> => {
    let built = bundles.get(fn);
    if (!built) {
      const outfile = path.join(taskRoot(fn), 'index.mjs');
      built = bundledTogether
        .catch(() => bundleFunction(functions[fn].entry, outfile, functionsDir))
        .then(
          () => outfile,
          (err: unknown) => {
            bundles.delete(fn);
            throw new LambdaFunctionError('Runtime.ImportModuleError', String(err));
          },
        );
      bundles.set(fn, built);
    }
    return built;
  };

  const environment = (fn: FunctionName, stream: string): Record<string, string> => {
    const definition = functions[fn];
    return {
      ...configuration.endpoints(fn),
      ...FUNCTION_DEFAULT_ENVIRONMENT,
      ...(options.logLevel ? { POWERTOOLS_LOG_LEVEL: options.logLevel } : {}),
      ...environmentFor(definition, configuration.values),
      // Lambda's own variables, which a function cannot set
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      ...CREDENTIALS,
      AWS_LAMBDA_FUNCTION_NAME: nameOf(fn),
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(definition.memoryMiB),
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_LAMBDA_LOG_GROUP_NAME: logGroupOf(fn),
      AWS_LAMBDA_LOG_STREAM_NAME: stream,
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
      LAMBDA_TASK_ROOT: taskRoot(fn),
      _HANDLER: 'index.handler',
      LANG: 'en_US.UTF-8',
      TZ: ':UTC',
      PATH: '/usr/local/bin:/usr/bin/:/bin:/opt/bin',
      // No X-Ray daemon and no trace header here: Powertools Tracer stays off rather than log the context missing.
      POWERTOOLS_TRACE_ENABLED: 'false',
      // Lambda runs Node 22, about which the SDK has nothing to say; this Node 20 would get a warning per sandbox.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
  };

  const endIfIdle = (sandbox: Sandbox) => {
    if (sandbox.retired && sandbox.pending.size === 0)
      sandbox.ready.then(
        (worker) => worker.terminate(),
        () => undefined,
      );
  };
  const retire = (fn: FunctionName, sandbox: Sandbox) => {
    sandbox.retired = true;
    if (sandboxes.get(fn) === sandbox) sandboxes.delete(fn);
    endIfIdle(sandbox);
  };

  /** The sandbox's output, to this process's (the terminal that started it) and, when configured, to its log stream. */
  const shipOutput = (fn: FunctionName, sandbox: Sandbox, worker: Worker) => {
    worker.stdout.pipe(process.stdout, { end: false });
    worker.stderr.pipe(process.stderr, { end: false });
    if (!configuration.logs) return;
    const shipper = new LogShipper(configuration.logs, logGroupOf(fn), sandbox.logStreamName);
    sandbox.shipper = shipper;
    pipeLines(worker.stdout, shipper);
    pipeLines(worker.stderr, shipper);
  };

  /** A cold start: a new sandbox with the function's environment, which loads its bundle. */
  const start = (fn: FunctionName): Sandbox => {
    const definition = functions[fn];
    const stream = logStreamName();
    const env = environment(fn, stream);
    const launch = (bundle: string) =>
      new Promise<Worker>((resolve, reject) => {
        if (closed) throw new Error('the local Lambda runtime is closed');
        const data: SandboxData = { bundle: pathToFileURL(bundle).href, entry: definition.entry };
        const worker = new Worker(sandboxScript, {
          env,
          workerData: data,
          stdout: true,
          stderr: true,
          // Node reads NODE_OPTIONS (--enable-source-maps: readable stack traces) as it starts, as in Lambda.
          execArgv: env.NODE_OPTIONS?.split(/\s+/).filter(Boolean) ?? [],
          resourceLimits: { maxOldGenerationSizeMb: definition.memoryMiB },
        });
        live.add(worker);
        shipOutput(fn, sandbox, worker);
        let crash: unknown;
        worker.on('message', (message: SandboxMessage) => {
          if (message.type === 'ready') return resolve(worker);
          if (message.type === 'init-failed') return reject(fromBody(message.error));
          const pending = sandbox.pending.get(message.id);
          sandbox.pending.delete(message.id);
          if (message.type === 'result') pending?.resolve(JSON.parse(message.result));
          else pending?.reject(fromBody(message.error));
          endIfIdle(sandbox);
        });
        // an exception no invocation caught (a stray callback, an unhandled rejection) ends the sandbox
        worker.on('error', (err) => {
          crash = err;
        });
        worker.on('exit', (code) => {
          live.delete(worker);
          void sandbox.shipper?.close();
          retire(fn, sandbox);
          const error =
            crash === undefined
              ? new LambdaFunctionError('Runtime.ExitError', `Runtime exited with error: exit status ${code}`)
              : toFunctionError(crash);
          reject(error);
          for (const pending of sandbox.pending.values()) pending.reject(error);
          sandbox.pending.clear();
        });
      });
    const sandbox: Sandbox = {
      ready: Promise.all([bundleOf(fn), buildSandbox]).then(([bundle]) => launch(bundle)),
      logStreamName: stream,
      pending: new Map(),
      retired: false,
    };
    // After a failed init Lambda starts a fresh sandbox for the next invocation.
    sandbox.ready.catch(() => retire(fn, sandbox));
    return sandbox;
  };

  const run = (fn: FunctionName, sandbox: Sandbox, worker: Worker, event: unknown): Promise<unknown> => {
    const definition = functions[fn];
    const timeoutMs = definition.timeoutSeconds * 1000;
    const id = ++invocationIds;
    const facts: InvocationFacts = {
      callbackWaitsForEmptyEventLoop: true,
      functionName: nameOf(fn),
      functionVersion: '$LATEST',
      invokedFunctionArn: arnOf(fn),
      memoryLimitInMB: String(definition.memoryMiB),
      awsRequestId: randomUUID(),
      logGroupName: logGroupOf(fn),
      logStreamName: sandbox.logStreamName,
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        sandbox.pending.delete(id);
        // Lambda discards a sandbox whose invocation timed out; others still running in it may finish.
        retire(fn, sandbox);
        reject(
          new LambdaFunctionError(
            'Sandbox.Timedout',
            `Task timed out after ${definition.timeoutSeconds.toFixed(2)} seconds`,
          ),
        );
      }, timeoutMs);
      sandbox.pending.set(id, {
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      const invocation: Invocation = {
        id,
        event: JSON.stringify(event ?? {}),
        facts,
        deadline: Date.now() + timeoutMs,
      };
      worker.postMessage(invocation);
    });
  };

  /** The function's warm sandbox, after a cold start if it has none. */
  const warmSandbox = async (fn: FunctionName): Promise<{ sandbox: Sandbox; worker: Worker }> => {
    for (;;) {
      let sandbox = sandboxes.get(fn);
      if (!sandbox) {
        sandbox = start(fn);
        sandboxes.set(fn, sandbox);
      }
      const worker = await sandbox.ready;
      // retired while it started (a timeout, a new configuration): another one takes the invocation
      if (!sandbox.retired) return { sandbox, worker };
    }
  };

  const invoke = async (fn: FunctionName, event: unknown): Promise<unknown> => {
    if (!functions[fn])
      throw new LambdaFunctionError('ResourceNotFoundException', `Function not found: ${fn}`);
    const started = Date.now();
    const stats = counters[fn];
    stats.invocations += 1;
    try {
      const { sandbox, worker } = await warmSandbox(fn);
      return await run(fn, sandbox, worker, event);
    } catch (err) {
      stats.errors += 1;
      throw toFunctionError(err);
    } finally {
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
    configure: (changes) => {
      configuration = {
        values: { ...configuration.values, ...changes.values },
        endpoints: changes.endpoints ?? configuration.endpoints,
        logs: changes.logs ?? configuration.logs,
      };
      for (const [fn, sandbox] of sandboxes) retire(fn, sandbox);
    },
    environmentOf: (fn) => environment(fn, logStreamName()),
    arnOf,
    nameOf,
    functionForArn,
    stats: () => structuredClone(counters),
    close: async () => {
      closed = true;
      // the Logs emulator may be gone already: what is still unsent goes nowhere
      for (const sandbox of sandboxes.values()) sandbox.shipper?.discard();
      sandboxes.clear();
      await Promise.all([...live].map((worker) => worker.terminate()));
      await Promise.allSettled([buildSandbox, bundledTogether, ...bundles.values()]);
    },
  };
};
