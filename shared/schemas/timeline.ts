import * as z from '../zod.js';
import { seqTextSchema } from './ids.js';

/** Query strings of the run's history: its step timeline and its sandbox log. */

const cursor = z.string().check(z.minLength(1), z.maxLength(2000));

export const stepsQuerySchema = z.strictObject({
  /** steps with a seq above this one; 0 (the default) is the start */
  after: z._default(seqTextSchema, 0),
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 50),
});
export type StepsQuery = z.infer<typeof stepsQuerySchema>;

export const logsQuerySchema = z
  .strictObject({
    limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(1000)), 100),
    /** `nextCursor` of a page: the lines before it */
    cursor: z.optional(cursor),
    /** `afterCursor` of a page: the lines written since */
    after: z.optional(cursor),
  })
  .check(
    z.refine((q) => q.cursor === undefined || q.after === undefined, {
      message: 'cursor (older lines) and after (newer lines) cannot be combined',
    }),
  );
export type LogsQuery = z.infer<typeof logsQuerySchema>;
