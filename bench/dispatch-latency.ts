import type { Run, RunStatus } from '../shared/domain/run.js';
import type { BenchCloud } from './support/cloud.js';
import { percentile } from './support/stats.js';

/**
 * (3) From the dispatch request to RUNNING (the pod’s first event), one run at a time, each dispatched
 * once the previous one is running, to a project without repositories (the real pod's clone is figure
 * 8's). The run's own history dates each step on the same clock, so the time splits into its stages
 * without polling error.
 */

export const LATENCY_RUNS = 50;

export interface LatencyResult {
  runs: number;
  p50Ms: number;
  p99Ms: number;
  /** p50 of each stage: request → QUEUED, QUEUED → PROVISIONING (queue, start, checks), → RUNNING (launch, pod) */
  stagesP50Ms: { dispatch: number; queueAndChecks: number; launchAndPod: number };
}

const at = (run: Run, status: RunStatus): number => {
  const change = run.history.find((h) => h.status === status);
  if (!change) throw new Error(`run ${run.runId} never was ${status} (it is ${run.status})`);
  return Date.parse(change.at);
};

export const measureDispatchLatency = async (bench: BenchCloud): Promise<LatencyResult> => {
  const totals: number[] = [];
  const dispatch: number[] = [];
  const queueAndChecks: number[] = [];
  const launchAndPod: number[] = [];
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const sentAt = Date.now();
    const runId = await bench.dispatch({ repoless: true, demo: { steps: 0, stepDelayMs: 0, edit: false } });
    const run = await bench.waitForRun(runId, (r) => r.history.some((h) => h.status === 'RUNNING'), 60_000);
    const running = at(run, 'RUNNING');
    totals.push(running - sentAt);
    dispatch.push(at(run, 'QUEUED') - sentAt);
    queueAndChecks.push(at(run, 'PROVISIONING') - at(run, 'QUEUED'));
    launchAndPod.push(running - at(run, 'PROVISIONING'));
  }
  await bench.settle();
  return {
    runs: totals.length,
    p50Ms: percentile(totals, 50),
    p99Ms: percentile(totals, 99),
    stagesP50Ms: {
      dispatch: percentile(dispatch, 50),
      queueAndChecks: percentile(queueAndChecks, 50),
      launchAndPod: percentile(launchAndPod, 50),
    },
  };
};
