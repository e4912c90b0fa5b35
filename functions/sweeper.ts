import { readEnv } from '../shared/config.js';
import { SWEEPER } from '../shared/domain/policy.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { type Clock, type RunQueue, type RunRepository, systemClock } from '../shared/ports.js';
import { sweepQueued } from '../shared/usecases/lifecycle.js';
import { runQueue, runRepository } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** Schedule: re-enqueue QUEUED runs whose message was lost (a failed enqueue, a purged queue). */
export const makeHandler = (deps: { runs: RunRepository; queue: RunQueue; clock: Clock }) =>
  validatedHandler(z.unknown(), async () => {
    const requeued = await sweepQueued(deps, SWEEPER.staleAfterSeconds);
    if (requeued > 0) logger.info('re-enqueued stale runs', { requeued });
    return { requeued };
  });

const env = readEnv('TABLE_NAME', 'QUEUE_URL');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  queue: runQueue(env.QUEUE_URL),
  clock: systemClock,
});
