import { z } from 'zod';
import { readEnv } from '../shared/config.js';
import { EXIT_REASONS } from '../shared/domain/run.js';
import { validatedHandler } from '../shared/lambda.js';
import { type Clock, type RunRepository, type Sandbox, systemClock } from '../shared/ports.js';
import { finalizeRun } from '../shared/usecases/lifecycle.js';
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
    .looseObject({
      outcome: z.enum(['completed', 'failed']),
      exitReason: z.enum(EXIT_REASONS).optional(),
      message: z.string().optional(),
    })
    .optional(),
  error: z.looseObject({ Error: z.string().optional(), Cause: z.string().optional() }).optional(),
});

/** State machine task, the last on every path: stop the sandbox, write the terminal status. */
export const makeHandler = (deps: { runs: RunRepository; sandbox: Sandbox; clock: Clock }) =>
  validatedHandler(stateSchema, (state) => finalizeRun(deps, state));

const env = readEnv('TABLE_NAME', 'CLUSTER_ARN');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  sandbox: sandbox(env.CLUSTER_ARN),
  clock: systemClock,
});
