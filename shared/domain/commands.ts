import { type ApprovalHistoryEntry, undecidedEntry } from './approval.js';
import { TransitionRefusedError } from './errors.js';
import {
  canTransition,
  type ExitReason,
  isLaunched,
  isTerminal,
  type PullRequest,
  type Run,
  type RunPatch,
  type RunStatus,
  type Transition,
} from './run.js';

/**
 * Commands on the run. Each decides, from the run as read, the transition that carries it out (the
 * statuses it passes through and the fields it sets), returns undefined when there is nothing left to
 * do, or refuses with a TransitionRefusedError the caller answers with. The store writes a transition
 * only while the run is still in the status it was decided from; when another writer got there
 * first, the command is decided again from what is stored, so no refusal is ever swallowed.
 */

/** Messages on the run come from people and from errors: kept short. */
export const MESSAGE_LIMIT = 1000;

/** Builds a transition through `path`, every hop allowed by the table (a hop it lacks is a bug here). */
const move = (
  run: Run,
  path: RunStatus[],
  patch: RunPatch,
  now: Date,
  closeApproval?: ApprovalHistoryEntry,
): Transition => {
  let at = run.status;
  for (const next of path) {
    // Stryker disable next-line ConditionalExpression,StringLiteral: an assertion no command reaches; tests walk every path
    if (!canTransition(at, next)) throw new Error(`the lifecycle has no move from ${at} to ${next}`);
    at = next;
  }
  return {
    runId: run.runId,
    from: run.status,
    path,
    at: now.toISOString(),
    patch: { ...patch, message: patch.message?.slice(0, MESSAGE_LIMIT) },
    revokeCredentials: isTerminal(at),
    ...(closeApproval ? { closeApproval } : {}),
  };
};

const refuse = (run: Run, to: RunStatus): never => {
  throw new TransitionRefusedError(run.runId, to, run.status);
};

/** How a run ends: the status the outcome asks for, why, and how a checkpoint still pending ended. */
export interface Ending {
  to: RunStatus;
  exitReason: ExitReason;
  message?: string;
  /** the decision that reached the state machine, or that its approval window passed */
  checkpoint?: { decided: ApprovalHistoryEntry } | { expired: true };
}

/**
 * The statuses an ending passes through from `from`: the one asked for when the table allows it; a
 * completion of a run whose start was never recorded (the pod did run) goes through RUNNING; otherwise
 * the nearest truthful terminal status: CANCELLED when nothing left the queue, FAILED once launched.
 * (A run waiting for a person never completes without the decision.)
 */
export const endingPath = (from: RunStatus, wanted: RunStatus): RunStatus[] => {
  if (canTransition(from, wanted)) return [wanted];
  if (wanted === 'COMPLETED' && from === 'PROVISIONING') return ['RUNNING', 'COMPLETED'];
  return [from === 'QUEUED' ? 'CANCELLED' : 'FAILED'];
};

const endedAt = (run: Run, now: Date): RunPatch => ({
  completedAt: now.toISOString(),
  durationMs: Math.max(0, now.getTime() - Date.parse(run.startedAt ?? run.createdAt)),
});

/** The history entry of the checkpoint a run leaves pending as it ends. */
const closingEntry = (run: Run, ending: Ending, at: string): ApprovalHistoryEntry | undefined => {
  const pending = run.pendingApproval;
  if (!pending) return undefined;
  const how = ending.checkpoint;
  if (how && 'decided' in how && how.decided.seq === pending.seq) return how.decided;
  return undecidedEntry(pending, how && 'expired' in how ? 'expired' : 'withdrawn', at);
};

/**
 * End a run that has not ended. Whatever status it is in, this reaches a terminal one: a run never
 * stays non-terminal because the ending its path asked for is not a move the table has.
 */
export const end = (run: Run, ending: Ending, now: Date): Transition | undefined => {
  if (isTerminal(run.status)) return undefined;
  const path = endingPath(run.status, ending.to);
  const fellBack = path.at(-1) !== ending.to;
  const patch: RunPatch = {
    exitReason: fellBack && ending.exitReason === 'completed' ? 'error' : ending.exitReason,
    message: fellBack
      ? `${ending.message ? `${ending.message}; ` : ''}the run was ${run.status}, so it could not end ${ending.to}`
      : ending.message,
    ...endedAt(run, now),
    ...(path.includes('RUNNING') && !run.startedAt ? { startedAt: now.toISOString() } : {}),
    // the pod's phases end with its commit (or FAILED); a run that completes without a pull request
    // is COMPLETED, one that raised one stays PR_RAISED, the phase after which nothing is left to do
    ...(path.at(-1) === 'COMPLETED' && run.phase !== 'PR_RAISED' ? { phase: 'COMPLETED' as const } : {}),
  };
  return move(run, path, patch, now, closingEntry(run, ending, now.toISOString()));
};

/** A user stops a run mid-flight. */
export const stop = (run: Run, by: string, now: Date): Transition => {
  const transition = end(run, { to: 'STOPPED', exitReason: 'stopped', message: `stopped by ${by}` }, now);
  return transition ?? refuse(run, 'STOPPED');
};

/** A person closes a run that has ended. */
export const close = (run: Run, by: string, now: Date): Transition => {
  if (!isTerminal(run.status) || !canTransition(run.status, 'DONE')) refuse(run, 'DONE');
  return move(run, ['DONE'], { message: `closed by ${by}` }, now);
};

/** A dead-lettered run goes back on the queue, with its launch attempts and re-queues counted anew. */
export const redrive = (run: Run, by: string, now: Date): Transition => {
  if (run.status !== 'DEAD_LETTER') refuse(run, 'QUEUED');
  return move(
    run,
    ['QUEUED'],
    { redriveCount: run.redriveCount + 1, attempt: 1, requeues: 0, message: `redriven by ${by}` },
    now,
  );
};

/** The queue gave up on the run's message: a run still waiting is dead-lettered. */
export const deadLetter = (run: Run, message: string, now: Date): Transition | undefined =>
  run.status === 'QUEUED'
    ? move(run, ['DEAD_LETTER'], { exitReason: 'dead_letter', message, ...endedAt(run, now) }, now)
    : undefined;

/**
 * The sweeper found the run still QUEUED long after it was: back on the queue, counted, until the
 * re-queues are spent; then it is dead-lettered with the reason, instead of going round forever.
 */
export const requeue = (
  run: Run,
  policy: { maxRequeues: number },
  why: string,
  now: Date,
): Transition | undefined => {
  if (run.status !== 'QUEUED') return undefined;
  const requeues = run.requeues ?? 0;
  if (requeues < policy.maxRequeues) return move(run, [], { requeues: requeues + 1 }, now);
  return deadLetter(run, `the run was still QUEUED after ${requeues} re-queues by the sweeper: ${why}`, now);
};

/** The run's account has no active-run slot free: it stays QUEUED, saying why, until one frees. */
export const waitForSlot = (run: Run, reason: string, now: Date): Transition | undefined =>
  run.status === 'QUEUED' && run.waitingFor !== reason
    ? move(run, [], { waitingFor: reason }, now)
    : undefined;

/** Checks passed: the run is provisioned for a launch, the first or one after a back-off. */
export const provision = (run: Run, now: Date): Transition | undefined => {
  if (run.status === 'PROVISIONING') return undefined;
  if (run.status !== 'QUEUED' && run.status !== 'RETRYING') refuse(run, 'PROVISIONING');
  return move(run, ['PROVISIONING'], {}, now);
};

export type LaunchRetry =
  | { retry: false; attempt: number }
  | { retry: true; attempt: number; transition?: Transition };

/**
 * A launch failed before the agent acted (capacity, network interfaces, throttling): RETRYING with the
 * attempt counted, while attempts are left. A RETRYING run was counted already (a retried call).
 */
export const retryLaunch = (
  run: Run,
  policy: { maxAttempts: number },
  reason: string,
  now: Date,
): LaunchRetry => {
  if (run.status === 'RETRYING') return { retry: true, attempt: run.attempt };
  if (run.status !== 'PROVISIONING' || run.attempt >= policy.maxAttempts) {
    return { retry: false, attempt: run.attempt };
  }
  const attempt = run.attempt + 1;
  const message = `launch attempt ${run.attempt} failed: ${reason}`;
  return { retry: true, attempt, transition: move(run, ['RETRYING'], { attempt, message }, now) };
};

/** A person approved the checkpoint the run waits at: it goes on, and the checkpoint joins its history. */
export const resume = (run: Run, decided: ApprovalHistoryEntry, now: Date): Transition | undefined =>
  run.status === 'AWAITING_APPROVAL' && run.pendingApproval?.seq === decided.seq
    ? move(run, ['RUNNING'], {}, now, decided)
    : undefined;

/** Ends a run whose sandbox is gone or whose limits are reached, while an execution still carries it. */
export const fail = (
  run: Run,
  exitReason: 'interrupted' | 'budget_hit',
  message: string,
  now: Date,
): Transition | undefined =>
  isLaunched(run.status) ? end(run, { to: 'FAILED', exitReason, message }, now) : undefined;

/**
 * The control plane opened (or found) the run's pull requests, one per repository it pushed to: the
 * run, still RUNNING, moves to PR_RAISED with the first as its pull request and each as an artifact.
 * Once raised, a retried step changes nothing.
 */
export const raisePullRequests = (
  run: Run,
  pullRequests: PullRequest[],
  now: Date,
): Transition | undefined => {
  const [first] = pullRequests;
  if (!first || run.status !== 'RUNNING' || run.phase === 'PR_RAISED') return undefined;
  const at = now.toISOString();
  return {
    ...move(run, [], { phase: 'PR_RAISED', pullRequest: first }, now),
    artifacts: pullRequests.map((pr) => ({
      kind: 'pull_request' as const,
      url: pr.url,
      at,
      ...(pr.branch ? { branch: pr.branch } : {}),
      ...(pr.repo ? { repo: pr.repo } : {}),
    })),
  };
};

/**
 * What the run's pull request's fate does to it (GitHub's webhooks arrive late, twice and out of
 * order): closed unmerged, PR_REJECTED; merged, DONE with who merged and when. Only the run's own pull
 * request moves it, and only forward: a late `closed` after the merge, or a reopening, changes nothing.
 */
export const settlePullRequest = (run: Run, pullRequest: PullRequest, now: Date): Transition | undefined => {
  if (run.pullRequest?.url !== pullRequest.url) return undefined;
  if (pullRequest.state === 'merged' && (run.status === 'COMPLETED' || run.status === 'PR_REJECTED')) {
    return move(
      run,
      ['DONE'],
      { pullRequest, message: `pull request merged by ${pullRequest.mergedBy ?? 'someone'}` },
      now,
    );
  }
  if (pullRequest.state === 'closed' && run.status === 'COMPLETED') {
    return move(run, ['PR_REJECTED'], { pullRequest, message: 'pull request closed without merging' }, now);
  }
  return undefined;
};
