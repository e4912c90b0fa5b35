import middy from '@middy/core';
import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { runChangeOf } from '../shared/adapters/dynamo-stream-records.js';
import { readEnv } from '../shared/config.js';
import type { RunChange } from '../shared/domain/feed.js';
import type { PriceTable } from '../shared/domain/pricing.js';
import { runMetricsOf } from '../shared/domain/run-metrics.js';
import { logger, observed } from '../shared/observability.js';
import type { RunMetricsPublisher } from '../shared/ports.js';
import { publishChanges, type StreamDeps } from '../shared/usecases/stream.js';
import { connectionSender, feedStore, runMetrics, streamConnections } from '../shared/wiring.js';

/**
 * The table's stream of run writes → the runs' feeds and their followers. Records are handled in
 * the stream's order, and the first run whose changes fail ends the batch: they and every later
 * record come back (Lambda resumes from the failed one), since a run's changes must be fed in order.
 * Powertools' batch processors go on past a failure, which here would feed a later change first.
 * The same changes are the run metrics: every status change, whichever function wrote it, passes
 * here, and a run's are counted once its feed has them (a failed batch resumes from the first run
 * not fed, which is not counted yet).
 */
export const makeHandler = (
  deps: Pick<StreamDeps, 'connections' | 'sender' | 'feed'> & { metrics: RunMetricsPublisher },
  prices: PriceTable,
) =>
  middy<DynamoDBStreamEvent, DynamoDBBatchResponse, Error, Context>()
    .use(observed())
    .handler(async (event) => {
      // consecutive changes of one run are fed together: a busy run catches up in larger steps
      const groups: RunChange[][] = [];
      for (const record of event.Records) {
        const change = runChangeOf(record);
        if (!change) continue;
        const last = groups.at(-1);
        if (last?.[0]?.runId === change.runId) last.push(change);
        else groups.push([change]);
      }
      for (const changes of groups) {
        try {
          await publishChanges(deps, changes);
        } catch (err) {
          const first = changes[0] as RunChange;
          logger.error('run changes could not be fed', {
            runId: first.runId,
            change: first.change,
            error: err as Error,
          });
          return { batchItemFailures: [{ itemIdentifier: first.change }] };
        }
        for (const change of changes) {
          if (change.kind === 'run')
            deps.metrics.publish(change.after, runMetricsOf(change.before, change.after, prices));
        }
      }
      return { batchItemFailures: [] };
    });

const env = readEnv('TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', 'PRICE_TABLE');
export const handler = makeHandler(
  {
    connections: streamConnections(env.TABLE_NAME),
    feed: feedStore(env.TABLE_NAME),
    sender: connectionSender(env.WEBSOCKET_CALLBACK_URL),
    metrics: runMetrics(),
  },
  env.PRICE_TABLE,
);
