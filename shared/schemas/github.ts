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

const installationSchema = z.object({ id: z.int() });
const repositorySchema = z.object({ clone_url: z.string(), full_name: z.string() });
const senderSchema = z.object({ login: z.string(), type: z.string() });
const issueSchema = z.object({
  number: z.int(),
  title: z.string(),
  body: z.optional(z.nullable(z.string())),
  html_url: z.string(),
  /** present when the "issue" is a pull request's conversation */
  pull_request: z.optional(z.unknown()),
});

export const issueCommentEventSchema = z.object({
  action: z.string(),
  installation: installationSchema,
  repository: repositorySchema,
  issue: issueSchema,
  comment: z.object({ body: z.string() }),
  sender: senderSchema,
});
export type IssueCommentEvent = z.infer<typeof issueCommentEventSchema>;

export const issuesEventSchema = z.object({
  action: z.string(),
  installation: installationSchema,
  repository: repositorySchema,
  issue: issueSchema,
  label: z.optional(z.object({ name: z.string() })),
  sender: senderSchema,
});
export type IssuesEvent = z.infer<typeof issuesEventSchema>;
