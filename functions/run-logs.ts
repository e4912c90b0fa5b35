import { gunzipSync } from 'node:zlib';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { publishLogs } from '../shared/usecases/stream-logs.js';
import { connectionSender, logReader, runStore, streamConnections } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** What CloudWatch Logs delivers to a subscription's function: gzipped JSON, base64-encoded. */
const deliverySchema = z.looseObject({ awslogs: z.looseObject({ data: z.string() }) });

const payloadSchema = z.discriminatedUnion('messageType', [
  // sent once when the subscription is made, to check the function can be reached
  z.looseObject({ messageType: z.literal('CONTROL_MESSAGE') }),
  z.looseObject({
    messageType: z.literal('DATA_MESSAGE'),
    logStream: z.string(),
    logEvents: z.array(z.looseObject({ timestamp: z.number() })),
  }),
]);

/**
 * The pods' log group's subscription: a stream has new lines. The followers of its run's log are sent
 * what they have not been sent yet, read with the logs API from each one's cursor. A failure is thrown,
 * so CloudWatch Logs delivers again; what was sent moved its follower's cursor and is not sent twice.
 */
export const makeHandler = (deps: Parameters<typeof publishLogs>[0]) =>
  middy<unknown, void, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .handler(async (raw) => {
      const { awslogs } = deliverySchema.parse(raw);
      const payload = payloadSchema.parse(
        JSON.parse(gunzipSync(Buffer.from(awslogs.data, 'base64')).toString()),
      );
      if (payload.messageType !== 'DATA_MESSAGE') return;
      const newestAt = Math.max(0, ...payload.logEvents.map((event) => event.timestamp));
      await publishLogs(deps, { logStream: payload.logStream, newestAt });
    });

const env = readEnv('TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', 'LOG_GROUP_NAME');
const connections = streamConnections(env.TABLE_NAME);
export const handler = makeHandler({
  connections,
  logStreams: connections,
  sender: connectionSender(env.WEBSOCKET_CALLBACK_URL),
  runs: runStore(env.TABLE_NAME),
  logs: logReader(env.LOG_GROUP_NAME),
  cursorKey: signingSecret('cursor'),
  clock: systemClock,
});
