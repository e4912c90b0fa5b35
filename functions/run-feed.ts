import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { runChangeOf } from '../shared/adapters/dynamo-stream-records.js';
import { readEnv } from '../shared/config.js';
import { logger } from '../shared/observability.js';
import { publishChange, type StreamDeps } from '../shared/usecases/stream.js';
import { connectionSender, feedStore, streamConnections } from '../shared/wiring.js';

/**
 * The table's stream of run writes → the runs' feeds and their followers. Records are handled one
 * after another, in the stream's order, and the first that fails ends the batch: it and every later
 * record come back (Lambda resumes from the failed one), since a run's changes must be fed in order.
 * Powertools' batch processors go on past a failure, which here would feed a later change first.
 */
export const makeHandler = (deps: Pick<StreamDeps, 'connections' | 'sender' | 'feed'>) =>
  middy<DynamoDBStreamEvent, DynamoDBBatchResponse, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .handler(async (event) => {
      for (const record of event.Records) {
        const change = runChangeOf(record);
        if (!change) continue;
        try {
          await publishChange(deps, change);
        } catch (err) {
          logger.error('a run change could not be fed', {
            runId: change.runId,
            change: change.change,
            error: err as Error,
          });
          return { batchItemFailures: [{ itemIdentifier: change.change }] };
        }
      }
      return { batchItemFailures: [] };
    });

const env = readEnv('TABLE_NAME', 'WEBSOCKET_CALLBACK_URL');
export const handler = makeHandler({
  connections: streamConnections(env.TABLE_NAME),
  feed: feedStore(env.TABLE_NAME),
  sender: connectionSender(env.WEBSOCKET_CALLBACK_URL),
});
