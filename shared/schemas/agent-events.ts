import { z } from 'zod';
import { EXIT_REASONS, PHASES } from '../domain/run.js';

/** Events a pod sends to the Agent API. Each carries a per-run sequence number. */
const base = { seq: z.number().int().nonnegative(), at: z.iso.datetime({ offset: true }) };

export const usageFields = {
  model: z.string().min(1).max(200),
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheReadTokens: z.number().int().nonnegative().optional(),
  cacheWriteTokens: z.number().int().nonnegative().optional(),
};

export const agentEventSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('phase'), phase: z.enum(PHASES) }),
  z.object({
    ...base,
    type: z.literal('step'),
    kind: z.enum(['assistant', 'tool_call', 'tool_result']),
    content: z.string(),
    tool: z.string().max(200).optional(),
    args: z.unknown().optional(),
    model: z.string().max(200).optional(),
    usage: z.object(usageFields).omit({ model: true }).optional(),
  }),
  z.object({ ...base, type: z.literal('usage'), ...usageFields }),
  z.object({
    ...base,
    type: z.literal('checkpoint'),
    name: z.string().min(1).max(200),
    summary: z.string().max(4000),
    details: z.string().max(100_000).optional(),
  }),
  z.object({
    ...base,
    type: z.literal('artifact'),
    kind: z.enum(['commit', 'pull_request']),
    url: z.url(),
    sha: z.string().max(100).optional(),
    number: z.number().int().positive().optional(),
  }),
  z.object({ ...base, type: z.literal('heartbeat') }),
  z.object({
    ...base,
    type: z.literal('result'),
    outcome: z.enum(['completed', 'failed']),
    exitReason: z.enum(EXIT_REASONS).optional(),
    message: z.string().max(4000).optional(),
  }),
]);
export type AgentEvent = z.infer<typeof agentEventSchema>;

export const agentEventBatchSchema = z.object({ events: z.array(agentEventSchema).min(1).max(500) });
export type AgentEventBatch = z.infer<typeof agentEventBatchSchema>;

/** What the backend tells the pod, in every answer. */
export const controlSchema = z.object({
  action: z.enum(['continue', 'wait', 'stop']),
  reason: z.string().optional(),
  /** while `wait`: how long before asking again */
  pollAfterMs: z.number().int().positive().optional(),
});
export type Control = z.infer<typeof controlSchema>;

export const eventsResponseSchema = z.object({
  accepted: z.number().int(),
  duplicates: z.number().int(),
  control: controlSchema,
});
export type EventsResponse = z.infer<typeof eventsResponseSchema>;

/** The frozen configuration a pod fetches when it starts (`GET /agent/v1/runs/{runId}`). */
export const podRunConfigSchema = z.object({
  runId: z.string(),
  mode: z.enum(['autopilot', 'supervised']),
  prompt: z.string(),
  repos: z.array(z.string()),
  model: z.string(),
  itemId: z.string(),
  demo: z.record(z.string(), z.unknown()).optional(),
  heartbeatSeconds: z.number().int().positive(),
});
export type PodRunConfig = z.infer<typeof podRunConfigSchema>;
