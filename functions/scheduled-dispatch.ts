import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { tickSchema } from '../shared/schemas/schedules.js';
import { fireSchedule, type TickDeps } from '../shared/usecases/schedules.js';
import { directoryRepository, runQueue, runStore, scheduleStore } from '../shared/wiring.js';

/**
 * EventBridge Scheduler's tick of a schedule: its run dispatched (source cron), or a skip recorded.
 * A throw makes Scheduler try the tick again, and then put it in the schedules' dead-letter queue.
 */
export const makeHandler = (deps: TickDeps) =>
  validatedHandler(tickSchema, async (tick) => {
    const outcome = await fireSchedule(deps, tick);
    logger.info('schedule tick', { ...tick, ...outcome });
    return outcome;
  });

const env = readEnv('TABLE_NAME', 'QUEUE_URL');
export const handler = makeHandler({
  schedules: scheduleStore(env.TABLE_NAME),
  runs: runStore(env.TABLE_NAME),
  directory: directoryRepository(env.TABLE_NAME),
  queue: runQueue(env.QUEUE_URL),
  clock: systemClock,
});
