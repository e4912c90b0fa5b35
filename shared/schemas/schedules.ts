import { RUN_MODES } from '../domain/run.js';
import {
  DEFAULT_TIME_ZONE,
  isTimeZone,
  parseScheduleExpression,
  ScheduleExpressionError,
} from '../domain/schedule.js';
import * as z from '../zod.js';
import { gitRefSchema, promptSchema } from './api.js';
import { idSchema as id } from './ids.js';

// The schedules' wire contracts, apart from the API's others: only the functions that take them carry
// the expression rules.

/**
 * A schedule's expression as EventBridge Scheduler takes it, checked against its rules here so that a
 * bad one is a 400 saying what is wrong; kept in its one form (single spaces). One-time `at(...)`
 * expressions are refused: a schedule starts a run at each tick, and one run later is a dispatch then.
 */
const scheduleExpression = z.pipe(
  z.string(),
  z.transform((text, ctx) => {
    try {
      const expression = parseScheduleExpression(text);
      if (expression.kind !== 'at') return expression.text;
      ctx.issues.push({
        code: 'custom',
        message:
          'one-time at(...) expressions are not taken: a schedule starts a run at every tick of a rate(...) or cron(...) expression',
        input: text,
      });
    } catch (err) {
      if (!(err instanceof ScheduleExpressionError)) throw err;
      ctx.issues.push({ code: 'custom', message: err.message, input: text });
    }
    return z.NEVER;
  }),
);

export const scheduleRequestSchema = z.strictObject({
  expression: scheduleExpression,
  timezone: z._default(
    z
      .string()
      .check(z.refine(isTimeZone, 'an IANA time zone name, e.g. UTC, Europe/Paris or America/New_York')),
    DEFAULT_TIME_ZONE,
  ),
  podId: id,
  itemId: id,
  prompt: promptSchema,
  mode: z.enum(RUN_MODES),
  ref: z.optional(gitRefSchema),
  enabled: z._default(z.boolean(), true),
});
export type ScheduleRequest = z.infer<typeof scheduleRequestSchema>;

/**
 * What EventBridge Scheduler hands the scheduled-dispatch function at each tick: the Input of the
 * schedule's copy (shared/adapters/eventbridge-scheduler.ts), its scheduled time filled in. The time
 * is kept in the one form the schedule records it in (toISOString).
 */
export const tickSchema = z.object({
  accountId: id,
  projectId: id,
  scheduleId: id,
  revision: z.string().check(z.minLength(1), z.maxLength(64)),
  scheduledTime: z.pipe(
    z.iso.datetime({ offset: true }),
    z.transform((time) => new Date(time).toISOString()),
  ),
});
