import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { DomainError } from '../shared/domain/errors.js';
import { observed } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { connect, disconnect, receive, type StreamDeps } from '../shared/usecases/stream.js';
import {
  connectionSender,
  directoryRepository,
  feedStore,
  logReader,
  runStore,
  streamConnections,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** What the function reads of API Gateway's WebSocket events. */
const webSocketEventSchema = z.looseObject({
  requestContext: z.looseObject({ routeKey: z.string(), connectionId: z.string() }),
  queryStringParameters: z.optional(z.nullable(z.record(z.string(), z.optional(z.string())))),
  body: z.optional(z.nullable(z.string())),
});

interface WebSocketResult {
  statusCode: number;
  body?: string;
}

/**
 * The WebSocket API's routes: `$connect` redeems the ticket in the URL (401 refuses the connection),
 * `$disconnect` forgets the connection, and every message (`$default`) is answered on the connection
 * itself: follow a run, follow a run's log, follow the account's runs, ping.
 */
export const makeHandler = (deps: StreamDeps) =>
  middy<unknown, WebSocketResult, Error, Context>()
    .use(observed())
    .handler(async (raw) => {
      const event = webSocketEventSchema.parse(raw);
      const { routeKey, connectionId } = event.requestContext;
      switch (routeKey) {
        case '$connect':
          try {
            await connect(deps, connectionId, event.queryStringParameters?.ticket ?? undefined);
            return { statusCode: 200 };
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            return { statusCode: 401, body: err.message };
          }
        case '$disconnect':
          await disconnect(deps, connectionId);
          return { statusCode: 200 };
        default:
          await receive(deps, connectionId, event.body ?? undefined);
          return { statusCode: 200 };
      }
    });

const env = readEnv('TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', 'LOG_GROUP_NAME');
export const handler = makeHandler({
  connections: streamConnections(env.TABLE_NAME),
  sender: connectionSender(env.WEBSOCKET_CALLBACK_URL),
  feed: feedStore(env.TABLE_NAME),
  runs: runStore(env.TABLE_NAME),
  directory: directoryRepository(env.TABLE_NAME),
  logs: logReader(env.LOG_GROUP_NAME),
  cursorKey: signingSecret('cursor'),
  clock: systemClock,
});
