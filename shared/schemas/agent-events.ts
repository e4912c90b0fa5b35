import { EXIT_REASONS, PHASES } from '../domain/run.js';
import * as z from '../zod.js';
import { seqSchema } from './ids.js';
import { checkpointsSchema, podAgentSchema, podHooksSchema } from './pod.js';

/**
 * Events a pod sends to the Agent API. Each carries a per-run sequence number. The pod runs untrusted
 * code, so everything it reports is bounded: what the run record, the ledger and the pages keep.
 */
const base = { seq: seqSchema, at: z.iso.datetime({ offset: true }) };

/** Far above any one model call (a million-token context is 1,000,000), far below what breaks the sums. */
const MAX_TOKENS_PER_EVENT = 100_000_000;
const tokens = z
  .int()
  .check(z.nonnegative(), z.lte(MAX_TOKENS_PER_EVENT, `at most ${MAX_TOKENS_PER_EVENT} tokens an event`));

export const usageFields = {
  model: z.string().check(z.minLength(1), z.maxLength(200)),
  inputTokens: tokens,
  outputTokens: tokens,
  cacheReadTokens: z.optional(tokens),
  cacheWriteTokens: z.optional(tokens),
};

/** Links the run shows and the console opens: web addresses only, of a sane length. */
const MAX_URL_CHARS = 2048;
const webUrl = z
  .url({ protocol: /^https?$/, error: 'an http or https URL' })
  .check(z.maxLength(MAX_URL_CHARS, `at most ${MAX_URL_CHARS} characters`));

/** One step of the agent's work: what it said, a tool it called, what the tool answered. */
export const stepFields = {
  kind: z.enum(['assistant', 'tool_call', 'tool_result']),
  content: z.string(),
  tool: z.optional(z.string().check(z.maxLength(200))),
  args: z.optional(z.unknown()),
  model: z.optional(z.string().check(z.maxLength(200))),
  usage: z.optional(z.omit(z.object(usageFields), { model: true })),
};

export const agentEventSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('phase'), phase: z.enum(PHASES) }),
  z.object({ ...base, type: z.literal('step'), ...stepFields }),
  z.object({ ...base, type: z.literal('usage'), ...usageFields }),
  z.object({
    ...base,
    type: z.literal('checkpoint'),
    name: z.string().check(z.minLength(1), z.maxLength(200)),
    summary: z.string().check(z.maxLength(4000)),
    details: z.optional(z.string().check(z.maxLength(100_000))),
  }),
  z.object({
    ...base,
    type: z.literal('artifact'),
    // a commit the pod pushed; pull requests are the control plane's to open and record
    kind: z.literal('commit'),
    url: webUrl,
    sha: z.optional(z.string().check(z.maxLength(100))),
    /** the branch and the repository it was pushed to */
    branch: z.optional(z.string().check(z.maxLength(255))),
    repo: z.optional(z.string().check(z.maxLength(300))),
  }),
  z.object({ ...base, type: z.literal('heartbeat') }),
  z.object({
    ...base,
    type: z.literal('result'),
    outcome: z.enum(['completed', 'failed']),
    exitReason: z.optional(z.enum(EXIT_REASONS)),
    message: z.optional(z.string().check(z.maxLength(4000))),
    /** the agent's own count of its work, when it keeps one */
    turns: z.optional(z.int().check(z.nonnegative(), z.lte(1_000_000))),
    durationMs: z.optional(z.int().check(z.nonnegative(), z.lte(31 * 86_400_000))),
  }),
]);
export type AgentEvent = z.infer<typeof agentEventSchema>;

export const agentEventBatchSchema = z.object({
  events: z.array(agentEventSchema).check(z.minLength(1), z.maxLength(500)),
});
export type AgentEventBatch = z.infer<typeof agentEventBatchSchema>;

/** What the backend tells the pod, in every answer. */
export const controlSchema = z.object({
  action: z.enum(['continue', 'wait', 'stop']),
  reason: z.optional(z.string()),
  /** while `wait`: how long before asking again */
  pollAfterMs: z.optional(z.int().check(z.positive())),
});
export type Control = z.infer<typeof controlSchema>;

export const eventsResponseSchema = z.object({
  accepted: z.int(),
  duplicates: z.int(),
  control: controlSchema,
});
export type EventsResponse = z.infer<typeof eventsResponseSchema>;

/** The launched pod's one-time code and the task it runs as (from the ECS task metadata endpoint). */
export const launchCodeExchangeSchema = z.strictObject({
  code: z.string().check(z.minLength(16), z.maxLength(200)),
  taskArn: z.string().check(z.regex(/^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task\/[A-Za-z0-9_/-]{1,255}$/)),
});

/** The run-scoped token the exchange hands the pod. */
export const agentTokenSchema = z.object({ token: z.string() });

/** The frozen configuration a pod fetches when it starts (`GET /agent/v1/runs/{runId}`). */
export const podRunConfigSchema = z.object({
  runId: z.string(),
  podId: z.string(),
  mode: z.enum(['autopilot', 'supervised']),
  prompt: z.string(),
  repos: z.array(z.string()),
  /** the branch, tag or commit to check out in each repository; absent: its default branch */
  ref: z.optional(z.string()),
  itemId: z.string(),
  /** who dispatched the run: the commit's co-author when they have an email */
  dispatcher: z.object({ userId: z.string(), email: z.optional(z.string()) }),
  agent: podAgentSchema,
  hooks: podHooksSchema,
  /** where a supervised run pauses; empty in autopilot */
  checkpoints: checkpointsSchema,
  env: z.record(z.string(), z.string()),
  /** the variables the task definition fills from secrets: their values are masked in all the pod reports */
  secretVariables: z.array(z.string()),
  demo: z.optional(z.record(z.string(), z.unknown())),
  heartbeatSeconds: z.int().check(z.positive()),
});
export type PodRunConfig = z.infer<typeof podRunConfigSchema>;

/**
 * The pod's git credential (`POST /agent/v1/runs/{runId}/git-credentials`): HTTP Basic `username` and
 * `password` for the run's repositories only, read and push, until `expiresAt` (within the hour).
 */
export const gitCredentialSchema = z.object({
  username: z.string(),
  password: z.string(),
  expiresAt: z.iso.datetime(),
  repos: z.array(z.string()),
});
export type GitCredential = z.infer<typeof gitCredentialSchema>;
