import { z } from 'zod';
import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { type Clock, type RunRepository, type Sandbox, systemClock } from '../shared/ports.js';
import { reconcileExecution } from '../shared/usecases/lifecycle.js';
import type { Pricing } from '../shared/usecases/spend.js';
import { runRepository, sandbox } from '../shared/wiring.js';

const eventSchema = z.looseObject({
  detail: z.looseObject({
    status: z.string(),
    input: z
      .string()
      .nullish()
      .transform((v) => v ?? undefined),
    error: z
      .string()
      .nullish()
      .transform((v) => v ?? undefined),
    cause: z
      .string()
      .nullish()
      .transform((v) => v ?? undefined),
  }),
});

/** EventBridge: an execution FAILED, TIMED_OUT or was ABORTED, so Finalize never ran. */
export const makeHandler = (deps: {
  runs: RunRepository;
  sandbox: Sandbox;
  clock: Clock;
  pricing: Pricing;
}) => validatedHandler(eventSchema, (event) => reconcileExecution(deps, event.detail));

const env = readEnv('TABLE_NAME', 'CLUSTER_ARN', 'PRICE_TABLE', 'POD_CPU_ARCHITECTURE');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  sandbox: sandbox(env.CLUSTER_ARN),
  clock: systemClock,
  pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
});
