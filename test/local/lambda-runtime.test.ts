import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLambdaRuntime,
  LambdaFunctionError,
  type LambdaRuntime,
} from '../../infra/local/lambda-runtime.js';
import { FUNCTIONS, type FunctionDefinition } from '../../shared/manifest.js';

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
  slow: 'export const handler = () => new Promise((resolve) => setTimeout(() => resolve("late"), 400));',
  callback:
    'export const handler = (event, context, callback) => { setTimeout(() => callback(null, { via: "callback" }), 5); };',
  'no-handler': 'export const somethingElse = 1;',
  'init-fails-once': `const g = globalThis as { initTries?: number };
g.initTries = (g.initTries ?? 0) + 1;
if (g.initTries === 1) throw new TypeError('TABLE_NAME is not set');
export const handler = async () => 'initialised';`,
};

const fn = (entry: string, timeoutSeconds = 3): FunctionDefinition => ({
  entry,
  timeoutSeconds,
  memoryMiB: 384,
  description: entry,
  environment: [],
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
      functions: {
        ...FUNCTIONS,
        api: fn('echo', 2),
        agentApi: fn('counter'),
        startRun: fn('fails'),
        deadLetter: fn('slow', 0.1),
        checks: fn('callback'),
        markRetrying: fn('no-handler'),
        finalize: fn('does-not-exist'),
        parkPod: fn('init-fails-once'),
      },
      region: 'eu-west-1',
      accountId: '111122223333',
    });
  });

  afterAll(async () => {
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
    expect((error as LambdaFunctionError).trace[0]).toContain('no run run_1');
  });

  it('times out with Lambda wording and leaves the handler running', async () => {
    const started = Date.now();
    const error = await runtime.invoke('deadLetter', {}).catch((err: unknown) => err);

    expect(Date.now() - started).toBeLessThan(350);
    expect(error).toMatchObject({
      errorType: 'Sandbox.Timedout',
      errorMessage: 'Task timed out after 0.10 seconds',
    });
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
    expect(after.deadLetter.totalMs).toBeGreaterThanOrEqual(100);
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
