import type { Run } from '../shared/domain/run.js';
import { type BenchCloud, type DemoScript, terminal } from './support/cloud.js';
import { between } from './support/usage.js';

/**
 * (7) Agent events into one run: how fast the Agent API takes a pod's batched events, how many
 * DynamoDB requests an event batch takes, and what each step costs in write units. The demo pod emits
 * its steps as fast as it can and its reporter batches them as it would for a real agent (up to 100
 * events per request, one request in flight).
 */

export const THROUGHPUT_STEPS = 3000;
const METERED_STEPS = 300;

const script = (steps: number): DemoScript => ({ steps, stepDelayMs: 0, edit: false });

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
  /**
   * (DynamoDB requests of a run with N steps - those of the same run with none) / (its event batches -
   * those of the other): what one more batch of steps costs in requests, every function included
   */
  dynamoRequestsPerBatch: number;
  /** the event batches the metered run with N steps sent */
  meteredBatches: number;
  meteredSteps: number;
}

const completed = async (bench: BenchCloud, runId: string): Promise<Run> => {
  const run = await bench.waitForRun(runId, terminal, 180_000);
  if (run.status !== 'COMPLETED') throw new Error(`run ${runId} ended ${run.status}: ${run.message}`);
  await bench.waitForRun(runId, (r) => r.stopCode !== undefined, 15_000).catch(() => undefined);
  await bench.settle();
  return run;
};

/** What a whole run with this many steps took of DynamoDB, and how many event batches its pod sent. */
const meter = async (bench: BenchCloud, steps: number) => {
  await bench.settle();
  const before = await bench.counters();
  await completed(bench, await bench.dispatch({ demo: script(steps) }));
  const used = between(before, await bench.counters());
  return {
    writeUnits: used.dynamo.writeUnits,
    requests: Object.values(used.dynamo.requests).reduce((n, count) => n + count, 0),
    batches: used.agent.eventBatches,
  };
};

export const measureIngestion = async (bench: BenchCloud): Promise<IngestionResult> => {
  const runId = await bench.dispatch({ demo: script(THROUGHPUT_STEPS) });
  await completed(bench, runId);
  const traffic = bench.agent.run(runId);
  const span = (traffic.lastEventsAt ?? 0) - (traffic.firstEventsAt ?? 0);

  bench.dynamo.setMetering(true);
  const [withSteps, withoutSteps] = await (async () => {
    try {
      return [await meter(bench, METERED_STEPS), await meter(bench, 0)];
    } finally {
      bench.dynamo.setMetering(false);
    }
  })();
  const extraBatches = withSteps.batches - withoutSteps.batches;
  return {
    steps: THROUGHPUT_STEPS,
    events: traffic.events,
    batches: traffic.eventBatches + traffic.heartbeatBatches,
    eventsPerSecond: traffic.events / (span / 1000),
    eventsPerBusySecond: traffic.events / ((traffic.eventsBusyMs ?? span) / 1000),
    writeUnitsPerStep: (withSteps.writeUnits - withoutSteps.writeUnits) / METERED_STEPS,
    dynamoRequestsPerBatch: (withSteps.requests - withoutSteps.requests) / Math.max(1, extraBatches),
    meteredBatches: withSteps.batches,
    meteredSteps: METERED_STEPS,
  };
};
