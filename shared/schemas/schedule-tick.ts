import * as z from '../zod.js';
import { idSchema } from './ids.js';

/**
 * What EventBridge Scheduler hands the scheduled-dispatch function at each tick: the Input of the
 * schedule's copy (shared/adapters/eventbridge-scheduler.ts), its scheduled time filled in. The time
 * is kept in the one form the schedule records it in (toISOString).
 */
export const tickSchema = z.object({
  accountId: idSchema,
  projectId: idSchema,
  scheduleId: idSchema,
  revision: z.string().check(z.minLength(1), z.maxLength(64)),
  scheduledTime: z.pipe(
    z.iso.datetime({ offset: true }),
    z.transform((time) => new Date(time).toISOString()),
  ),
});
