import { setTimeout as sleep } from 'node:timers/promises';
import type { StepView } from '../shared/usecases/timeline.js';
import { type BenchCloud, startBenchCloud, terminal } from './support/cloud.js';
import { processWithVariable, treeResidentKiB } from './support/process-memory.js';
import { percentile } from './support/stats.js';

/**
 * (8) The real pod: the demo pod's Claude Code on the local model, in autopilot, one run at a time,
 * on a local cloud of its own where each pod is its own process tree as a Fargate task is (the other
 * figures share one pod host). Each run clones the demo repository, runs both hooks, lets the real
 * Claude Code loop read, edit and test, then commits and pushes.
 *
 * - Dispatch → first agent step: from the dispatch request to the first step the agent reports
 *   (dated by the control plane when stored): queue, checks, launch, clone, hooks, the SDK starting
 *   Claude Code and the model's first answer.
 * - Resident memory: the sum of the resident sets of the pod's process tree (the runtime, Claude Code
 *   and the tools it runs), sampled every 200 ms; the peak of each run.
 */

export const REAL_POD_RUNS = 5;
const SAMPLE_MS = 200;
const RUN_TIMEOUT_MS = 180_000;

export interface RealPodResult {
  runs: number;
  firstStepP50Ms: number;
  firstStepMaxMs: number;
  /** dispatch → the run's terminal status */
  runP50Ms: number;
  /** each run's peak resident memory, MiB */
  peakResidentMiB: { p50: number; max: number };
}

const firstStepAt = async (bench: BenchCloud, runId: string): Promise<number | undefined> => {
  const page = await bench.apiGet<{ items: StepView[] }>(`/v1/runs/${runId}/steps?after=0&limit=1`);
  const step = page.items[0];
  return step ? Date.parse(step.at) : undefined;
};

/** Samples the pod's process tree (found by its RUN_ID) until the run ends; the peak, in KiB. */
const peakResidentKiB = async (bench: BenchCloud, runId: string): Promise<number> => {
  let peak = 0;
  let root: number | undefined;
  for (const deadline = Date.now() + RUN_TIMEOUT_MS; Date.now() < deadline; await sleep(SAMPLE_MS)) {
    root ??= await processWithVariable('RUN_ID', runId);
    if (root !== undefined) peak = Math.max(peak, await treeResidentKiB(root));
    const run = await bench.getRun(runId);
    if (run && terminal(run)) return peak;
  }
  throw new Error(`run ${runId} did not end within ${RUN_TIMEOUT_MS} ms`);
};

export const measureRealPod = async (log: (line: string) => void): Promise<RealPodResult> => {
  if (process.platform !== 'linux') throw new Error('the pod’s memory is read from /proc: Linux only');
  const bench = await startBenchCloud((line) => log(`  cloud: ${line}`), { sharedPodHost: false });
  try {
    const podId = bench.cloud.endpoints.podId;
    const firstSteps: number[] = [];
    const durations: number[] = [];
    const peaks: number[] = [];
    for (let i = 0; i < REAL_POD_RUNS; i++) {
      const sentAt = Date.now();
      const runId = await bench.dispatch({ podId });
      const peakKiB = await peakResidentKiB(bench, runId);
      const run = await bench.waitForRun(runId, terminal, 1000);
      if (run.status !== 'COMPLETED') {
        throw new Error(`run ${runId} ended ${run.status} (${run.exitReason ?? 'no reason'})`);
      }
      const firstStep = await firstStepAt(bench, runId);
      if (firstStep === undefined) throw new Error(`run ${runId} completed without a step`);
      const ended = run.history.at(-1)?.at;
      firstSteps.push(firstStep - sentAt);
      durations.push(Date.parse(ended ?? run.updatedAt) - sentAt);
      peaks.push(peakKiB / 1024);
      log(
        `  run ${i + 1}: first step after ${firstStep - sentAt} ms, peak ${Math.round(peakKiB / 1024)} MiB`,
      );
    }
    return {
      runs: firstSteps.length,
      firstStepP50Ms: percentile(firstSteps, 50),
      firstStepMaxMs: Math.max(...firstSteps),
      runP50Ms: percentile(durations, 50),
      peakResidentMiB: { p50: percentile(peaks, 50), max: Math.max(...peaks) },
    };
  } finally {
    await bench.stop();
  }
};
