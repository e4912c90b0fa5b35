import { readEnv } from '../shared/config.js';
import { SWEEPER } from '../shared/domain/policy.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { type RunMetricsPublisher, systemClock } from '../shared/ports.js';
import {
  checkPausedRuns,
  type LifecycleDeps,
  oldestActiveRun,
  sweepQueued,
} from '../shared/usecases/lifecycle.js';
import {
  activeRuns,
  directoryRepository,
  runList,
  runMetrics,
  runQueue,
  runStore,
  spendLedger,
  taskSignals,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/**
 * Schedule: re-enqueue QUEUED runs whose message was lost (a failed enqueue, a purged queue), and
 * dead-letter those re-queued too often; end paused runs past their budget or their account's cap;
 * then measure the oldest run not ended (its metric names it).
 */
export const makeHandler = (
  deps: Pick<
    LifecycleDeps,
    'runs' | 'list' | 'queue' | 'ledger' | 'directory' | 'pricing' | 'signals' | 'clock' | 'slots'
  > & { metrics: RunMetricsPublisher },
  policy: { staleAfterSeconds: number; maxRequeues: number },
) =>
  validatedHandler(z.unknown(), async () => {
    const swept = await sweepQueued(deps, policy);
    if (swept.requeued + swept.deadLettered > 0) logger.warn('swept stale queued runs', swept);
    const paused = await checkPausedRuns(deps);
    if (paused.failed > 0) logger.warn('ended paused runs over their limits', paused);
    const oldest = await oldestActiveRun(deps);
    deps.metrics.publish(oldest.run, [{ name: 'OldestActiveRunAge', value: oldest.ageSeconds }]);
    return { ...swept, paused };
  });

const env = readEnv(
  'TABLE_NAME',
  'QUEUE_URL',
  'SWEEPER_STALE_AFTER_SECONDS',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    list: runList(env.TABLE_NAME),
    queue: runQueue(env.QUEUE_URL),
    ledger: spendLedger(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
    signals: taskSignals(),
    slots: activeRuns(env.TABLE_NAME),
    clock: systemClock,
    metrics: runMetrics(),
  },
  { staleAfterSeconds: env.SWEEPER_STALE_AFTER_SECONDS, maxRequeues: SWEEPER.maxRequeues },
);
