import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeHandler as makeMarkRetrying } from '../../functions/mark-retrying.js';
import { makeHandler as makeSweeper } from '../../functions/sweeper.js';
import { EmfRunMetrics } from '../../shared/adapters/emf-run-metrics.js';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import type { Run, RunStatus } from '../../shared/domain/run.js';
import {
  launchFailureKind,
  OTHER_MODEL,
  RUN_METRICS,
  type RunMetric,
  type RunMetricName,
  runMetricsOf,
} from '../../shared/domain/run-metrics.js';
import { lambdaContext, runFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
/** A model's usage of `tokens` input tokens and nothing else. */
const used = (tokens: number) => ({
  inputTokens: tokens,
  outputTokens: 0,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
});
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

/** The run after it moved to `status` at `seconds`, with `over` changed. */
const moved = (run: Run, status: RunStatus, seconds: number, over: Partial<Run> = {}): Run => ({
  ...run,
  ...over,
  status,
  history: [...run.history, { status, at: at(seconds) }],
});

const names = (metrics: ReturnType<typeof runMetricsOf>) => metrics.map((m) => m.name);
const metricsOf = (before: Run | undefined, after: Run) => runMetricsOf(before, after, DEFAULT_PRICE_TABLE);

describe('runMetricsOf', () => {
  const queued = runFactory();
  const provisioning = moved(queued, 'PROVISIONING', 30);
  const running = moved(provisioning, 'RUNNING', 40, { taskArn: 'arn:aws:ecs:task/c/t1' });
  const awaiting = moved(running, 'AWAITING_APPROVAL', 60);
  const resumed = moved(awaiting, 'RUNNING', 360);
  const ended = moved(resumed, 'FAILED', 400, {
    exitReason: 'tool_call_failed',
    durationMs: 370_000,
    usage: {
      'us.anthropic.claude-sonnet-4-5-20250929-v1:0': {
        inputTokens: 100,
        outputTokens: 20,
        cacheReadTokens: 3,
        cacheWriteTokens: 2,
        costMicroUsd: 1_000,
      },
      'made-up-model-1': { ...used(10), costMicroUsd: 250 },
      'made-up-model-2': { ...used(20), costMicroUsd: 250 },
    },
    cost: { tokenUsd: 1_500, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 15, totalUsd: 1_515 },
  });
  const settled: Run = {
    ...ended,
    cost: { tokenUsd: 1_500, sandboxCpuUsd: 400, sandboxMemoryUsd: 100, feeUsd: 1_000, totalUsd: 3_000 },
  };

  it('counts a dispatch at the run’s first write', () => {
    expect(metricsOf(undefined, queued)).toEqual([{ name: 'RunsDispatched', value: 1 }]);
  });

  it('counts the start, its queue wait and the launch attempt when the run leaves the queue', () => {
    expect(metricsOf(queued, provisioning)).toEqual([
      { name: 'LaunchAttempts', value: 1 },
      { name: 'RunsStarted', value: 1 },
      { name: 'QueueWait', value: 30_000 },
    ]);
  });

  it('counts a relaunch as an attempt, not as a start', () => {
    const retrying = moved(provisioning, 'RETRYING', 35);
    expect(names(metricsOf(retrying, moved(retrying, 'PROVISIONING', 55)))).toEqual(['LaunchAttempts']);
  });

  it('measures the approval wait when the checkpoint is decided', () => {
    expect(metricsOf(awaiting, resumed)).toEqual([{ name: 'ApprovalWait', value: 300_000 }]);
  });

  it('counts an end by status and exit reason with the run’s duration and what it spent so far', () => {
    expect(metricsOf(resumed, ended)).toEqual([
      { name: 'RunsEnded', value: 1, dimensions: { Status: 'FAILED', ExitReason: 'tool_call_failed' } },
      { name: 'RunDuration', value: 370_000 },
      { name: 'SpendUsd', value: 0.001515 },
    ]);
  });

  it('gives the run’s cost and tokens by model once its sandbox is settled, models the price table does not list as other', () => {
    expect(metricsOf(ended, settled)).toEqual([
      { name: 'SpendUsd', value: 0.001485 },
      { name: 'RunCostUsd', value: 0.003 },
      { name: 'TokensUsed', value: 125, dimensions: { Model: 'claude-sonnet-4-5' } },
      { name: 'TokensUsed', value: 30, dimensions: { Model: OTHER_MODEL } },
    ]);
  });

  it('gives the cost at the end of a run that never had a sandbox to settle', () => {
    const cancelled = moved(queued, 'CANCELLED', 5, { exitReason: 'cancelled' });
    expect(names(metricsOf(queued, cancelled))).toEqual(['RunsEnded', 'RunDuration', 'RunCostUsd']);
  });

  it('does not count a closed run as a second end', () => {
    expect(metricsOf(settled, moved(settled, 'DONE', 900))).toEqual([]);
  });

  it('names only metrics and dimensions the catalogue declares', () => {
    const all = [queued, provisioning, running, awaiting, resumed, ended, settled].flatMap((run, i, runs) =>
      metricsOf(runs[i - 1], run),
    );
    for (const metric of all) {
      const declared = RUN_METRICS[metric.name].dimensions.flat();
      expect(Object.keys(metric.dimensions ?? {}).sort()).toEqual([...declared].sort());
    }
  });
});

describe('mark-retrying', () => {
  it('counts a failed launch by its kind, with the run it is about', async () => {
    const published: { run?: { runId: string }; metrics: readonly RunMetric[] }[] = [];
    const run = runFactory({ status: 'PROVISIONING' });
    const handler = makeMarkRetrying(
      {
        runs: new MemoryRuns().put(run),
        clock: { now: () => new Date(T0) },
        metrics: { publish: (about, metrics) => published.push({ run: about, metrics }) },
      },
      { maxAttempts: 3, backoffSeconds: [5] },
    );
    await handler(
      { runId: run.runId, launchError: { Error: 'ECS.ThrottlingException', Cause: 'Rate exceeded' } },
      lambdaContext(),
    );
    expect(published).toEqual([
      {
        run: { runId: run.runId },
        metrics: [{ name: 'LaunchFailures', value: 1, dimensions: { FailureKind: 'throttled' } }],
      },
    ]);
  });
});

describe('sweeper', () => {
  const sweep = async (oldest: Run | undefined) => {
    const published: { run?: { runId: string }; metrics: readonly RunMetric[] }[] = [];
    const handler = makeSweeper(
      {
        runs: new MemoryRuns(),
        list: {
          list: vi.fn(),
          listQueuedBefore: async () => [],
          listOpenPullRequests: vi.fn(),
          listAwaitingApproval: async () => [],
          oldestActive: async () => oldest,
        },
        queue: { enqueue: vi.fn() },
        clock: { now: () => new Date(T0 + 3_600_000) },
        metrics: {
          publish: (about: Run | undefined, metrics: readonly RunMetric[]) =>
            published.push({ run: about, metrics }),
        },
        // no run is paused: the budget checks read nothing else
      } as unknown as Parameters<typeof makeSweeper>[0],
      { staleAfterSeconds: 120, maxRequeues: 3 },
    );
    await handler({}, lambdaContext());
    return published;
  };

  it('measures the age of the oldest run not ended, naming it', async () => {
    const oldest = runFactory({ status: 'RUNNING' });
    expect(await sweep(oldest)).toEqual([
      { run: oldest, metrics: [{ name: 'OldestActiveRunAge', value: 3600 }] },
    ]);
  });

  it('measures 0 when every run has ended, so the alarm sees a value', async () => {
    expect(await sweep(undefined)).toEqual([
      { run: undefined, metrics: [{ name: 'OldestActiveRunAge', value: 0 }] },
    ]);
  });
});

describe('the run metrics catalogue', () => {
  it('holds only metrics the code emits: a run’s life and its failed launches emit each of them', () => {
    const queued = runFactory();
    const provisioning = moved(queued, 'PROVISIONING', 30);
    const awaiting = moved(
      moved(provisioning, 'RUNNING', 40, { taskArn: 'arn:task' }),
      'AWAITING_APPROVAL',
      50,
    );
    const used = {
      inputTokens: 1,
      outputTokens: 1,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      costMicroUsd: 9,
    };
    const ended = moved(moved(awaiting, 'RUNNING', 60), 'COMPLETED', 90, {
      usage: { m: used },
      cost: { tokenUsd: 9, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 0, totalUsd: 9 },
    });
    const settled = { ...ended, cost: { ...ended.cost, sandboxCpuUsd: 1, totalUsd: 10 } };
    const life = [queued, provisioning, awaiting, ended, settled];
    const emitted = new Set<RunMetricName>([
      ...life.flatMap((run, i) => metricsOf(life[i - 1], run)).map((metric) => metric.name),
      // mark-retrying's, above, and the sweeper's, below
      'LaunchFailures',
      'OldestActiveRunAge',
    ]);
    expect([...emitted].sort()).toEqual(Object.keys(RUN_METRICS).sort());
  });
});

describe('launchFailureKind', () => {
  it.each([
    ['ECS.ThrottlingException: Rate exceeded', 'throttled'],
    ['ECS.AmazonECSException: Rate exceeded', 'throttled'],
    ['RESOURCE:ENI', 'capacity'],
    ['Capacity is unavailable at this time', 'capacity'],
    ['no task was started', 'other'],
  ] as const)('%s is %s', (reason, kind) => {
    expect(launchFailureKind(reason)).toBe(kind);
  });
});

describe('EmfRunMetrics', () => {
  afterEach(() => vi.restoreAllMocks());

  /** The EMF lines publishing `metrics` writes, parsed. */
  const linesOf = (...metrics: Parameters<EmfRunMetrics['publish']>[1]) => {
    const written: string[] = [];
    // Powertools writes to its own console on the process's stdout, as Lambda collects it
    const log = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      written.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    });
    new EmfRunMetrics(new Metrics({ namespace: 'ExecutionRuns', serviceName: 'execution-runs' })).publish(
      { runId: 'run_1', accountId: 'acct-1' },
      metrics,
    );
    log.mockRestore();
    return written.map((line) => JSON.parse(line) as Record<string, unknown> & { _aws: EmfMetadata });
  };
  type EmfMetadata = {
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: string }[];
    }[];
  };

  it('writes the metrics without dimensions on one line, naming the run and its account', () => {
    const [line, ...more] = linesOf({ name: 'RunsStarted', value: 1 }, { name: 'QueueWait', value: 30_000 });
    expect(more).toEqual([]);
    expect(line).toMatchObject({ runId: 'run_1', accountId: 'acct-1', RunsStarted: 1, QueueWait: 30_000 });
    expect(line?._aws.CloudWatchMetrics).toEqual([
      {
        Namespace: 'ExecutionRuns',
        Dimensions: [['service']],
        Metrics: [
          { Name: 'RunsStarted', Unit: 'Count' },
          { Name: 'QueueWait', Unit: 'Milliseconds' },
        ],
      },
    ]);
  });

  it('writes an end under each of its dimension sets, on its own line', () => {
    const lines = linesOf(
      { name: 'RunDuration', value: 5 },
      { name: 'RunsEnded', value: 1, dimensions: { Status: 'FAILED', ExitReason: 'error' } },
    );
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ runId: 'run_1', Status: 'FAILED', ExitReason: 'error', RunsEnded: 1 });
    expect(lines[1]?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([
      ['service', 'Status'],
      ['service', 'ExitReason'],
    ]);
    // the account is a property, never a dimension: its series would grow with the accounts
    expect(lines.flatMap((line) => line._aws.CloudWatchMetrics[0]?.Dimensions.flat())).not.toContain(
      'accountId',
    );
  });

  it('writes nothing for a change that counts nothing', () => {
    expect(linesOf()).toEqual([]);
  });
});
