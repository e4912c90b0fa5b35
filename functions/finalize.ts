import { z } from 'zod';
import { readEnv } from '../shared/config.js';
import { EXIT_REASONS } from '../shared/domain/run.js';
import { validatedHandler } from '../shared/lambda.js';
import { type Clock, type RunRepository, type Sandbox, systemClock } from '../shared/ports.js';
import { approvalOutcomeSchema, checkpointSignalSchema } from '../shared/schemas/approvals.js';
import { finalizeRun } from '../shared/usecases/lifecycle.js';
import type { Pricing } from '../shared/usecases/spend.js';
import { runRepository, sandbox } from '../shared/wiring.js';

const stateSchema = z.looseObject({
  runId: z.string(),
  checks: z
    .looseObject({
      ok: z.boolean(),
      exitReason: z.enum(EXIT_REASONS).nullable(),
      message: z.string().nullable(),
    })
    .optional(),
  launch: z
    .looseObject({ tasks: z.array(z.looseObject({ TaskArn: z.string().optional() })).optional() })
    .optional(),
  retry: z.looseObject({ retry: z.boolean(), attempt: z.number() }).optional(),
  pod: z
    .union([
      z.looseObject({
        outcome: z.enum(['completed', 'failed']),
        exitReason: z.enum(EXIT_REASONS).optional(),
        message: z.string().optional(),
      }),
      checkpointSignalSchema,
    ])
    .optional(),
  approval: approvalOutcomeSchema.optional(),
  error: z.looseObject({ Error: z.string().optional(), Cause: z.string().optional() }).optional(),
});

/** State machine task, the last on every path: stop the sandbox, write the terminal status, settle the cost. */
export const makeHandler = (deps: {
  runs: RunRepository;
  sandbox: Sandbox;
  clock: Clock;
  pricing: Pricing;
}) => validatedHandler(stateSchema, (state) => finalizeRun(deps, state));

const env = readEnv('TABLE_NAME', 'CLUSTER_ARN', 'PRICE_TABLE', 'POD_CPU_ARCHITECTURE');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  sandbox: sandbox(env.CLUSTER_ARN),
  clock: systemClock,
  pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
});
