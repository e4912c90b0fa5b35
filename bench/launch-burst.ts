import { setTimeout as sleep } from 'node:timers/promises';
import { SetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { OperationStats } from '../infra/local/emulators/json-protocol.js';
import type { Run } from '../shared/domain/run.js';
import { type BenchCloud, terminal } from './support/cloud.js';

/**
 * (5) A thousand runs dispatched at once, with the local ECS limiting launches as Fargate does (a
 * burst of 100, then 20 per second, ThrottlingException beyond). Every run must end, none in the
 * dead-letter queue; the figures are the time to drain and the launch rate reached.
 *
 * In AWS the dispatch route scales out and a thousand dispatches take a second or two; here it shares
 * two cores with the runs it starts. So the queue holds each message back for a while (DelaySeconds):
 * the runs are all dispatched before the first is picked up, and arrive at the state machine as a
 * burst, which is what the launch limits must cope with.
 *
 * The runs go to a project without repositories: a thousand clones at once on two cores would
 * measure git rather than the launch path. The pods run in the local cloud's shared pod host
 * (docs/decisions/0008): a Node process per pod would spend the two cores starting pods. The same burst also runs at a tenth of the scale, 100 runs
 * against a burst of 10 and 2 launches a second: runs, burst and rate shrink alike, so the launch
 * policy meets the same pressure while the control plane has cores to spare.
 */

export interface LaunchLimits {
  burst: number;
  perSecond: number;
}

export const FARGATE_LIMITS: LaunchLimits = { burst: 100, perSecond: 20 };
export const BURST_RUNS = 1000;
const SCALE = 10;
const DISPATCH_CONCURRENCY = 25;
const DISPATCH_ATTEMPTS = 10;
const SAMPLE_MS = 250;
const POLL_MS = 3000;
const DRAIN_TIMEOUT_MS = 5 * 60_000;
/** what the burst at a tenth of the scale needs: its 45 s of launches, and the runs' own time */
const SCALED_BURST_MS = 80_000;

export interface BurstResult {
  runs: number;
  limits: LaunchLimits;
  /** dispatches that failed every attempt */
  dispatchFailures: number;
  dispatchSeconds: number;
  /** how long the queue held each message back */
  holdSeconds: number;
  /** from the first message's release to the last run's terminal status (or to giving up waiting) */
  drainSeconds: number;
  allTerminal: boolean;
  byStatus: Record<string, number>;
  deadLettered: number;
  /** why runs that did not complete ended, with how many */
  failures: Record<string, number>;
  launches: number;
  throttledLaunchCalls: number;
  /** most successful launches within any one second */
  peakLaunchesPerSecond: number;
  /** successful launches per second, from the first launch to the last */
  meanLaunchesPerSecond: number;
  /** runs that needed more than one launch attempt */
  retriedRuns: number;
  /** runs that ended without a sandbox ever launched for them */
  neverLaunched: number;
}

export interface LaunchBurstResult {
  fargate: BurstResult;
  /** the same burst at a tenth of the scale, which this machine can carry */
  scaled: BurstResult;
}

const ecsRunTask = async (bench: BenchCloud): Promise<OperationStats> => {
  const response = await fetch(`${bench.cloud.endpoints.services.ecs}/_local/stats`);
  const { operations } = (await response.json()) as { operations: Record<string, OperationStats> };
  return operations.RunTask ?? { calls: 0, errors: 0, bytesIn: 0 };
};

const setLaunchLimits = async (bench: BenchCloud, limits: LaunchLimits) => {
  const response = await fetch(`${bench.cloud.endpoints.services.ecs}/_local/launch-limits`, {
    method: 'POST',
    body: JSON.stringify(limits),
  });
  if (!response.ok) throw new Error(`the local ECS refused launch limits: ${await response.text()}`);
};

const count = <T>(items: T[], key: (item: T) => string) =>
  items.reduce<Record<string, number>>((acc, item) => {
    acc[key(item)] = (acc[key(item)] ?? 0) + 1;
    return acc;
  }, {});

/**
 * A client dispatching a burst retries what failed under the load, with the same Idempotency-Key;
 * undefined when the dispatch never got through.
 */
const dispatchWithRetries = async (bench: BenchCloud, key: string): Promise<string | undefined> => {
  const demo = { steps: 0, stepDelayMs: 0, edit: false };
  for (let attempt = 1; attempt <= DISPATCH_ATTEMPTS; attempt++) {
    try {
      return await bench.dispatch({ repoless: true, demo, idempotencyKey: key });
    } catch {
      await sleep(Math.min(5000, attempt * 1000));
    }
  }
  return undefined;
};

/** Dispatches `runs` runs with the queue holding their messages back; resolves once all are sent. */
const dispatchHeld = async (bench: BenchCloud, runs: number, holdSeconds: number, label: string) => {
  const { endpoints } = bench.cloud;
  const sqs = new SQSClient({
    region: endpoints.region,
    endpoint: endpoints.services.sqs,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  const hold = (seconds: number) =>
    sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: endpoints.queueUrl,
        Attributes: { DelaySeconds: String(seconds) },
      }),
    );
  const runIds: string[] = [];
  let next = 0;
  let failures = 0;
  await hold(holdSeconds);
  try {
    await Promise.all(
      Array.from({ length: DISPATCH_CONCURRENCY }, async () => {
        while (next < runs) {
          next += 1;
          const runId = await dispatchWithRetries(bench, `${label}-${process.pid}-${next}`);
          if (runId) runIds.push(runId);
          else failures += 1;
        }
      }),
    );
  } finally {
    await hold(0);
    sqs.destroy();
  }
  return { runIds, failures };
};

/** Reads the runs not yet ended, not often: DynamoDB Local is what every run waits on. */
const drain = async (bench: BenchCloud, runIds: string[], finishBy: number, log: (line: string) => void) => {
  const latest = new Map<string, Run>();
  let reported = Date.now();
  for (const deadline = Math.min(finishBy, Date.now() + DRAIN_TIMEOUT_MS); Date.now() < deadline; ) {
    const open = runIds.filter((id) => {
      const run = latest.get(id);
      return !run || !terminal(run);
    });
    for (const run of await bench.getRuns(open)) latest.set(run.runId, run);
    const ended = [...latest.values()].filter(terminal).length;
    if (ended === runIds.length) break;
    if (Date.now() - reported > 15_000) {
      reported = Date.now();
      log(`  ${ended} of ${runIds.length} runs ended`);
    }
    await sleep(POLL_MS);
  }
  return [...latest.values()];
};

export const measureBurst = async (
  bench: BenchCloud,
  log: (line: string) => void,
  runCount: number,
  limits: LaunchLimits,
  /** epoch ms: runs not ended by then are reported as such */
  finishBy: number,
): Promise<BurstResult> => {
  await setLaunchLimits(bench, limits);
  // the burst is held to Fargate's launch limits, not to an account's: no limit on active runs
  await bench.setAccountLimits({ maxActiveRuns: 0 });
  // enough for the dispatches to finish before the first message is delivered
  const holdSeconds = Math.max(5, Math.ceil(runCount / 50));
  const before = await ecsRunTask(bench);
  const samples: { at: number; launched: number }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const s = await ecsRunTask(bench);
      samples.push({ at: Date.now(), launched: s.calls - s.errors - (before.calls - before.errors) });
      await sleep(SAMPLE_MS);
    }
  })();
  try {
    const startedAt = Date.now();
    const { runIds, failures: dispatchFailures } = await dispatchHeld(
      bench,
      runCount,
      holdSeconds,
      `burst${runCount}`,
    );
    const dispatchSeconds = (Date.now() - startedAt) / 1000;
    log(`  ${runIds.length} runs dispatched in ${dispatchSeconds.toFixed(1)} s`);
    const runs = await drain(bench, runIds, finishBy, log);
    const drainedAt = Date.now();
    await bench.settle(1000, 20_000).catch(() => undefined);
    const after = await ecsRunTask(bench);

    const ended = runs.filter(terminal);
    const failures = count(
      runs.filter((r) => r.status !== 'COMPLETED'),
      (r) => `${r.status}: ${(r.message ?? r.exitReason ?? '').replace(/[0-9a-f]{32}/g, '…').slice(0, 120)}`,
    );
    for (const [reason, n] of Object.entries(failures)) log(`  ${n} × ${reason}`);
    const allTerminal = ended.length === runIds.length;
    // not drained: how long the benchmark waited
    const lastEnd = allTerminal
      ? Math.max(...ended.map((r) => Date.parse(r.completedAt ?? r.updatedAt)))
      : drainedAt;
    let peak = 0;
    for (const [i, sample] of samples.entries()) {
      // the latest sample at least a second older: launches per second over that window
      const base = samples.slice(0, i).findLast((s) => s.at <= sample.at - 1000);
      if (base) peak = Math.max(peak, (sample.launched - base.launched) / ((sample.at - base.at) / 1000));
    }
    const launches = after.calls - after.errors - (before.calls - before.errors);
    const first = samples.find((s) => s.launched > 0);
    const last = samples.find((s) => s.launched >= launches);
    const launchSeconds = first && last ? (last.at - first.at + SAMPLE_MS) / 1000 : 0;
    return {
      runs: runIds.length,
      limits,
      dispatchFailures,
      dispatchSeconds,
      holdSeconds,
      drainSeconds: (lastEnd - (startedAt + holdSeconds * 1000)) / 1000,
      allTerminal,
      byStatus: count(runs, (r) => r.status),
      deadLettered: runs.filter((r) => r.status === 'DEAD_LETTER').length,
      failures,
      launches,
      throttledLaunchCalls: after.errors - before.errors,
      peakLaunchesPerSecond: peak,
      meanLaunchesPerSecond: launchSeconds > 0 ? launches / launchSeconds : launches,
      retriedRuns: runs.filter((r) => r.attempt > 1).length,
      neverLaunched: runs.filter((r) => r.status !== 'COMPLETED' && !r.taskArn).length,
    };
  } finally {
    sampling = false;
    await sampler;
  }
};

/** `finishBy` (epoch ms) keeps the whole benchmark within its time on a machine busy with other work. */
export const measureLaunchBurst = async (
  bench: BenchCloud,
  log: (line: string) => void,
  finishBy: number,
): Promise<LaunchBurstResult> => {
  try {
    log(`  ${BURST_RUNS} runs, launch limits ${FARGATE_LIMITS.burst} + ${FARGATE_LIMITS.perSecond}/s`);
    const fargate = await measureBurst(bench, log, BURST_RUNS, FARGATE_LIMITS, finishBy - SCALED_BURST_MS);
    const limits = { burst: FARGATE_LIMITS.burst / SCALE, perSecond: FARGATE_LIMITS.perSecond / SCALE };
    log(`  ${BURST_RUNS / SCALE} runs, launch limits ${limits.burst} + ${limits.perSecond}/s`);
    const scaled = await measureBurst(bench, log, BURST_RUNS / SCALE, limits, finishBy);
    return { fargate, scaled };
  } finally {
    await setLaunchLimits(bench, FARGATE_LIMITS);
  }
};
