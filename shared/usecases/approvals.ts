import {
  APPROVAL_ID_PATTERN as APPROVAL_ID,
  type Approval,
  type ApprovalAction,
  type ApprovalOutcome,
  approvalRecipients,
  approvalState,
  type CheckpointRef,
  type DecisionRecord,
  decidedEntry,
  decisionFor,
  historyEntryOf,
  isProjectAdminMember,
  newApprovalId,
  podSecondsLeft,
  signApprovalLink,
  verifyApprovalLink,
} from '../domain/approval.js';
import { resume } from '../domain/commands.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../domain/errors.js';
import type { Run } from '../domain/run.js';
import { type Caller, hasProjectRole, type Project } from '../domain/tenancy.js';
import { type ApprovalContext, type ApprovalView, renderApprovalMail } from '../http/approval-page.js';
import type { ApprovalStore, Clock, DirectoryRepository, Notifier, RunStore, TaskSignals } from '../ports.js';
import { carryOut } from './carry-out.js';

/**
 * Supervised mode. A checkpoint pauses the run as its batch is recorded (agent-batch.ts) and ends the
 * pod's wait with a checkpoint signal; the state machine's RequestApproval parks a token and mails the
 * project admins a signed link; a decision (link or API) is recorded once, by a conditional write, and
 * only then settles that token.
 */

export interface ApprovalDeps {
  runs: RunStore;
  directory: DirectoryRepository;
  approvals: ApprovalStore;
  signals: TaskSignals;
  clock: Clock;
}

/** The link's signing secret, and where the link points. */
export interface LinkSettings {
  secret: string;
  publicApiUrl: string;
}

export const approvalLink = (settings: LinkSettings, approvalId: string, userId: string): string =>
  `${settings.publicApiUrl.replace(/\/+$/, '')}/approve/${encodeURIComponent(approvalId)}?for=${encodeURIComponent(
    userId,
  )}&sig=${signApprovalLink(settings.secret, approvalId, userId)}`;

export interface ApprovalRequestInput {
  runId: string;
  checkpoint: CheckpointRef;
  taskToken: string;
  windowSeconds: number;
  maxDurationSeconds: number;
}

export interface ApprovalRequested {
  approvalId?: string;
  notified: string[];
  failed: { email: string; error: unknown }[];
}

const contextOf = async (
  deps: Pick<ApprovalDeps, 'directory'>,
  approval: Approval,
  project: Project | undefined,
  run: Run,
): Promise<ApprovalContext> => {
  const pod = await deps.directory.getPod(approval.accountId, approval.podId);
  return {
    projectName: project?.name ?? approval.projectId,
    podName: pod?.name ?? approval.podId,
    runStatus: run.status,
  };
};

/**
 * The RequestApproval task: store the approval with the token it waits on, make it the run's pending
 * approval, and mail each project admin a link signed for them. A run that no longer waits at this
 * checkpoint (stopped meanwhile) fails the token, so the execution goes on to Finalize. Mail that
 * cannot be sent is reported, not fatal: the admins can still decide through the API.
 */
export const requestApproval = async (
  deps: ApprovalDeps & { notifier: Notifier },
  settings: LinkSettings,
  input: ApprovalRequestInput,
): Promise<ApprovalRequested> => {
  const refuse = async (run: Run | undefined) => {
    await deps.signals.failTask(
      input.taskToken,
      'Run.Ended',
      `the run is ${run?.status ?? 'gone'}; checkpoint ${input.checkpoint.name} no longer waits for a decision`,
    );
    return { notified: [], failed: [] };
  };
  const run = await deps.runs.get(input.runId);
  const pending = run?.pendingApproval;
  if (run?.status !== 'AWAITING_APPROVAL' || pending?.seq !== input.checkpoint.seq) return refuse(run);

  const now = deps.clock.now();
  const [project, details] = await Promise.all([
    deps.directory.getProject(run.accountId, run.projectId),
    deps.approvals.checkpointDetails(run.runId, pending.seq),
  ]);
  const approval: Approval = {
    approvalId: newApprovalId(),
    runId: run.runId,
    accountId: run.accountId,
    projectId: run.projectId,
    itemId: run.itemId,
    podId: run.podId,
    checkpoint: {
      seq: pending.seq,
      name: pending.name,
      summary: pending.summary,
      details: details.details,
      detailsTruncated: details.truncated || undefined,
    },
    requestedAt: pending.requestedAt,
    expiresAt: new Date(now.getTime() + input.windowSeconds * 1000).toISOString(),
    podSecondsLeft: podSecondsLeft(run.history, input.maxDurationSeconds, now),
  };
  await deps.approvals.put(approval, input.taskToken);
  const parked = await deps.runs.parkApproval(
    run.runId,
    { ...pending, approvalId: approval.approvalId, expiresAt: approval.expiresAt },
    input.taskToken,
  );
  if (!parked) return refuse(await deps.runs.get(run.runId));

  const context = await contextOf(deps, approval, project, parked);
  const recipients = project ? approvalRecipients(project) : [];
  const sent = await Promise.allSettled(
    recipients.map((r) =>
      deps.notifier.send({
        to: r.email,
        ...renderApprovalMail(approval, context, approvalLink(settings, approval.approvalId, r.userId)),
      }),
    ),
  );
  const result: ApprovalRequested = { approvalId: approval.approvalId, notified: [], failed: [] };
  for (const [i, outcome] of sent.entries()) {
    const email = recipients[i]?.email ?? '';
    if (outcome.status === 'fulfilled') result.notified.push(email);
    else result.failed.push({ email, error: outcome.reason });
  }
  return result;
};

/** What the approval shows now: decided, expired, no longer waited for (the run moved on), or pending. */
const viewOf = async (
  deps: ApprovalDeps,
  approval: Approval,
  project: Project | undefined,
  yours = false,
): Promise<ApprovalView> => {
  const run = await deps.runs.get(approval.runId);
  if (!run) throw new NotFoundError('run', approval.runId);
  const context = await contextOf(deps, approval, project, run);
  const { decision } = approval;
  if (decision) return { kind: 'decided', approval: { ...approval, decision }, context, yours };
  if (approvalState(approval, deps.clock.now()) === 'expired') return { kind: 'expired', approval, context };
  const pending = run.pendingApproval;
  if (run.status !== 'AWAITING_APPROVAL' || pending?.approvalId !== approval.approvalId) {
    return { kind: 'closed', approval, context };
  }
  return { kind: 'pending', approval, context };
};

/**
 * The single-use decision. Recorded first, by a conditional write (undecided and unexpired), and only
 * the one request that wrote it settles the token; every other request sees the decision on record.
 * A token already gone (the window closed, the run was stopped) leaves the decision marked not applied.
 */
const decide = async (
  deps: ApprovalDeps,
  approval: Approval,
  project: Project,
  decision: DecisionRecord,
): Promise<ApprovalView> => {
  const before = await viewOf(deps, approval, project);
  if (before.kind !== 'pending') return before;
  const recorded = await deps.approvals.recordDecision(approval.approvalId, decision, deps.clock.now());
  if (!recorded.recorded) return viewOf(deps, recorded.approval ?? approval, project);
  const outcome: ApprovalOutcome = {
    ...decidedEntry(recorded.approval, decision),
    decision: decision.decision,
    podSecondsLeft: approval.podSecondsLeft,
  };
  const token = await deps.approvals.getTaskToken(approval.approvalId);
  const sent = token ? await deps.signals.succeedTask(token, outcome) : 'gone';
  if (sent === 'gone') {
    await deps.approvals.markNotApplied(approval.approvalId);
    return viewOf(deps, { ...recorded.approval, decision: { ...decision, applied: false } }, project, true);
  }
  // The run goes on now; the resumed pod wait does the same if this request dies half-way.
  if (outcome.decision === 'approved') {
    await carryOut(deps.runs, approval.runId, (r) => resume(r, historyEntryOf(outcome), deps.clock.now()));
  }
  return viewOf(deps, recorded.approval, project, true);
};

export interface LinkFields {
  for?: string;
  sig?: string;
}

/** The link's approval, once its signature holds and its recipient still administers the project. */
const signedApproval = async (
  deps: ApprovalDeps,
  secret: string,
  approvalId: string,
  link: LinkFields,
): Promise<{ approval: Approval; project: Project; userId: string }> => {
  const userId = link.for;
  if (!userId || !APPROVAL_ID.test(approvalId) || !verifyApprovalLink(secret, approvalId, userId, link.sig)) {
    throw new ForbiddenError(
      'the link is incomplete or its signature does not match; open the link from the mail',
    );
  }
  const approval = await deps.approvals.get(approvalId);
  if (!approval) throw new NotFoundError('approval', approvalId);
  const project = await deps.directory.getProject(approval.accountId, approval.projectId);
  if (!project || !isProjectAdminMember(project, userId)) {
    throw new ForbiddenError(`the link was sent to ${userId}, who is no longer an admin of this project`);
  }
  return { approval, project, userId };
};

/** GET of the link: shows the approval; never changes anything (mail scanners follow links). */
export const viewApprovalLink = async (
  deps: ApprovalDeps,
  secret: string,
  approvalId: string,
  link: LinkFields,
): Promise<ApprovalView> => {
  const { approval, project } = await signedApproval(deps, secret, approvalId, link);
  return viewOf(deps, approval, project);
};

/** POST from the link's page. */
export const decideByLink = async (
  deps: ApprovalDeps,
  secret: string,
  approvalId: string,
  link: LinkFields,
  action: ApprovalAction,
): Promise<ApprovalView> => {
  const { approval, project, userId } = await signedApproval(deps, secret, approvalId, link);
  const email = project.members.find((m) => m.userId === userId)?.email;
  return decide(deps, approval, project, {
    decision: decisionFor(action),
    by: userId,
    email,
    via: 'email_link',
    at: deps.clock.now().toISOString(),
  });
};

/** The checkpoint a run waits at, with the details the agent sent, as the console's card shows it. */
export interface CheckpointView {
  name: string;
  summary: string;
  details?: string;
  detailsTruncated?: boolean;
  requestedAt: string;
  expiresAt?: string;
}

/** `GET /v1/runs/{runId}/checkpoint`: for anyone who may read the run's project; 404 when nothing waits. */
export const viewCheckpoint = async (
  deps: Pick<ApprovalDeps, 'runs' | 'directory' | 'approvals'>,
  caller: Caller,
  runId: string,
): Promise<CheckpointView> => {
  const run = await deps.runs.get(runId);
  if (!run || run.accountId !== caller.accountId) throw new NotFoundError('run', runId);
  const project = await deps.directory.getProject(caller.accountId, run.projectId);
  if (!project || !hasProjectRole(project, caller, 'viewer')) throw new NotFoundError('run', runId);
  const pending = run.pendingApproval;
  if (run.status !== 'AWAITING_APPROVAL' || !pending) {
    throw new NotFoundError('checkpoint waiting on run', runId);
  }
  const approval = pending.approvalId ? await deps.approvals.get(pending.approvalId) : undefined;
  const details = approval
    ? { details: approval.checkpoint.details, truncated: approval.checkpoint.detailsTruncated === true }
    : await deps.approvals.checkpointDetails(runId, pending.seq);
  return {
    name: pending.name,
    summary: pending.summary,
    details: details.details,
    detailsTruncated: details.truncated || undefined,
    requestedAt: pending.requestedAt,
    expiresAt: pending.expiresAt,
  };
};

/** `POST /v1/runs/{runId}/approve|cancel`: the caller must administer the run's project. */
export const decideByApi = async (
  deps: ApprovalDeps,
  caller: Caller,
  runId: string,
  action: ApprovalAction,
): Promise<{ approval: Approval; run: Run }> => {
  const run = await deps.runs.get(runId);
  if (!run || run.accountId !== caller.accountId) throw new NotFoundError('run', runId);
  const project = await deps.directory.getProject(caller.accountId, run.projectId);
  if (!project) throw new NotFoundError('project', run.projectId);
  if (!hasProjectRole(project, caller, 'admin')) {
    throw new ForbiddenError(`deciding a checkpoint needs the admin role in project ${run.projectId}`);
  }
  const pending = run.pendingApproval;
  if (run.status !== 'AWAITING_APPROVAL' || !pending) {
    throw new ConflictError(`run ${runId} has no checkpoint waiting for a decision; it is ${run.status}`, {
      status: run.status,
    });
  }
  if (!pending.approvalId) {
    throw new ConflictError('the approval for this checkpoint is still being requested; try again shortly', {
      checkpoint: pending.name,
    });
  }
  const approval = await deps.approvals.get(pending.approvalId);
  if (!approval) throw new NotFoundError('approval', pending.approvalId);
  const view = await decide(deps, approval, project, {
    decision: decisionFor(action),
    by: caller.userId,
    email: caller.email,
    via: 'api',
    at: deps.clock.now().toISOString(),
  });
  if (view.kind === 'decided' && view.yours && view.approval.decision.applied !== false) {
    return { approval: view.approval, run: (await deps.runs.get(runId)) ?? run };
  }
  switch (view.kind) {
    case 'decided':
      throw new ConflictError(
        view.yours
          ? 'the decision was recorded, but the run had already stopped waiting for it'
          : 'the checkpoint was already decided',
        { decision: view.approval.decision },
      );
    case 'expired':
      throw new ConflictError(`the approval expired at ${approval.expiresAt}`, {
        expiresAt: approval.expiresAt,
      });
    default:
      throw new ConflictError(
        `run ${runId} no longer waits for this checkpoint; it is ${view.context.runStatus}`,
        {
          status: view.context.runStatus,
        },
      );
  }
};
