import { readEnv } from '../shared/config.js';
import { SWEEPER } from '../shared/domain/policy.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { type RunMetricsPublisher, systemClock } from '../shared/ports.js';
import { type LifecycleDeps, oldestActiveRun, sweepQueued } from '../shared/usecases/lifecycle.js';
import { runList, runMetrics, runQueue, runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/**
 * Schedule: re-enqueue QUEUED runs whose message was lost (a failed enqueue, a purged queue), and
 * dead-letter those re-queued too often; then measure the oldest run not ended (its metric names it).
 */
export const makeHandler = (
  deps: Pick<LifecycleDeps, 'runs' | 'list' | 'queue' | 'clock'> & { metrics: RunMetricsPublisher },
  policy: { staleAfterSeconds: number; maxRequeues: number },
) =>
  validatedHandler(z.unknown(), async () => {
    const swept = await sweepQueued(deps, policy);
    if (swept.requeued + swept.deadLettered > 0) logger.warn('swept stale queued runs', swept);
    const oldest = await oldestActiveRun(deps);
    deps.metrics.publish(oldest.run, [{ name: 'OldestActiveRunAge', value: oldest.ageSeconds }]);
    return swept;
  });

const env = readEnv('TABLE_NAME', 'QUEUE_URL', 'SWEEPER_STALE_AFTER_SECONDS');
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    list: runList(env.TABLE_NAME),
    queue: runQueue(env.QUEUE_URL),
    clock: systemClock,
    metrics: runMetrics(),
  },
  { staleAfterSeconds: env.SWEEPER_STALE_AFTER_SECONDS, maxRequeues: SWEEPER.maxRequeues },
);
