import { setTimeout as sleep } from 'node:timers/promises';
import { LAUNCH } from '../shared/domain/policy.js';
import type { Run } from '../shared/domain/run.js';
import { ROUTES } from '../shared/manifest.js';
import { type BenchCloud, type DemoScript, type Dispatch, terminal } from './support/cloud.js';
import { between, type ControlPlaneReport, meanReport, reportOf, scaleReport } from './support/usage.js';

/**
 * (1) What one run costs the control plane, counted on real runs of the local cloud: an autopilot run,
 * a supervised run through one approval, and an hour paused awaiting approval, with the account's
 * caps checked on each control poll.
 */

export const AUTOPILOT_RUNS = 5;

/** A small but complete run: the demo repository cloned, three steps that report tokens, a commit pushed. */
export const COST_RUN_DEMO: DemoScript = {
  steps: 3,
  stepDelayMs: 50,
  usage: [{ model: 'demo-model', inputTokens: 1200, outputTokens: 300 }],
};

/** A pause of six control polls: a poll more or less in the window moves the hour's figure by a sixth. */
const PAUSE_WINDOW_SECONDS = (6 * LAUNCH.controlPollMs) / 1000;

export interface RunCostResult {
  demo: DemoScript;
  autopilot: ControlPlaneReport & { runs: number; states: string[] };
  supervised: (ControlPlaneReport & { states: string[] }) | { unavailable: string };
  pausedHour: (ControlPlaneReport & { measuredSeconds: number }) | { unavailable: string };
}

const UNAVAILABLE = 'supervised mode not available';

/** Waits until the run has ended and its sandbox's STOPPED event has been handled, then for quiet. */
const finished = async (bench: BenchCloud, runId: string): Promise<Run> => {
  await bench.waitForRun(runId, terminal, 120_000);
  // pod-stopped records the task's stop facts; until then the run is still costing something
  await bench.waitForRun(runId, (r) => r.stopCode !== undefined, 15_000).catch(() => undefined);
  await bench.settle();
  return (await bench.getRun(runId)) as Run;
};

const measureRun = async (bench: BenchCloud, request: Dispatch) => {
  await bench.settle();
  const before = await bench.counters();
  const runId = await bench.dispatch(request);
  const run = await finished(bench, runId);
  const after = await bench.counters();
  if (run.status !== 'COMPLETED') throw new Error(`run ${runId} ended ${run.status}: ${run.message}`);
  return { run, states: await bench.statesEntered(run), delta: between(before, after) };
};

/** A daily cap far above what the bench spends: its account's caps are then checked as a capped account's are. */
const BENCH_DAILY_CAP_MICRO_USD = 1_000_000_000;

const approveRoute = ROUTES.find((r) => r.method === 'POST' && r.path === '/v1/runs/{runId}/approve');

const measureSupervised = async (
  bench: BenchCloud,
): Promise<Pick<RunCostResult, 'supervised' | 'pausedHour'>> => {
  if (!approveRoute) {
    const unavailable = `${UNAVAILABLE} (no approve route)`;
    return { supervised: { unavailable }, pausedHour: { unavailable } };
  }
  await bench.settle();
  const start = await bench.counters();
  const runId = await bench.dispatch({
    mode: 'supervised',
    demo: COST_RUN_DEMO,
    checkpoints: ['plan'],
  });
  // paused once its approval is requested and mailed: on a loaded machine that can come seconds later,
  // and must not be counted as the pause's
  const paused = await bench.waitForRun(
    runId,
    (r) => (r.status === 'AWAITING_APPROVAL' && r.pendingApproval?.approvalId !== undefined) || terminal(r),
    60_000,
  );
  if (paused.status !== 'AWAITING_APPROVAL') {
    await finished(bench, runId);
    const unavailable = `${UNAVAILABLE} (the run ended ${paused.status} without pausing at its checkpoint)`;
    return { supervised: { unavailable }, pausedHour: { unavailable } };
  }
  // the pause itself: what waiting costs, measured between two quiet moments
  await bench.settle(300);
  const pauseStart = await bench.counters();
  const pausedAt = performance.now();
  await sleep(PAUSE_WINDOW_SECONDS * 1000);
  await bench.settle(300);
  const pauseEnd = await bench.counters();
  const measuredSeconds = (performance.now() - pausedAt) / 1000;
  const response = await fetch(`${bench.cloud.endpoints.apiUrl}/v1/runs/${runId}/approve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bench.cloud.endpoints.token}`, 'content-type': 'application/json' },
    body: '{}',
  });
  if (!response.ok) {
    const unavailable = `${UNAVAILABLE} (approve answered ${response.status}: ${(await response.text()).slice(0, 200)})`;
    return { supervised: { unavailable }, pausedHour: { unavailable } };
  }
  const run = await finished(bench, runId);
  const end = await bench.counters();
  const states = await bench.statesEntered(run);
  const pause = between(pauseStart, pauseEnd);
  const pauseReport = reportOf(pause, 0, 0);
  return {
    supervised: { ...reportOf(between(pause, between(start, end)), states.length, 2), states },
    pausedHour: { ...scaleReport(pauseReport, 3600 / measuredSeconds), measuredSeconds },
  };
};

/**
 * Each autopilot run is measured twice: once as it is, for everything but DynamoDB, and once with the
 * DynamoDB meter on, whose reads around each write would otherwise lengthen the Lambda durations.
 */
export const measureRunCost = async (
  bench: BenchCloud,
  log: (line: string) => void,
): Promise<RunCostResult> => {
  const request: Dispatch = { mode: 'autopilot', demo: COST_RUN_DEMO };
  // loads every handler the run touches, so the counted runs see warm functions, as most runs do
  await measureRun(bench, request);
  const reports: ControlPlaneReport[] = [];
  let states: string[] = [];
  for (let i = 0; i < AUTOPILOT_RUNS; i++) {
    const plain = await measureRun(bench, request);
    bench.dynamo.setMetering(true);
    const metered = await measureRun(bench, request).finally(() => bench.dynamo.setMetering(false));
    const report = reportOf({ ...plain.delta, dynamo: metered.delta.dynamo }, plain.states.length, 1);
    reports.push(report);
    states = plain.states;
    log(
      `  autopilot run ${i + 1}/${AUTOPILOT_RUNS}: ${states.length} transitions, $${report.cost.total.toFixed(6)}`,
    );
  }
  bench.dynamo.setMetering(true);
  await bench.setAccountLimits({ dailyCapMicroUsd: BENCH_DAILY_CAP_MICRO_USD });
  const supervised = await measureSupervised(bench).finally(async () => {
    bench.dynamo.setMetering(false);
    await bench.setAccountLimits();
  });
  return {
    demo: COST_RUN_DEMO,
    autopilot: { ...meanReport(reports), runs: reports.length, states },
    ...supervised,
  };
};
