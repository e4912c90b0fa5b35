import { APPROVAL_ACTIONS } from '../domain/approval.js';
import * as z from '../zod.js';

/** What a decision hands the state machine (`$.approval`), read back by ParkPod and Finalize. */
export const approvalOutcomeSchema = z.object({
  approvalId: z.optional(z.string()),
  seq: z.int().check(z.nonnegative()),
  name: z.string(),
  summary: z.string(),
  requestedAt: z.string(),
  decision: z.enum(['approved', 'cancelled']),
  at: z.string(),
  by: z.optional(z.string()),
  email: z.optional(z.string()),
  via: z.optional(z.enum(['email_link', 'api'])),
  podSecondsLeft: z.int().check(z.positive()),
});

/** The pod wait's answer when the agent stopped at a checkpoint. */
export const checkpointSignalSchema = z.object({
  outcome: z.literal('checkpoint'),
  checkpoint: z.object({ seq: z.int().check(z.nonnegative()), name: z.string() }),
});

/** The RequestApproval task's payload. */
export const approvalRequestSchema = z.object({
  runId: z.string(),
  checkpoint: checkpointSignalSchema.shape.checkpoint,
  taskToken: z.string().check(z.minLength(1), z.maxLength(1024)),
  windowSeconds: z.int().check(z.positive()),
  maxDurationSeconds: z.int().check(z.positive()),
});

/** The form the approval page posts: the signed link fields and the button pressed. */
export const decisionFormSchema = z.object({
  for: z.optional(z.string().check(z.maxLength(200))),
  sig: z.optional(z.string().check(z.maxLength(200))),
  decision: z.enum(APPROVAL_ACTIONS),
});
