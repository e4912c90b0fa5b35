import { z } from 'zod';

/** Query strings of the run's history: its step timeline and its sandbox log. */

const seq = z.coerce.number().int().min(0).max(9_999_999_999);
const cursor = z.string().min(1).max(2000);

export const stepsQuerySchema = z
  .object({
    /** steps with a seq above this one; 0 (the default) is the start */
    after: seq.default(0),
    limit: z.coerce.number().int().min(1).max(100).default(50),
  })
  .strict();
export type StepsQuery = z.infer<typeof stepsQuerySchema>;

export const stepSeqSchema = seq;

export const logsQuerySchema = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    /** `nextCursor` of a page: the lines before it */
    cursor: cursor.optional(),
    /** `afterCursor` of a page: the lines written since */
    after: cursor.optional(),
  })
  .strict()
  .refine((q) => q.cursor === undefined || q.after === undefined, {
    message: 'cursor (older lines) and after (newer lines) cannot be combined',
  });
export type LogsQuery = z.infer<typeof logsQuerySchema>;
