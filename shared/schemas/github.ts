import * as z from '../zod.js';

/**
 * The parts of GitHub's webhook payloads the control plane reads; GitHub sends much more, which is
 * ignored, not refused.
 */

const pullRequestSchema = z.object({
  html_url: z.string(),
  number: z.int(),
  state: z.string(),
  draft: z.optional(z.boolean()),
  merged: z.optional(z.nullable(z.boolean())),
  merged_at: z.optional(z.nullable(z.string())),
  merged_by: z.optional(z.nullable(z.object({ login: z.string() }))),
  closed_at: z.optional(z.nullable(z.string())),
  head: z.object({ ref: z.string() }),
});

export const pullRequestEventSchema = z.object({
  action: z.string(),
  installation: z.object({ id: z.int() }),
  repository: z.object({ clone_url: z.string() }),
  pull_request: pullRequestSchema,
});
export type PullRequestEvent = z.infer<typeof pullRequestEventSchema>;
