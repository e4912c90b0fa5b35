import { readEnv } from '../shared/config.js';
import type { Orchestrator, RunRepository } from '../shared/ports.js';
import { runMessageHandler } from '../shared/sqs-batch.js';
import { startRun } from '../shared/usecases/lifecycle.js';
import { orchestrator, runRepository } from '../shared/wiring.js';

/** Runs queue → one Step Functions execution per run (named after it, so redelivery is harmless). */
export const makeHandler = (deps: { runs: RunRepository; orchestrator: Orchestrator }) =>
  runMessageHandler((runId) => startRun(deps, runId));

const env = readEnv('TABLE_NAME', 'STATE_MACHINE_ARN');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  orchestrator: orchestrator(env.STATE_MACHINE_ARN),
});
