import { readEnv } from '../shared/config.js';
import { launchFailureReason } from '../shared/domain/execution.js';
import { LAUNCH } from '../shared/domain/policy.js';
import { launchFailureKind } from '../shared/domain/run-metrics.js';
import { validatedHandler } from '../shared/lambda.js';
import { type RunMetricsPublisher, systemClock } from '../shared/ports.js';
import { type LifecycleDeps, markRetrying } from '../shared/usecases/lifecycle.js';
import { runMetrics, runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

const inputSchema = z.looseObject({
  runId: z.string(),
  launch: z.optional(
    z.looseObject({ failures: z.optional(z.array(z.looseObject({ Reason: z.optional(z.string()) }))) }),
  ),
  launchError: z.optional(z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) })),
});

/**
 * State machine task: a launch failed; decide whether to try again and after how long. Each failure
 * is counted by its kind: throttling that outlasted the launch's own retries, capacity, or other.
 */
export const makeHandler = (
  deps: Pick<LifecycleDeps, 'runs' | 'clock'> & { metrics: RunMetricsPublisher },
  policy: { maxAttempts: number; backoffSeconds: readonly number[] },
) =>
  validatedHandler(inputSchema, (state) => {
    const reason = launchFailureReason(state);
    deps.metrics.publish({ runId: state.runId }, [
      { name: 'LaunchFailures', value: 1, dimensions: { FailureKind: launchFailureKind(reason) } },
    ]);
    return markRetrying(deps, policy, state.runId, reason);
  });

const env = readEnv('TABLE_NAME', 'LAUNCH_BACKOFF_SECONDS');
export const handler = makeHandler(
  { runs: runStore(env.TABLE_NAME), clock: systemClock, metrics: runMetrics() },
  { maxAttempts: LAUNCH.maxAttempts, backoffSeconds: env.LAUNCH_BACKOFF_SECONDS.split(',').map(Number) },
);
