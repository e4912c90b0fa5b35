import type { Run } from '../shared/domain/run.js';
import { type BenchCloud, type DemoScript, terminal } from './support/cloud.js';
import { between } from './support/usage.js';

/**
 * (7) Agent events into one run: how fast the Agent API takes a pod's batched events, and what each
 * step costs in DynamoDB write units. The demo pod emits its steps as fast as it can and its reporter
 * batches them as it would for a real agent (up to 100 events per request, one request in flight).
 */

export const THROUGHPUT_STEPS = 3000;
const METERED_STEPS = 300;

const script = (steps: number): DemoScript => ({ steps, stepDelayMs: 0, pullRequest: false });

export interface IngestionResult {
  steps: number;
  events: number;
  batches: number;
  /** events over the time from the first batch's arrival to the last batch's answer */
  eventsPerSecond: number;
  /** events over the time spent answering batches: the Agent API's own pace */
  eventsPerBusySecond: number;
  /** (write units of a run with N steps - those of the same run with none) / N */
  writeUnitsPerStep: number;
  meteredSteps: number;
}

const completed = async (bench: BenchCloud, runId: string): Promise<Run> => {
  const run = await bench.waitForRun(runId, terminal, 180_000);
  if (run.status !== 'COMPLETED') throw new Error(`run ${runId} ended ${run.status}: ${run.message}`);
  await bench.waitForRun(runId, (r) => r.stopCode !== undefined, 15_000).catch(() => undefined);
  await bench.settle();
  return run;
};

const writeUnitsOf = async (bench: BenchCloud, steps: number): Promise<number> => {
  await bench.settle();
  const before = await bench.counters();
  await completed(bench, await bench.dispatch({ demo: script(steps) }));
  return between(before, await bench.counters()).dynamo.writeUnits;
};

export const measureIngestion = async (bench: BenchCloud): Promise<IngestionResult> => {
  const runId = await bench.dispatch({ demo: script(THROUGHPUT_STEPS) });
  await completed(bench, runId);
  const traffic = bench.agent.run(runId);
  const span = (traffic.lastEventsAt ?? 0) - (traffic.firstEventsAt ?? 0);

  bench.dynamo.setMetering(true);
  const [withSteps, withoutSteps] = await (async () => {
    try {
      return [await writeUnitsOf(bench, METERED_STEPS), await writeUnitsOf(bench, 0)];
    } finally {
      bench.dynamo.setMetering(false);
    }
  })();
  return {
    steps: THROUGHPUT_STEPS,
    events: traffic.events,
    batches: traffic.eventBatches + traffic.heartbeatBatches,
    eventsPerSecond: traffic.events / (span / 1000),
    eventsPerBusySecond: traffic.events / ((traffic.eventsBusyMs ?? span) / 1000),
    writeUnitsPerStep: (withSteps - withoutSteps) / METERED_STEPS,
    meteredSteps: METERED_STEPS,
  };
};
