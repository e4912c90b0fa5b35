import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { observed } from './observability.js';
import * as z from './zod.js';

const runMessageSchema = z.object({ runId: z.string().check(z.minLength(1)) });

/**
 * An SQS handler over run messages: each record is handled on its own and only failed ones are
 * reported back (partial batch response), so one bad message does not hold up the others.
 */
export const runMessageHandler = (handle: (runId: string, record: SQSRecord) => Promise<void>) => {
  const processor = new BatchProcessor(EventType.SQS);
  const recordHandler = async (record: SQSRecord) => {
    const { runId } = runMessageSchema.parse(JSON.parse(record.body));
    await handle(runId, record);
  };
  return middy<SQSEvent, SQSBatchResponse, Error, Context>()
    .use(observed())
    .handler((event, context) => processPartialResponse(event, recordHandler, processor, { context }));
};
