import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { observed } from './observability.js';
import type * as z from './zod.js';

/**
 * A handler whose input is validated at the edge: state machine tasks, EventBridge targets and
 * schedules. A bad input throws, which Step Functions and EventBridge report and retry.
 */
export const validatedHandler = <S extends z.ZodMiniType, R>(
  schema: S,
  body: (input: z.infer<S>) => Promise<R>,
) =>
  middy<unknown, R, Error, Context>()
    .use(observed())
    .handler(async (event) => body(schema.parse(event)));
