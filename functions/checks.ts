import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { systemClock } from '../shared/ports.js';
import { type LaunchSettings, runChecks } from '../shared/usecases/lifecycle.js';
import {
  activeRuns,
  directoryRepository,
  GITHUB_APP_VARIABLES,
  gitHubApp,
  runStore,
  spendLedger,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** State machine task: pre-flight checks; passing returns the launch parameters. */
export const makeHandler = (deps: Parameters<typeof runChecks>[0], settings: LaunchSettings) =>
  validatedHandler(z.object({ runId: z.string() }), ({ runId }) => runChecks(deps, settings, runId));

const env = readEnv(
  'TABLE_NAME',
  'AGENT_API_URL',
  'POD_HEARTBEAT_SECONDS',
  'POD_TASK_DEFINITION_ARN',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
  ...GITHUB_APP_VARIABLES,
);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    ledger: spendLedger(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    slots: activeRuns(env.TABLE_NAME),
    pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
    clock: systemClock,
    github: gitHubApp(env),
  },
  {
    agentApiUrl: env.AGENT_API_URL,
    heartbeatSeconds: env.POD_HEARTBEAT_SECONDS,
    stackTaskDefinitionArn: env.POD_TASK_DEFINITION_ARN,
  },
);
