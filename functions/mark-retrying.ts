import { readEnv } from '../shared/config.js';
import { launchFailureReason } from '../shared/domain/execution.js';
import { LAUNCH } from '../shared/domain/policy.js';
import { validatedHandler } from '../shared/lambda.js';
import { systemClock } from '../shared/ports.js';
import { type LifecycleDeps, markRetrying } from '../shared/usecases/lifecycle.js';
import { runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

const inputSchema = z.looseObject({
  runId: z.string(),
  launch: z.optional(
    z.looseObject({ failures: z.optional(z.array(z.looseObject({ Reason: z.optional(z.string()) }))) }),
  ),
  launchError: z.optional(z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) })),
});

/** State machine task: a launch failed; decide whether to try again and after how long. */
export const makeHandler = (
  deps: Pick<LifecycleDeps, 'runs' | 'clock'>,
  policy: { maxAttempts: number; backoffSeconds: readonly number[] },
) =>
  validatedHandler(inputSchema, (state) =>
    markRetrying(deps, policy, state.runId, launchFailureReason(state)),
  );

const env = readEnv('TABLE_NAME', 'LAUNCH_BACKOFF_SECONDS');
export const handler = makeHandler(
  { runs: runStore(env.TABLE_NAME), clock: systemClock },
  { maxAttempts: LAUNCH.maxAttempts, backoffSeconds: env.LAUNCH_BACKOFF_SECONDS.split(',').map(Number) },
);
