import { describe, expect, it, vi } from 'vitest';
import { makeHandler as makeAgentApi } from '../../functions/agent-api.js';
import { makeHandler as makeApi } from '../../functions/api.js';
import { makeHandler as makeStartRun } from '../../functions/start-run.js';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import type {
  DirectoryRepository,
  LogReader,
  Orchestrator,
  RunQueue,
  RunRepository,
  Sandbox,
  StepContentStore,
  TaskSignals,
} from '../../shared/ports.js';
import {
  httpEvent,
  lambdaContext,
  podFactory,
  projectFactory,
  runFactory,
  sqsEvent,
  sqsRecordFactory,
} from '../support/factories.js';

// The handler modules build their production composition root at import; give it what it reads.
vi.hoisted(() => {
  Object.assign(process.env, {
    TABLE_NAME: 't',
    QUEUE_URL: 'https://q',
    STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:1:stateMachine:s',
    CLUSTER_ARN: 'arn:aws:ecs:us-east-1:1:cluster/c',
    LOG_GROUP_NAME: '/pods',
    STEP_LOG_GROUP_NAME: '/steps',
    AWS_REGION: 'us-east-1',
    CURSOR_SIGNING_SECRET: 'c'.repeat(32),
  });
});

const fakeRuns = (overrides: Partial<RunRepository> = {}) =>
  ({
    get: vi.fn(),
    create: vi.fn(),
    update: vi.fn(),
    getPodTaskToken: vi.fn(),
    getAgentTokenHash: vi.fn(),
    ...overrides,
  }) as unknown as RunRepository;

const clock = { now: () => new Date('2026-01-01T00:00:00.000Z') };

describe('start-run handler', () => {
  it('starts one execution per queued run and reports only the failed messages', async () => {
    const runs = fakeRuns({
      get: vi.fn(async (runId: string) => runFactory({ runId })),
      update: vi.fn(async () => runFactory()),
    });
    const orchestrator: Orchestrator = {
      start: vi.fn(async (name: string) => {
        if (name === 'run_bad') throw new Error('StateMachineDoesNotExist');
        return { executionArn: `arn:exec:${name}`, alreadyExisted: name === 'run_dup' };
      }),
    };
    const handler = makeStartRun({ runs, orchestrator });
    const result = await handler(
      sqsEvent(
        sqsRecordFactory({ runId: 'run_ok' }, 'm-ok'),
        sqsRecordFactory({ runId: 'run_bad' }, 'm-bad'),
        sqsRecordFactory({ runId: 'run_dup' }, 'm-dup'),
      ),
      lambdaContext(),
    );
    expect(result).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-bad' }] });
    expect(orchestrator.start).toHaveBeenCalledWith('run_ok', { runId: 'run_ok' });
    expect(runs.update).toHaveBeenCalledWith('run_ok', { executionArn: 'arn:exec:run_ok' }, ['QUEUED']);
  });

  it('skips a run that is no longer QUEUED and reports a malformed message as failed', async () => {
    const runs = fakeRuns({ get: vi.fn(async () => runFactory({ status: 'STOPPED' })) });
    const orchestrator: Orchestrator = { start: vi.fn() };
    const result = await makeStartRun({ runs, orchestrator })(
      sqsEvent(sqsRecordFactory({ runId: 'run_1' }, 'm-1'), sqsRecordFactory('not json', 'm-2')),
      lambdaContext(),
    );
    expect(orchestrator.start).not.toHaveBeenCalled();
    expect(result).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-2' }] });
  });
});

describe('api handler: dispatch', () => {
  const deps = () => {
    const runs = fakeRuns({
      create: vi.fn(async (run) => ({ run, created: true })),
    });
    const directory = {
      getProject: vi.fn(async () => projectFactory()),
      getPod: vi.fn(async (_: string, podId: string) => (podId === 'pod-1' ? podFactory() : undefined)),
    } as unknown as DirectoryRepository;
    const queue: RunQueue = { enqueue: vi.fn(async () => undefined) };
    return {
      runs,
      directory,
      queue,
      signals: {} as TaskSignals,
      sandbox: {} as Sandbox,
      logs: {} as LogReader,
      stepContent: {} as StepContentStore,
      cursorKey: async () => 'c'.repeat(32),
      clock,
    };
  };
  const claims = { tenant: 'custom:accountId', accountRole: 'custom:accountRole' };
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

describe('agent-api handler', () => {
  const RUN = 'run_01J0000000000000000000000A';
  const OTHER_RUN = 'run_01J0000000000000000000000B';
  it('refuses a token that is not the run’s', async () => {
    const runs = fakeRuns({ getAgentTokenHash: vi.fn(async () => 'aa'.repeat(32)) });
    const handler = makeAgentApi(
      {
        runs,
        signals: {} as TaskSignals,
        stepContent: {} as StepContentStore,
        directory: {} as DirectoryRepository,
        pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' },
        clock,
      },
      { heartbeatSeconds: 60, controlPollMs: 3000 },
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
  });
});
