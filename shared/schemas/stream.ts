import type { FeedEvent } from '../domain/feed.js';
import type { LogEvent } from '../ports.js';
import * as z from '../zod.js';
import { idSchema, runIdSchema, seqSchema } from './ids.js';

/**
 * The WebSocket stream's messages: what a client sends (`action`, API Gateway's route selection) and
 * what the server sends (`type`). The CLI and the console speak it too.
 */

export const followSchema = z.strictObject({
  action: z.literal('follow'),
  runId: runIdSchema,
  /** the last seq the client has: events after it are sent */
  after: z._default(seqSchema, 0),
});

export const followRunsSchema = z.strictObject({
  action: z.literal('followRuns'),
  projectId: z.optional(idSchema),
});

export const followLogsSchema = z.strictObject({
  action: z.literal('followLogs'),
  runId: runIdSchema,
  /** an `afterCursor` of the logs API, or the `cursor` of the last log message: lines after it; none: from the first line */
  after: z.optional(z.string().check(z.minLength(1), z.maxLength(2048))),
});

export const pingSchema = z.strictObject({ action: z.literal('ping') });

export const clientMessageSchema = z.discriminatedUnion('action', [
  followSchema,
  followRunsSchema,
  followLogsSchema,
  pingSchema,
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;

export type ServerMessage =
  | ({ type: 'event'; runId: string } & FeedEvent)
  | { type: 'caught-up'; runId: string; seq: number }
  | { type: 'run'; runId: string; projectId: string; podId: string; status: string; at: string }
  | { type: 'following-runs'; projectId: string | null }
  /** the log follow starts from `cursor`: the first `log` message continues from it */
  | { type: 'following-logs'; runId: string; cursor: string }
  /** lines written after `from`, oldest first; `cursor` is where the next message continues from */
  | { type: 'log'; runId: string; from: string; cursor: string; lines: LogLine[] }
  /** every line written so far was sent; later ones come as they are written */
  | { type: 'logs-caught-up'; runId: string; cursor: string }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string; runId?: string };

/** A log line as the stream sends it; a line too long for one WebSocket message is cut (`truncated`). */
export type LogLine = LogEvent & { truncated?: true };
