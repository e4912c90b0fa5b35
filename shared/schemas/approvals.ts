import { z } from 'zod';
import { APPROVAL_ACTIONS } from '../domain/approval.js';

/** What a decision hands the state machine (`$.approval`), read back by ParkPod and Finalize. */
export const approvalOutcomeSchema = z.object({
  approvalId: z.string().optional(),
  seq: z.number().int().nonnegative(),
  name: z.string(),
  summary: z.string(),
  requestedAt: z.string(),
  decision: z.enum(['approved', 'cancelled']),
  at: z.string(),
  by: z.string().optional(),
  email: z.string().optional(),
  via: z.enum(['email_link', 'api']).optional(),
  podSecondsLeft: z.number().int().positive(),
});

/** The pod wait's answer when the agent stopped at a checkpoint. */
export const checkpointSignalSchema = z.object({
  outcome: z.literal('checkpoint'),
  checkpoint: z.object({ seq: z.number().int().nonnegative(), name: z.string() }),
});

/** The RequestApproval task's payload. */
export const approvalRequestSchema = z.object({
  runId: z.string(),
  checkpoint: checkpointSignalSchema.shape.checkpoint,
  taskToken: z.string().min(1).max(1024),
  windowSeconds: z.number().int().positive(),
  maxDurationSeconds: z.number().int().positive(),
});

/** The form the approval page posts: the signed link fields and the button pressed. */
export const decisionFormSchema = z.object({
  for: z.string().max(200).optional(),
  sig: z.string().max(200).optional(),
  decision: z.enum(APPROVAL_ACTIONS),
});
