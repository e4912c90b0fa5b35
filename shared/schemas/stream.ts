import type { FeedEvent } from '../domain/feed.js';
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

export const pingSchema = z.strictObject({ action: z.literal('ping') });

export const clientMessageSchema = z.discriminatedUnion('action', [
  followSchema,
  followRunsSchema,
  pingSchema,
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;

export type ServerMessage =
  | ({ type: 'event'; runId: string } & FeedEvent)
  | { type: 'caught-up'; runId: string; seq: number }
  | { type: 'run'; runId: string; projectId: string; podId: string; status: string; at: string }
  | { type: 'following-runs'; projectId: string | null }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string; runId?: string };
