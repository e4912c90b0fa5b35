import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLambdaRuntime,
  LambdaFunctionError,
  type LambdaRuntime,
} from '../../infra/local/lambda-runtime.js';
import type { FunctionDefinition } from '../../shared/manifest.js';

const HANDLERS: Record<string, string> = {
  echo: `export const handler = async (event, context) => ({
    event,
    functionName: context.functionName,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    awsRequestId: context.awsRequestId,
    logGroupName: context.logGroupName,
    remaining: context.getRemainingTimeInMillis(),
    at: new Date(0),
  });`,
  counter: 'let calls = 0;\nexport const handler = async () => ++calls;',
  fails: `class RunNotFoundError extends Error { name = 'RunNotFoundError'; }
export const handler = async () => { throw new RunNotFoundError('no run run_1'); };`,
  callback:
    'export const handler = (event, context, callback) => { setTimeout(() => callback(null, { via: "callback" }), 5); };',
  'no-handler': 'export const somethingElse = 1;',
  // a marker beside the bundle outlives the sandbox whose init failed
  'init-fails-once': `import { existsSync, writeFileSync } from 'node:fs';
const marker = new URL('./init-tried', import.meta.url);
if (!existsSync(marker)) {
  writeFileSync(marker, '');
  throw new TypeError('TABLE_NAME is not set');
}
export const handler = async () => 'initialised';`,
  environment: 'export const handler = async () => ({ ...process.env });',
  'sandbox-id': `const id = Math.random();
export const handler = async (event: { waitMs?: number }) => {
  await new Promise((resolve) => setTimeout(resolve, event.waitMs ?? 0));
  return id;
};`,
  crashes: `export const handler = async (event: { how: string }) => {
  if (event.how === 'exit') process.exit(3);
  setTimeout(() => { throw new RangeError('a stray callback'); }, 1);
  return new Promise(() => undefined);
};`,
};

const fn = (
  entry: string,
  timeoutSeconds = 3,
  environment: FunctionDefinition['environment'] = [],
): FunctionDefinition => ({
  entry,
  timeoutSeconds,
  memoryMiB: 384,
  description: entry,
  environment,
  table: { actions: [], indexes: [] },
});

describe('createLambdaRuntime', () => {
  let dir: string;
  let runtime: LambdaRuntime;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lambda-runtime-'));
    await Promise.all(
      Object.entries(HANDLERS).map(([name, code]) => writeFile(join(dir, `${name}.ts`), code)),
    );
    runtime = createLambdaRuntime({
      functionsDir: dir,
      bundleDir: join(dir, 'bundles'),
      functions: {
        api: fn('echo', 2),
        agentApi: fn('counter'),
        startRun: fn('fails'),
        deadLetter: fn('echo'),
        checks: fn('callback'),
        markRetrying: fn('no-handler'),
        finalize: fn('does-not-exist'),
        parkPod: fn('init-fails-once'),
        podStopped: fn('environment', 3, ['TABLE_NAME', 'AGENT_API_URL']),
        reconcile: fn('sandbox-id', 0.2),
        sweeper: fn('crashes'),
        requestApproval: fn('environment'),
        approvals: fn('echo'),
        raisePullRequest: fn('echo'),
        githubWebhooks: fn('echo'),
        schedules: fn('echo'),
        scheduledDispatch: fn('echo'),
        pullRequestSweep: fn('echo'),
        stream: fn('echo'),
        runFeed: fn('echo'),
        runLogs: fn('echo'),
      },
      region: 'eu-west-1',
      accountId: '111122223333',
      logLevel: 'ERROR',
    });
    runtime.configure({
      values: { TABLE_NAME: 'runs', QUEUE_URL: 'http://queue', AGENT_API_URL: 'http://agent' },
      endpoints: (name) => ({ AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:1/fn/${name}` }),
    });
  });

  afterAll(async () => {
    await runtime.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('invokes the handler with a Lambda context and the event as JSON', async () => {
    const result = (await runtime.invoke('api', { runId: 'run_1', nested: { n: 1 } })) as Record<
      string,
      unknown
    >;

    expect(result).toMatchObject({
      event: { runId: 'run_1', nested: { n: 1 } },
      functionName: 'execution-runs-api',
      invokedFunctionArn: 'arn:aws:lambda:eu-west-1:111122223333:function:execution-runs-api',
      memoryLimitInMB: '384',
      logGroupName: '/aws/lambda/execution-runs-api',
      // the result crossed a JSON boundary, as Lambda's payloads do
      at: '1970-01-01T00:00:00.000Z',
    });
    expect(result.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.remaining).toBeGreaterThan(1500);
    expect(result.remaining).toBeLessThanOrEqual(2000);
  });

  it('loads a module once and keeps its state between invocations', async () => {
    expect(await runtime.invoke('agentApi', {})).toBe(1);
    expect(await runtime.invoke('agentApi', {})).toBe(2);
  });

  it('supports callback-style handlers', async () => {
    expect(await runtime.invoke('checks', {})).toEqual({ via: 'callback' });
  });

  it('rejects with the function error as Lambda reports it', async () => {
    const error = await runtime.invoke('startRun', {}).catch((err: unknown) => err);

    expect(error).toBeInstanceOf(LambdaFunctionError);
    expect(error).toMatchObject({ errorType: 'RunNotFoundError', errorMessage: 'no run run_1' });
    const { trace } = error as LambdaFunctionError;
    expect(trace[0]).toContain('no run run_1');
    // the bundle's source map leads the trace back to the handler's source
    expect(trace[1]).toMatch(/fails\.ts:2:\d+\)$/);
  });

  it('gives each function exactly its declared variables, the defaults, Lambda’s own and the endpoints', async () => {
    const env = (await runtime.invoke('podStopped', {})) as Record<string, string>;

    expect(env).toMatchObject({
      TABLE_NAME: 'runs',
      AGENT_API_URL: 'http://agent',
      POWERTOOLS_SERVICE_NAME: 'execution-runs',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      AWS_REGION: 'eu-west-1',
      AWS_LAMBDA_FUNCTION_NAME: 'execution-runs-podStopped',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '384',
      AWS_ACCESS_KEY_ID: expect.any(String),
      AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:1/fn/podStopped',
    });
    // declared by no function here, or by another one, or only in this process
    expect(env.QUEUE_URL).toBeUndefined();
    expect(env.HOME).toBeUndefined();
    expect(env.PATH).not.toBe(process.env.PATH);
    expect((await runtime.invoke('requestApproval', {})) as Record<string, string>).not.toHaveProperty(
      'TABLE_NAME',
    );
  });

  it('times out with Lambda wording and discards the sandbox, letting the rest of its work finish', async () => {
    const first = await runtime.invoke('reconcile', {});
    const slow = runtime.invoke('reconcile', { waitMs: 150 });
    const started = Date.now();
    const error = await runtime.invoke('reconcile', { waitMs: 1000 }).catch((err: unknown) => err);

    expect(Date.now() - started).toBeLessThan(500);
    expect(error).toMatchObject({
      errorType: 'Sandbox.Timedout',
      errorMessage: 'Task timed out after 0.20 seconds',
    });
    expect(await slow).toBe(first);
    const next = await runtime.invoke('reconcile', {});
    expect(next).not.toBe(first);
    expect(await runtime.invoke('reconcile', {})).toBe(next);
  });

  it('reports a sandbox that exits or crashes as the invocation’s error, and starts a fresh one next time', async () => {
    await expect(runtime.invoke('sweeper', { how: 'exit' })).rejects.toMatchObject({
      errorType: 'Runtime.ExitError',
      errorMessage: 'Runtime exited with error: exit status 3',
    });
    await expect(runtime.invoke('sweeper', { how: 'throw' })).rejects.toMatchObject({
      errorType: 'RangeError',
      errorMessage: 'a stray callback',
    });
  });

  it('retires warm sandboxes when the configuration changes, as a new deployment does', async () => {
    expect(await runtime.invoke('podStopped', {})).toMatchObject({ TABLE_NAME: 'runs' });

    runtime.configure({ values: { TABLE_NAME: 'runs-2' } });

    expect(await runtime.invoke('podStopped', {})).toMatchObject({
      TABLE_NAME: 'runs-2',
      AGENT_API_URL: 'http://agent',
    });
    expect(runtime.environmentOf('podStopped')).toMatchObject({ TABLE_NAME: 'runs-2' });
  });

  it('reports a missing handler export and a missing module as runtime errors', async () => {
    await expect(runtime.invoke('markRetrying', {})).rejects.toMatchObject({
      errorType: 'Runtime.HandlerNotFound',
      errorMessage: 'no-handler.handler is undefined or not exported',
    });
    await expect(runtime.invoke('finalize', {})).rejects.toMatchObject({
      errorType: 'Runtime.ImportModuleError',
    });
  });

  it('reports an exception thrown by module init as the function error, and inits anew next time', async () => {
    await expect(runtime.invoke('parkPod', {})).rejects.toMatchObject({
      errorType: 'TypeError',
      errorMessage: 'TABLE_NAME is not set',
    });

    expect(await runtime.invoke('parkPod', {})).toBe('initialised');
    expect(runtime.stats().parkPod).toMatchObject({ invocations: 2, errors: 1 });
  });

  it('counts invocations, errors and time per function', async () => {
    const before = runtime.stats();
    await runtime.invoke('agentApi', {});
    await runtime.invoke('startRun', {}).catch(() => undefined);

    const after = runtime.stats();
    expect(after.agentApi.invocations - before.agentApi.invocations).toBe(1);
    expect(after.agentApi.errors - before.agentApi.errors).toBe(0);
    expect(after.startRun.errors - before.startRun.errors).toBe(1);
    expect(after.reconcile.totalMs).toBeGreaterThanOrEqual(200);
  });

  it('names functions and finds them again from an ARN or a name', () => {
    const arn = runtime.arnOf('finalize');

    expect(runtime.nameOf('finalize')).toBe('execution-runs-finalize');
    expect(runtime.functionForArn(arn)).toBe('finalize');
    expect(runtime.functionForArn(`${arn}:$LATEST`)).toBe('finalize');
    expect(runtime.functionForArn('111122223333:function:execution-runs-finalize')).toBe('finalize');
    expect(runtime.functionForArn('execution-runs-finalize')).toBe('finalize');
    expect(
      runtime.functionForArn('arn:aws:lambda:us-east-1:111122223333:function:execution-runs-finalize'),
    ).toBe(undefined);
    expect(runtime.functionForArn('execution-runs-nothing')).toBe(undefined);
  });
});
