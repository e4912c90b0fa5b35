import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { measureConsolePage } from './console-page.js';
import { measureDispatchApi } from './dispatch-api.js';
import { measureDispatchLatency } from './dispatch-latency.js';
import { measureFollowLatency } from './follow-latency.js';
import { measureHandlers } from './handlers.js';
import { measureIngestion } from './ingestion.js';
import { measureLaunchBurst } from './launch-burst.js';
import { measureListScale } from './list-scale.js';
import { measureRealPod } from './real-pod.js';
import { machine, type Results, render, targetRows, writeResults } from './report.js';
import { measureRunCost } from './run-cost.js';
import { startBenchCloud } from './support/cloud.js';

/**
 * `npm run bench`: what the control plane costs per run and how it scales, measured on the local
 * cloud. Prints the table and writes bench/results.json. Figures, not tests: a missed target is
 * reported, not failed; a step that cannot be measured is reported and makes the exit code 1.
 *
 * `npm run bench -- --only launchBurst,listScale` measures some figures and prints them; only a full
 * run writes bench/results.json.
 */

const RESULTS_FILE = fileURLToPath(new URL('./results.json', import.meta.url));
/** The burst waits for its runs no longer than this from the start, so the whole run stays under ten minutes. */
const BURST_ENDS_BY_MS = 560_000;
const started = performance.now();
const startedAtMs = Date.now();
const loadBefore = os.loadavg()[0] ?? 0;
const log = (line: string) => console.error(line);
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;

const STEPS = [
  'handlers',
  'runCost',
  'ingestion',
  'dispatchLatency',
  'followLatency',
  'listScale',
  'consolePage',
  'launchBurst',
  'dispatchApi',
  'realPod',
] as const satisfies Exclude<keyof Results, 'errors'>[];
type Step = (typeof STEPS)[number];

const { values: args } = parseArgs({ options: { only: { type: 'string' } } });
const only = args.only?.split(',').map((name) => name.trim());
const unknownSteps = only?.filter((name) => !(STEPS as readonly string[]).includes(name)) ?? [];
if (unknownSteps.length > 0) {
  console.error(`unknown step ${unknownSteps.join(', ')}; the steps are ${STEPS.join(', ')}`);
  process.exit(2);
}

const results: Results = { errors: {} };
const selected = (key: Step) => !only || only.includes(key);

const measureStep = async <K extends Step>(key: K, title: string, measure: () => Promise<Results[K]>) => {
  log(`[${elapsed()}] ${title}`);
  try {
    results[key] = await measure();
  } catch (err) {
    results.errors[key] = err instanceof Error ? err.message : String(err);
    log(`  failed: ${results.errors[key]}`);
  }
};

const step = async <K extends Step>(key: K, title: string, measure: () => Promise<Results[K]>) => {
  if (!selected(key)) return;
  await measureStep(key, title, measure);
  // what one step leaves running must not weigh on the next
  await bench.settle(1000, 60_000).catch(() => log('  the local cloud did not go quiet'));
};

log(`[${elapsed()}] starting the local cloud`);
// the handlers' cold imports too read the environment the local cloud gives its handlers
const bench = await startBenchCloud((line) => log(`  cloud: ${line}`));
try {
  await step('handlers', '(6) handler bundles and cold imports', () =>
    measureHandlers(log, (fn) => bench.cloud.runtime.environmentOf(fn)),
  );
  await step('runCost', '(1) control-plane cost per run', () => measureRunCost(bench, log));
  await step('ingestion', '(7) agent event ingestion', () => measureIngestion(bench));
  await step('dispatchLatency', '(3) dispatch → RUNNING latency', () => measureDispatchLatency(bench));
  await step('followLatency', '(9) following a run live', () => measureFollowLatency(bench, log));
  await step('listScale', '(2) list cost as runs grow', () => measureListScale(bench, log));
  await step('consolePage', '(10) the console runs page of 1,000 runs', () => measureConsolePage(bench));
  await step('launchBurst', '(5) launch burst', () =>
    measureLaunchBurst(bench, log, startedAtMs + BURST_ENDS_BY_MS),
  );
  // last: the runs it dispatches stay queued
  await step('dispatchApi', '(4) dispatch API at a fixed rate', () => measureDispatchApi(bench));
} finally {
  await bench.stop();
}
// on a local cloud of its own, once the other is gone: its pods are processes of their own
if (selected('realPod')) {
  await measureStep('realPod', '(8) the real pod: dispatch → first agent step, resident memory', () =>
    measureRealPod(log),
  );
}

const seconds = (performance.now() - started) / 1000;
const rows = targetRows(results);
const m = machine(loadBefore);
console.log(render(results, rows, seconds, m));
if (!only) {
  await writeResults(RESULTS_FILE, results, rows, seconds, m);
  console.log(`\nWritten to ${RESULTS_FILE}`);
}
process.exit(Object.keys(results.errors).length > 0 ? 1 : 0);
