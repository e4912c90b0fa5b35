import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { systemClock } from '../shared/ports.js';
import type { TellEnded } from '../shared/usecases/github-issues.js';
import { type LifecycleDeps, reconcileExecution } from '../shared/usecases/lifecycle.js';
import {
  activeRuns,
  GITHUB_APP_VARIABLES,
  issueTeller,
  runQueue,
  runStore,
  sandbox,
  spendLedger,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** EventBridge sends `null` for a field the execution does not have. */
const optionalText = z.pipe(
  z.nullish(z.string()),
  z.transform((v) => v ?? undefined),
);

const eventSchema = z.looseObject({
  detail: z.looseObject({
    status: z.string(),
    executionArn: z.optional(z.string()),
    input: optionalText,
    error: optionalText,
    cause: optionalText,
  }),
});

/** EventBridge: an execution FAILED, TIMED_OUT or was ABORTED, so Finalize never ran. */
export const makeHandler = (
  deps: Pick<LifecycleDeps, 'runs' | 'ledger' | 'sandbox' | 'clock' | 'pricing' | 'slots' | 'queue'> & {
    tellEnded?: TellEnded;
  },
) => validatedHandler(eventSchema, (event) => reconcileExecution(deps, event.detail));

const env = readEnv(
  'TABLE_NAME',
  'QUEUE_URL',
  'CLUSTER_ARN',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
  'PUBLIC_API_URL',
  ...GITHUB_APP_VARIABLES,
);
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  // Finalize never ran: the run's GitHub issue is told here
  tellEnded: issueTeller(env),
  ledger: spendLedger(env.TABLE_NAME),
  sandbox: sandbox(env.CLUSTER_ARN),
  slots: activeRuns(env.TABLE_NAME),
  queue: runQueue(env.QUEUE_URL),
  clock: systemClock,
  pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
});
