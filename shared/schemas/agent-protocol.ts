import * as z from '../zod.js';
import { stepFields, usageFields } from './agent-events.js';

/**
 * The JSON-lines agent protocol: how the pod's runtime drives a `command` agent, an executable a team
 * brings in its image. The runtime writes one JSON object a line to the agent's stdin and reads one a
 * line from its stdout; the agent's stderr goes to the run's log. Anything on stdout that is not a
 * message below ends the run FAILED / `error`.
 *
 * The conversation: the runtime sends `task`; the agent plans without changing any file and sends
 * `plan`; the runtime answers `continue` once the run may go on (in supervised mode, after a person
 * approved the plan); the agent does the work, reporting `step` and `usage` as it goes, and ends with
 * `done` or `failed`. The runtime, not the agent, clones, runs hooks, reports phases, commits and
 * pushes.
 */

export const AGENT_PROTOCOL_VERSION = 1;

/** Runtime → agent. */
export const runtimeMessageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('task'),
    protocol: z.literal(AGENT_PROTOCOL_VERSION),
    runId: z.string(),
    itemId: z.string(),
    prompt: z.string(),
    /** the clones, each a folder of the workspace; the agent runs in the first */
    repos: z.array(z.object({ url: z.string(), path: z.string() })),
    workspace: z.string(),
  }),
  z.object({ type: z.literal('continue') }),
]);
export type RuntimeMessage = z.infer<typeof runtimeMessageSchema>;

/** Agent → runtime. */
export const agentMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('step'), ...stepFields }),
  z.strictObject({ type: z.literal('usage'), ...usageFields }),
  z.strictObject({ type: z.literal('plan'), plan: z.string().check(z.minLength(1), z.maxLength(100_000)) }),
  z.strictObject({ type: z.literal('done'), summary: z.string().check(z.maxLength(4000)) }),
  z.strictObject({
    type: z.literal('failed'),
    reason: z.enum(['tool_call_failed', 'error']),
    message: z.string().check(z.maxLength(4000)),
  }),
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;
