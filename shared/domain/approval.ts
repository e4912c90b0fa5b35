import { createHmac, timingSafeEqual } from 'node:crypto';
import { randomToken } from './ids.js';
import type { StatusChange } from './run.js';
import type { Project } from './tenancy.js';

/**
 * Supervised runs pause at checkpoints until a project admin approves or cancels. Pure domain: the
 * records, the link signature, and the rules that decide what a decision may still do.
 */

export const APPROVAL_ACTIONS = ['approve', 'cancel'] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

export type Decision = 'approved' | 'cancelled';
/** How a decision reached the backend. */
export type DecisionVia = 'email_link' | 'api';

export const decisionFor = (action: ApprovalAction): Decision =>
  action === 'approve' ? 'approved' : 'cancelled';

/** A checkpoint as the state machine carries it: small, the details stay in the table. */
export interface CheckpointRef {
  seq: number;
  name: string;
}

/** The pod wait ends with this when the agent reached a checkpoint in a supervised run. */
export interface CheckpointSignal {
  outcome: 'checkpoint';
  checkpoint: CheckpointRef;
}

/** On the run while it waits; `approvalId` and `expiresAt` appear once the approval was requested. */
export interface PendingApproval extends CheckpointRef {
  summary: string;
  requestedAt: string;
  approvalId?: string;
  expiresAt?: string;
}

/**
 * How a pending approval ended, appended to the run's `approvals`: decided by a person, expired
 * (the window passed), or withdrawn (the run ended some other way while it waited).
 */
export interface ApprovalHistoryEntry extends CheckpointRef {
  approvalId?: string;
  summary: string;
  requestedAt: string;
  decision: Decision | 'expired' | 'withdrawn';
  at: string;
  /** the deciding user, when a person decided */
  by?: string;
  email?: string;
  via?: DecisionVia;
}

export interface DecisionRecord {
  decision: Decision;
  by: string;
  email?: string;
  via: DecisionVia;
  at: string;
  /** false when the decision was recorded but the wait it was meant for had already ended */
  applied?: boolean;
}

/** One approval request: what the link opens. The task token it settles is stored apart from it. */
export interface Approval {
  approvalId: string;
  runId: string;
  accountId: string;
  projectId: string;
  itemId: string;
  podId: string;
  checkpoint: CheckpointRef & { summary: string; details?: string; detailsTruncated?: boolean };
  requestedAt: string;
  expiresAt: string;
  /** what is left of the pod's maximum duration; the resumed wait times out after it */
  podSecondsLeft: number;
  decision?: DecisionRecord;
}

/** What the state machine receives when a decision settles the approval wait. */
export interface ApprovalOutcome extends ApprovalHistoryEntry {
  decision: Decision;
  podSecondsLeft: number;
}

/** Opaque and unguessable; the link also needs the signature. */
export const newApprovalId = (): string => randomToken(18);

/** What an approval id may look like: the ones newApprovalId makes (24 characters), with room to grow. */
export const APPROVAL_ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

export type ApprovalState = 'pending' | 'decided' | 'expired';

export const approvalState = (approval: Approval, now: Date): ApprovalState => {
  if (approval.decision) return 'decided';
  return Date.parse(approval.expiresAt) <= now.getTime() ? 'expired' : 'pending';
};

const LINK_PURPOSE = 'approval-link';

/** Each admin gets an own link: the signature binds the approval to the recipient. */
export const signApprovalLink = (secret: string, approvalId: string, userId: string): string =>
  createHmac('sha256', secret).update(`${LINK_PURPOSE}\n${approvalId}\n${userId}`).digest('base64url');

export const verifyApprovalLink = (
  secret: string,
  approvalId: string,
  userId: string | undefined,
  signature: string | undefined,
): boolean => {
  if (!userId || !signature) return false;
  const expected = Buffer.from(signApprovalLink(secret, approvalId, userId));
  const presented = Buffer.from(signature);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
};

/** The project admins who receive the mail: members with the admin role and an address. */
export const approvalRecipients = (project: Project): { userId: string; email: string }[] =>
  project.members.flatMap((m) =>
    m.role === 'admin' && m.email ? [{ userId: m.userId, email: m.email }] : [],
  );

export const isProjectAdminMember = (project: Project, userId: string): boolean =>
  project.members.some((m) => m.userId === userId && m.role === 'admin');

/**
 * What is left of the pod's maximum duration: time spent waiting for a person does not count, so
 * only PROVISIONING and RUNNING intervals are subtracted. At least a second, so a wait still times out.
 */
export const podSecondsLeft = (history: StatusChange[], maxDurationSeconds: number, now: Date): number => {
  let activeMs = 0;
  for (const [i, change] of history.entries()) {
    if (change.status !== 'PROVISIONING' && change.status !== 'RUNNING') continue;
    const next = history[i + 1];
    const end = next ? Date.parse(next.at) : now.getTime();
    activeMs += Math.max(0, end - Date.parse(change.at));
  }
  return Math.max(1, Math.ceil(maxDurationSeconds - activeMs / 1000));
};

export const decidedEntry = (approval: Approval, decision: DecisionRecord): ApprovalHistoryEntry => ({
  approvalId: approval.approvalId,
  seq: approval.checkpoint.seq,
  name: approval.checkpoint.name,
  summary: approval.checkpoint.summary,
  requestedAt: approval.requestedAt,
  decision: decision.decision,
  at: decision.at,
  by: decision.by,
  email: decision.email,
  via: decision.via,
});

/** The history entry of a decision that reached the state machine. */
export const historyEntryOf = ({ podSecondsLeft: _left, ...entry }: ApprovalOutcome): ApprovalHistoryEntry =>
  entry;

/** The entry for a pending approval the run left without a decision reaching the state machine. */
export const undecidedEntry = (
  pending: PendingApproval,
  ending: 'expired' | 'withdrawn',
  at: string,
): ApprovalHistoryEntry => ({
  approvalId: pending.approvalId,
  seq: pending.seq,
  name: pending.name,
  summary: pending.summary,
  requestedAt: pending.requestedAt,
  decision: ending,
  at,
});
