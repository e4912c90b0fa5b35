import { describe, expect, it, vi } from 'vitest';
import { makeHandler as makeAgentApi } from '../../functions/agent-api.js';
import { makeHandler as makeApi } from '../../functions/api.js';
import { makeHandler as makeScheduledDispatch } from '../../functions/scheduled-dispatch.js';
import { makeHandler as makeSchedules } from '../../functions/schedules.js';
import { makeHandler as makeStartRun } from '../../functions/start-run.js';
import { RepoAccessDeniedError } from '../../shared/domain/errors.js';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import { TOKENLESS_REQUESTS_PER_SECOND } from '../../shared/domain/throttle.js';
import type {
  DirectoryRepository,
  GitCredentials,
  LogReader,
  Orchestrator,
  PodTaskDefinitions,
  RunList,
  RunQueue,
  Sandbox,
  SpendLedger,
  StepContentStore,
  StreamConnections,
  TaskSignals,
  Timeline,
} from '../../shared/ports.js';
import { hashSecret } from '../../shared/usecases/lifecycle.js';
import {
  httpEvent,
  lambdaContext,
  podFactory,
  projectFactory,
  runFactory,
  sqsEvent,
  sqsRecordFactory,
} from '../support/factories.js';
import { MemoryActiveRuns } from '../support/memory-active-runs.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryScheduler, MemorySchedules } from '../support/memory-schedules.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

const clock = { now: () => new Date('2026-01-01T00:00:00.000Z') };
const pricing = { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' as const };
const ledger = { settle: vi.fn(async () => true), hourlySpend: vi.fn(async () => []) } as SpendLedger;
const sandbox: Sandbox = { stop: vi.fn(async () => undefined) };

describe('start-run handler', () => {
  // runs without an account to take a slot of start at once
  /** start-run over `runs`, starting executions with `orchestrator` */
  const startRun = (runs: MemoryRuns, orchestrator: Orchestrator) =>
    makeStartRun({
      runs,
      ledger,
      orchestrator,
      sandbox,
      clock,
      pricing,
      directory: { getAccount: async () => undefined } as unknown as DirectoryRepository,
      slots: new MemoryActiveRuns(),
      queue: { enqueue: vi.fn(async () => undefined) },
    });
  const queued = (...runIds: string[]) => {
    const runs = new MemoryRuns();
    for (const runId of runIds) runs.put(runFactory({ runId, status: 'QUEUED' }));
    return runs;
  };

  it('starts one execution per queued run and reports only the failed messages', async () => {
    const runs = queued('run_ok', 'run_bad', 'run_dup');
    const orchestrator: Orchestrator = {
      start: vi.fn(async (name: string) => {
        if (name === 'run_bad') throw new Error('StateMachineDoesNotExist');
        return { executionArn: `arn:exec:${name}`, alreadyExisted: name === 'run_dup' };
      }),
      describe: vi.fn(async () => ({ status: 'RUNNING' as const })),
    };
    const handler = startRun(runs, orchestrator);
    const result = await handler(
      sqsEvent(
        sqsRecordFactory({ runId: 'run_ok' }, 'm-ok'),
        sqsRecordFactory({ runId: 'run_bad' }, 'm-bad'),
        sqsRecordFactory({ runId: 'run_dup' }, 'm-dup'),
      ),
      lambdaContext(),
    );
    expect(result).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-bad' }] });
    expect(orchestrator.start).toHaveBeenCalledWith('run_ok', { runId: 'run_ok', accountId: 'acct-1' });
    expect(runs.stored('run_ok').executionArn).toBe('arn:exec:run_ok');
    // an execution already running carries its run: nothing more to do
    expect(orchestrator.describe).toHaveBeenCalledWith('arn:exec:run_dup');
    expect(runs.stored('run_dup').status).toBe('QUEUED');
  });

  it('ends a queued run whose execution already exists and is over, instead of leaving it queued', async () => {
    const runs = queued('run_closed');
    const orchestrator: Orchestrator = {
      start: vi.fn(async (name: string) => ({ executionArn: `arn:exec:${name}`, alreadyExisted: true })),
      describe: vi.fn(async () => ({ status: 'FAILED' as const, error: 'States.Runtime', cause: 'boom' })),
    };
    const result = await startRun(runs, orchestrator)(
      sqsEvent(sqsRecordFactory({ runId: 'run_closed' }, 'm-1')),
      lambdaContext(),
    );
    expect(result).toEqual({ batchItemFailures: [] });
    expect(runs.stored('run_closed')).toMatchObject({
      status: 'CANCELLED',
      exitReason: 'error',
      message: expect.stringContaining('the execution failed: States.Runtime boom'),
    });
  });

  it('skips a run that is no longer QUEUED and reports a malformed message as failed', async () => {
    const runs = new MemoryRuns().put(runFactory({ runId: 'run_1', status: 'STOPPED' }));
    const orchestrator: Orchestrator = { start: vi.fn(), describe: vi.fn() };
    const result = await startRun(runs, orchestrator)(
      sqsEvent(sqsRecordFactory({ runId: 'run_1' }, 'm-1'), sqsRecordFactory('not json', 'm-2')),
      lambdaContext(),
    );
    expect(orchestrator.start).not.toHaveBeenCalled();
    expect(result).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-2' }] });
  });
});

describe('api handler: dispatch', () => {
  const deps = () => {
    const runs = new MemoryRuns();
    vi.spyOn(runs, 'create');
    const directory = {
      getAccount: vi.fn(async () => undefined),
      getProject: vi.fn(async () => projectFactory()),
      getPod: vi.fn(async (_: string, podId: string) => {
        if (podId === 'pod-1') return podFactory();
        if (podId === 'claude-pod') return podFactory({ podId, agent: { kind: 'claude-code', model: 'm' } });
        return undefined;
      }),
    } as unknown as DirectoryRepository;
    const queue: RunQueue = { enqueue: vi.fn(async () => undefined) };
    return {
      runs,
      list: {} as RunList,
      timeline: {} as Timeline,
      ledger,
      directory,
      queue,
      signals: {} as TaskSignals,
      sandbox: {} as Sandbox,
      taskDefinitions: {} as PodTaskDefinitions,
      logs: {} as LogReader,
      stepContent: {} as StepContentStore,
      cursorKey: async () => 'c'.repeat(32),
      connections: {} as StreamConnections,
      requests: { count: async () => 1 },
      clock,
    };
  };
  const claims = {
    tenant: 'custom:accountId',
    accountRole: 'custom:accountRole',
    webSocketUrl: 'wss://ws.example.com/live',
  };
  const dispatch = (body: string, headers: Record<string, string> = {}) =>
    httpEvent('POST /v1/projects/{projectId}/runs', {
      pathParameters: { projectId: 'proj-1' },
      body,
      headers,
    });

  it('queues a valid dispatch and answers 202 with the run', async () => {
    const d = deps();
    const res = await makeApi(d, claims)(
      dispatch(JSON.stringify({ itemId: 'I-1', podId: 'pod-1', mode: 'autopilot', prompt: 'do it' })),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(202);
    const run = JSON.parse(res.body);
    expect(run).toMatchObject({ status: 'QUEUED', projectId: 'proj-1', podId: 'pod-1', source: 'api' });
    expect(d.queue.enqueue).toHaveBeenCalledWith(run.runId);
  });

  it.each([
    ['bad JSON', '{"itemId":'],
    ['a missing prompt', JSON.stringify({ itemId: 'I', podId: 'pod-1', mode: 'autopilot' })],
    ['an unknown mode', JSON.stringify({ itemId: 'I', podId: 'pod-1', mode: 'yolo', prompt: 'x' })],
    ['an unknown pod', JSON.stringify({ itemId: 'I', podId: 'pod-9', mode: 'autopilot', prompt: 'x' })],
    [
      'a demo script for a pod whose agent is not the demo',
      JSON.stringify({
        itemId: 'I',
        podId: 'claude-pod',
        mode: 'autopilot',
        prompt: 'x',
        config: { demo: {} },
      }),
    ],
    [
      'a ref git would refuse',
      JSON.stringify({ itemId: 'I', podId: 'pod-1', mode: 'autopilot', prompt: 'x', ref: 'a..b' }),
    ],
  ])('answers %s with 400 and writes nothing', async (_, body) => {
    const d = deps();
    const res = await makeApi(d, claims)(dispatch(body), lambdaContext());
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error.message).toBeTruthy();
    expect(d.runs.create).not.toHaveBeenCalled();
    expect(d.queue.enqueue).not.toHaveBeenCalled();
  });

  it('answers 503 naming the run when the queue is down; the run stays for the sweeper', async () => {
    const d = deps();
    d.queue.enqueue = vi.fn(async () => {
      throw new Error('SQS unavailable');
    });
    const res = await makeApi(d, claims)(
      dispatch(JSON.stringify({ itemId: 'I-1', podId: 'pod-1', mode: 'autopilot', prompt: 'do it' })),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(503);
    expect(JSON.parse(res.body).error.details.runId).toMatch(/^run_/);
    expect(d.runs.create).toHaveBeenCalledTimes(1);
  });

  it('refuses an Idempotency-Key with spaces', async () => {
    const d = deps();
    const res = await makeApi(d, claims)(
      dispatch(JSON.stringify({ itemId: 'I-1', podId: 'pod-1', mode: 'autopilot', prompt: 'do it' }), {
        'idempotency-key': 'has spaces',
      }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(400);
    expect(d.runs.create).not.toHaveBeenCalled();
  });
});

describe('api handler: pods', () => {
  const putPodEvent = (body: unknown) =>
    httpEvent('PUT /v1/pods/{podId}', {
      pathParameters: { podId: 'pod-1' },
      body: JSON.stringify(body),
      claims: { sub: 'root', 'custom:accountId': 'acct-1', 'custom:accountRole': 'admin' },
    });
  const pod = {
    name: 'Pod',
    cpu: 1024,
    memoryMiB: 2048,
    agent: { kind: 'demo' },
    image: 'registry.example/p:1',
  };

  it('answers 503 with a clear error, and stores nothing, when the task definition cannot be registered', async () => {
    const directory = { getAccount: vi.fn(), createAccount: vi.fn(), putPod: vi.fn() };
    const deps = {
      directory,
      taskDefinitions: {
        register: vi.fn(async () => {
          throw new Error('socket hang up');
        }),
      },
      requests: { count: async () => 1 },
      clock,
    } as unknown as Parameters<typeof makeApi>[0];
    const claims = {
      tenant: 'custom:accountId',
      accountRole: 'custom:accountRole',
      webSocketUrl: 'wss://ws.example.com/live',
    };

    const res = await makeApi(deps, claims)(putPodEvent(pod), lambdaContext());

    expect(res.statusCode).toBe(503);
    expect(JSON.parse(res.body).error).toMatchObject({
      code: 'ServiceUnavailable',
      message: expect.stringContaining('its task definition could not be registered'),
    });
    expect(directory.putPod).not.toHaveBeenCalled();
    expect(directory.createAccount).not.toHaveBeenCalled();
  });
});

describe('schedules handler', () => {
  const claims = { tenant: 'custom:accountId', accountRole: 'custom:accountRole' };
  const asRoot = { sub: 'root', 'custom:accountId': 'acct-1', 'custom:accountRole': 'admin' };
  const deps = () =>
    ({
      directory: {
        getAccount: vi.fn(async () => undefined),
        getProject: vi.fn(async () => projectFactory()),
        getPod: vi.fn(async () => podFactory()),
      },
      schedules: new MemorySchedules(),
      scheduler: new MemoryScheduler(),
      requests: { count: async () => 1 },
      clock,
    }) as unknown as Parameters<typeof makeSchedules>[0] & { scheduler: MemoryScheduler };
  const path = { projectId: 'proj-1', scheduleId: 'nightly' };
  const put = (body: unknown) =>
    httpEvent('PUT /v1/projects/{projectId}/schedules/{scheduleId}', {
      pathParameters: path,
      body: JSON.stringify(body),
      claims: asRoot,
    });
  const valid = {
    expression: 'rate(1 minute)',
    podId: 'pod-1',
    itemId: 'I-1',
    prompt: 'p',
    mode: 'autopilot',
  };

  it('answers an expression Scheduler would refuse with 400 and the reason, writing nothing', async () => {
    const d = deps();
    const res = await makeSchedules(d, claims)(
      put({ ...valid, expression: 'cron(0 9 * * * *)' }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({
      code: 'ValidationError',
      message: expect.stringMatching(/^expression: one of day-of-month and day-of-week must be \?/),
    });
    expect(d.scheduler.calls).toEqual([]);
  });

  it('saves (200), reads, lists and deletes (204, no body) a schedule', async () => {
    const d = deps();
    const api = makeSchedules(d, claims);
    const saved = await api(put(valid), lambdaContext());
    expect(saved.statusCode).toBe(200);
    expect(JSON.parse(saved.body)).toMatchObject({ scheduleId: 'nightly', timezone: 'UTC', enabled: true });
    const read = await api(
      httpEvent('GET /v1/projects/{projectId}/schedules/{scheduleId}', {
        pathParameters: path,
        claims: asRoot,
      }),
      lambdaContext(),
    );
    expect(JSON.parse(read.body)).toEqual(JSON.parse(saved.body));
    const list = await api(
      httpEvent('GET /v1/projects/{projectId}/schedules', { pathParameters: path, claims: asRoot }),
      lambdaContext(),
    );
    expect(JSON.parse(list.body).items).toHaveLength(1);
    const deleted = await api(
      httpEvent('DELETE /v1/projects/{projectId}/schedules/{scheduleId}', {
        pathParameters: path,
        claims: asRoot,
      }),
      lambdaContext(),
    );
    expect(deleted).toMatchObject({ statusCode: 204, body: '' });
  });

  it('refuses a schedule id no key can hold', async () => {
    const res = await makeSchedules(deps(), claims)(
      httpEvent('GET /v1/projects/{projectId}/schedules/{scheduleId}', {
        pathParameters: { projectId: 'proj-1', scheduleId: 'a#b' },
        claims: asRoot,
      }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error.message).toMatch(/^invalid scheduleId in the path/);
  });
});

describe('scheduled-dispatch handler', () => {
  it('refuses a tick that is not the Scheduler’s input, so that it is retried and dead-lettered', async () => {
    const handler = makeScheduledDispatch({
      schedules: new MemorySchedules(),
      runs: new MemoryRuns(),
      directory: {} as DirectoryRepository,
      queue: {} as RunQueue,
      clock,
    });
    await expect(
      handler({ accountId: 'acct-1', projectId: 'proj-1', scheduleId: 'nightly' }, lambdaContext()),
    ).rejects.toThrow();
    await expect(
      handler(
        {
          accountId: 'acct-1',
          projectId: 'proj-1',
          scheduleId: 'nightly',
          revision: 'r',
          scheduledTime: '<aws.scheduler.scheduled-time>',
        },
        lambdaContext(),
      ),
    ).rejects.toThrow();
  });

  it('takes the scheduled time as Scheduler writes it, and answers what the tick did', async () => {
    const handler = makeScheduledDispatch({
      schedules: new MemorySchedules(),
      runs: new MemoryRuns(),
      directory: {} as DirectoryRepository,
      queue: {} as RunQueue,
      clock,
    });
    const tick = {
      accountId: 'acct-1',
      projectId: 'proj-1',
      scheduleId: 'nightly',
      revision: 'r',
      scheduledTime: '2026-01-01T10:00:00Z',
    };
    expect(await handler(tick, lambdaContext())).toEqual({ outcome: 'ignored', reason: 'gone' });
  });
});

describe('agent-api handler', () => {
  const RUN = 'run_01J0000000000000000000000A';
  const OTHER_RUN = 'run_01J0000000000000000000000B';
  const ENDED = 'run_01J0000000000000000000000C';
  it('answers a flood without the run’s token 401, then 429, reading nothing; the run’s own token is served', async () => {
    const RUN = 'run_01J0000000000000000000000A';
    const runs = new MemoryRuns().put(runFactory({ runId: RUN, status: 'RUNNING' }), {
      agentTokenHash: hashSecret(`${RUN}.right`),
    });
    const reads = vi.spyOn(runs, 'getWithSecrets');
    const handler = makeAgentApi(
      {
        runs,
        ledger,
        signals: {} as TaskSignals,
        stepContent: {} as StepContentStore,
        directory: { getAccount: async () => undefined } as unknown as DirectoryRepository,
        pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' },
        slots: new MemoryActiveRuns(),
        clock,
      },
      { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 },
    );
    const control = (headers: Record<string, string>) =>
      handler(
        httpEvent('GET /agent/v1/runs/{runId}/control', { pathParameters: { runId: RUN }, headers }),
        lambdaContext(),
      );
    const flood = await Promise.all(Array.from({ length: 30 }, () => control({})));
    const statuses = flood.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 401)).toHaveLength(TOKENLESS_REQUESTS_PER_SECOND);
    expect(statuses.filter((s) => s === 429)).toHaveLength(30 - TOKENLESS_REQUESTS_PER_SECOND);
    expect((flood.at(-1) as { headers?: Record<string, string> }).headers).toMatchObject({
      'retry-after': '1',
    });
    expect(reads).not.toHaveBeenCalled();

    expect((await control({ authorization: `Bearer ${RUN}.right` })).statusCode).toBe(200);
  });

  it('refuses a token that is not the run’s, and any token once the run has ended', async () => {
    const runs = new MemoryRuns()
      .put(runFactory({ runId: RUN, status: 'RUNNING' }), { agentTokenHash: hashSecret(`${RUN}.right`) })
      .put(runFactory({ runId: ENDED, status: 'STOPPED' }), { agentTokenHash: hashSecret(`${ENDED}.right`) });
    const handler = makeAgentApi(
      {
        runs,
        ledger,
        signals: {} as TaskSignals,
        stepContent: {} as StepContentStore,
        directory: {} as DirectoryRepository,
        pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' },
        slots: new MemoryActiveRuns(),
        clock,
      },
      { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 },
    );
    const res = await handler(
      httpEvent('GET /agent/v1/runs/{runId}/control', {
        pathParameters: { runId: RUN },
        headers: { authorization: `Bearer ${RUN}.wrong` },
      }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(401);
    const other = await handler(
      httpEvent('GET /agent/v1/runs/{runId}/control', {
        pathParameters: { runId: RUN },
        headers: { authorization: `Bearer ${OTHER_RUN}.secret` },
      }),
      lambdaContext(),
    );
    expect(other.statusCode).toBe(401);
    const control = (runId: string) =>
      handler(
        httpEvent('GET /agent/v1/runs/{runId}/control', {
          pathParameters: { runId },
          headers: { authorization: `Bearer ${runId}.right` },
        }),
        lambdaContext(),
      );
    expect((await control(RUN)).statusCode).toBe(200);
    expect((await control(ENDED)).statusCode).toBe(401);
  });

  it('answers the pod’s git credential uncached, 501 where no git provider is configured, 409 naming a repository it cannot grant', async () => {
    const runs = new MemoryRuns().put(
      runFactory({ runId: RUN, status: 'RUNNING', repos: ['http://git/a.git'] }),
      {
        agentTokenHash: hashSecret(`${RUN}.right`),
      },
    );
    const deps = {
      runs,
      ledger,
      signals: {} as TaskSignals,
      stepContent: {} as StepContentStore,
      directory: { getAccount: async () => undefined } as unknown as DirectoryRepository,
      pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' as const },
      slots: new MemoryActiveRuns(),
      clock,
    };
    const credential = { username: 'u', password: 'p', expiresAt: '2026-01-01T01:00:00.000Z', repos: ['r'] };
    const ask = (gitCredentials?: GitCredentials) =>
      makeAgentApi(
        { ...deps, gitCredentials },
        { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 },
      )(
        httpEvent('POST /agent/v1/runs/{runId}/git-credentials', {
          pathParameters: { runId: RUN },
          headers: { authorization: `Bearer ${RUN}.right` },
        }),
        lambdaContext(),
      );

    const minted = await ask({ mint: async () => credential });
    expect(minted).toMatchObject({ statusCode: 200, headers: { 'cache-control': 'no-store' } });
    expect(JSON.parse(minted.body)).toEqual(credential);
    const unconfigured = await ask();
    expect(unconfigured.statusCode).toBe(501);
    expect(JSON.parse(unconfigured.body).error.code).toBe('NotConfigured');
    const refused = await ask({
      mint: async () => {
        throw new RepoAccessDeniedError('no access to http://git/a.git', ['http://git/a.git']);
      },
    });
    expect(refused.statusCode).toBe(409);
    expect(JSON.parse(refused.body).error).toMatchObject({
      code: 'MissingRepoAccess',
      details: { repos: ['http://git/a.git'] },
    });
  });
});
