import { readEnv } from '../shared/config.js';
import { EXIT_REASONS } from '../shared/domain/run.js';
import { validatedHandler } from '../shared/lambda.js';
import { warnIssueUntold } from '../shared/observability.js';
import { type GitHubApp, systemClock } from '../shared/ports.js';
import { approvalOutcomeSchema, checkpointSignalSchema } from '../shared/schemas/approvals.js';
import { type IssueSettings, tellEnded } from '../shared/usecases/github-issues.js';
import { finalizeRun, type LifecycleDeps } from '../shared/usecases/lifecycle.js';
import {
  activeRuns,
  directoryRepository,
  GITHUB_APP_VARIABLES,
  gitHubApp,
  runQueue,
  runStore,
  sandbox,
  spendLedger,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

const stateSchema = z.looseObject({
  runId: z.string(),
  checks: z.optional(
    z.looseObject({
      ok: z.boolean(),
      exitReason: z.nullable(z.enum(EXIT_REASONS)),
      message: z.nullable(z.string()),
    }),
  ),
  launch: z.optional(
    z.looseObject({ tasks: z.optional(z.array(z.looseObject({ TaskArn: z.optional(z.string()) }))) }),
  ),
  retry: z.optional(z.looseObject({ retry: z.boolean(), attempt: z.number() })),
  pod: z.optional(
    z.union([
      z.looseObject({
        outcome: z.enum(['completed', 'failed']),
        exitReason: z.optional(z.enum(EXIT_REASONS)),
        message: z.optional(z.string()),
      }),
      checkpointSignalSchema,
    ]),
  ),
  approval: z.optional(approvalOutcomeSchema),
  error: z.optional(z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) })),
});

/**
 * State machine task, the last on every path: stop the sandbox, write the terminal status, settle the
 * cost, and rewrite the run's comment on the GitHub issue it was started from (which, failing, is
 * logged: the run has ended all the same).
 */
export const makeHandler = (
  deps: Pick<
    LifecycleDeps,
    'runs' | 'ledger' | 'sandbox' | 'clock' | 'pricing' | 'directory' | 'slots' | 'queue'
  > & {
    github: GitHubApp | undefined;
  },
  settings: IssueSettings,
) =>
  validatedHandler(stateSchema, (state) =>
    finalizeRun(
      {
        ...deps,
        tellEnded: tellEnded(deps, settings, warnIssueUntold),
      },
      state,
    ),
  );

const env = readEnv(
  'TABLE_NAME',
  'QUEUE_URL',
  'CLUSTER_ARN',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
  'PUBLIC_API_URL',
  ...GITHUB_APP_VARIABLES,
);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    ledger: spendLedger(env.TABLE_NAME),
    sandbox: sandbox(env.CLUSTER_ARN),
    directory: directoryRepository(env.TABLE_NAME),
    slots: activeRuns(env.TABLE_NAME),
    queue: runQueue(env.QUEUE_URL),
    clock: systemClock,
    pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
    github: gitHubApp(env),
  },
  { publicApiUrl: env.PUBLIC_API_URL },
);
