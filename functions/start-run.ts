import { readEnv } from '../shared/config.js';
import { systemClock } from '../shared/ports.js';
import { runMessageHandler } from '../shared/sqs-batch.js';
import { type LifecycleDeps, startRun } from '../shared/usecases/lifecycle.js';
import {
  activeRuns,
  directoryRepository,
  orchestrator,
  runQueue,
  runStore,
  sandbox,
  spendLedger,
} from '../shared/wiring.js';

/**
 * Runs queue → one Step Functions execution per run (named after it, so redelivery is harmless), once
 * the run has a slot of its account's active runs.
 */
export const makeHandler = (
  deps: Pick<
    LifecycleDeps,
    'runs' | 'ledger' | 'orchestrator' | 'sandbox' | 'clock' | 'pricing' | 'directory' | 'slots' | 'queue'
  >,
) => runMessageHandler((runId) => startRun(deps, runId));

const env = readEnv(
  'TABLE_NAME',
  'QUEUE_URL',
  'STATE_MACHINE_ARN',
  'CLUSTER_ARN',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
);
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  ledger: spendLedger(env.TABLE_NAME),
  orchestrator: orchestrator(env.STATE_MACHINE_ARN),
  sandbox: sandbox(env.CLUSTER_ARN),
  directory: directoryRepository(env.TABLE_NAME),
  slots: activeRuns(env.TABLE_NAME),
  queue: runQueue(env.QUEUE_URL),
  clock: systemClock,
  pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
});
