import type { ApprovalHistoryEntry, PendingApproval } from './approval.js';

/**
 * The execution run and its lifecycle. Pure domain: no AWS imports, no I/O.
 * Every status change in the system is a Transition made by one of the commands in commands.ts, each
 * hop checked against this table; the store writes it only while the run is still in the status it
 * was decided from, so the database enforces the table and a lost race is decided again.
 */

export const RUN_STATUSES = [
  'QUEUED',
  'PROVISIONING',
  'RUNNING',
  'AWAITING_APPROVAL',
  'RETRYING',
  'COMPLETED',
  'DONE',
  'FAILED',
  'CANCELLED',
  'STOPPED',
  'ABANDONED',
  'PR_REJECTED',
  'DEAD_LETTER',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set([
  'COMPLETED',
  'DONE',
  'FAILED',
  'CANCELLED',
  'STOPPED',
  'ABANDONED',
  'PR_REJECTED',
  'DEAD_LETTER',
]);

export const isTerminal = (status: RunStatus): boolean => TERMINAL_STATUSES.has(status);

/** Not ended yet: a user may stop it, and something must still carry it to a terminal status. */
export const ACTIVE_STATUSES: readonly RunStatus[] = RUN_STATUSES.filter((s) => !isTerminal(s));

/** Past the queue and not ended: an execution carries the run and a sandbox may exist for it. */
export const LAUNCHED_STATUSES: readonly RunStatus[] = [
  'PROVISIONING',
  'RETRYING',
  'RUNNING',
  'AWAITING_APPROVAL',
];

export const isLaunched = (status: RunStatus): boolean => LAUNCHED_STATUSES.includes(status);

/**
 * Launched with a sandbox being started or at work: its pod may clone and push the run's repositories.
 * RETRYING is between launches, when no sandbox of the run exists.
 */
export const SANDBOX_STATUSES: readonly RunStatus[] = ['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'];

export const hasSandbox = (status: RunStatus): boolean => SANDBOX_STATUSES.includes(status);

/**
 * The one transition table. Terminal statuses only leave for DONE (a human closed the run),
 * PR_REJECTED (its pull request was closed unmerged) or, from DEAD_LETTER, QUEUED (redrive).
 * CANCELLED means nothing executed: a pre-flight check may fail before the first launch (QUEUED),
 * when a Checks retry runs after the move to PROVISIONING, or before a relaunch (RETRYING).
 */
export const TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  QUEUED: ['PROVISIONING', 'CANCELLED', 'STOPPED', 'DEAD_LETTER'],
  PROVISIONING: ['RUNNING', 'RETRYING', 'CANCELLED', 'FAILED', 'STOPPED'],
  RETRYING: ['PROVISIONING', 'CANCELLED', 'FAILED', 'STOPPED'],
  RUNNING: ['AWAITING_APPROVAL', 'COMPLETED', 'FAILED', 'STOPPED'],
  AWAITING_APPROVAL: ['RUNNING', 'ABANDONED', 'STOPPED', 'FAILED'],
  COMPLETED: ['PR_REJECTED', 'DONE'],
  FAILED: ['DONE'],
  CANCELLED: ['DONE'],
  STOPPED: ['DONE'],
  ABANDONED: ['DONE'],
  PR_REJECTED: ['DONE'],
  DEAD_LETTER: ['QUEUED', 'DONE'],
  DONE: [],
};

export const canTransition = (from: RunStatus, to: RunStatus): boolean => TRANSITIONS[from].includes(to);

/** In the order a run goes through them; FAILED comes last, so every phase that is not final may fail. */
export const PHASES = [
  'STARTED',
  'PLANNING',
  'EXECUTING',
  'COMMITTING',
  'PR_RAISED',
  'COMPLETED',
  'FAILED',
] as const;
export type Phase = (typeof PHASES)[number];

/**
 * Phases only move forward; COMPLETED is final, and so is FAILED, which comes last. A repeated phase
 * is not a move.
 */
export const canAdvancePhase = (from: Phase | undefined, to: Phase): boolean => {
  // Stryker disable next-line ConditionalExpression: equivalent, no phase ranks -1 below and moves anywhere too
  if (from === undefined) return true;
  if (from === 'COMPLETED') return false;
  return PHASES.indexOf(to) > PHASES.indexOf(from);
};

export const EXIT_REASONS = [
  'completed',
  'budget_hit',
  'payment_required',
  'tool_call_failed',
  'lifecycle_hook_failed',
  'missing_repo_access',
  'cancelled',
  'interrupted',
  'error',
  'stopped',
  'abandoned',
  'timed_out',
  'dead_letter',
] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

export const RUN_MODES = ['autopilot', 'supervised'] as const;
export type RunMode = (typeof RUN_MODES)[number];

/** Where a dispatched run comes from; a replay is made from another run, never dispatched. */
export const DISPATCH_SOURCES = ['cron', 'react', 'mention', 'manual', 'api', 'cli'] as const;
export const RUN_SOURCES = [...DISPATCH_SOURCES, 'replay'] as const;
export type RunSource = (typeof RUN_SOURCES)[number];

export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /** micro-USD */
  costMicroUsd: number;
}

export interface RunCost {
  tokenUsd: number;
  sandboxCpuUsd: number;
  sandboxMemoryUsd: number;
  feeUsd: number;
  totalUsd: number;
}

export interface PullRequest {
  url: string;
  number?: number;
  state: 'open' | 'merged' | 'closed';
  /** the repository (its clone URL) and branch it merges from */
  repo?: string;
  branch?: string;
  draft?: boolean;
  /** who merged it (a GitHub login) and when; when it was closed unmerged */
  mergedBy?: string;
  mergedAt?: string;
  closedAt?: string;
}

/** The GitHub issue a run was started from, and the comment the run answers on it with. */
export interface GitHubIssueRef {
  /** the repository's clone URL */
  repo: string;
  /** `owner/name` */
  fullName: string;
  number: number;
  url: string;
  /** the GitHub login of the person whose comment or label started it */
  calledBy: string;
  /** the run's own comment on the issue, once it is posted */
  commentId?: number;
}

export interface Artifact {
  kind: 'commit' | 'pull_request';
  url: string;
  sha?: string;
  branch?: string;
  repo?: string;
  at: string;
}

export interface PodResult {
  outcome: 'completed' | 'failed';
  exitReason?: ExitReason;
  message?: string;
  /** the agent's turns and working time, for agents that count them (Claude Code) */
  turns?: number;
  durationMs?: number;
}

export interface StatusChange {
  status: RunStatus;
  at: string;
}

export interface Run {
  runId: string;
  accountId: string;
  projectId: string;
  itemId: string;
  podId: string;
  mode: RunMode;
  status: RunStatus;
  /** every status the run has had, oldest first */
  history: StatusChange[];
  phase?: Phase;
  exitReason?: ExitReason;
  source: RunSource;
  attribution: string;
  replayOf?: string;
  repos: string[];
  usage: Record<string, ModelUsage>;
  cost: RunCost;
  createdAt: string;
  startedAt?: string;
  completedAt?: string;
  durationMs?: number;
  pullRequest?: PullRequest;
  /** the GitHub issue a comment or a label started the run from */
  gitHubIssue?: GitHubIssueRef;
  artifacts: Artifact[];
  result?: PodResult;
  message?: string;
  attempt: number;
  redriveCount: number;
  /** times the sweeper put the run back on the queue since it was last queued by a person */
  requeues?: number;
  /** why a QUEUED run has not started (its account's active-run limit); gone once it leaves the queue */
  waitingFor?: string;
  executionArn?: string;
  taskArn?: string;
  logStream?: string;
  stopCode?: string;
  stoppedReason?: string;
  containerExitCode?: number;
  lastSeq: number;
  /** the event seqs recorded, as sorted, disjoint, inclusive ranges: what makes a repeated seq a duplicate */
  seqs?: [number, number][];
  lastHeartbeatAt?: string;
  pendingApproval?: PendingApproval;
  /** how each checkpoint the run paused at ended */
  approvals?: ApprovalHistoryEntry[];
  version: number;
  updatedAt: string;
}

/** Fields a transition may set alongside the status. `undefined` values are left as they are. */
export type RunPatch = Partial<
  Pick<
    Run,
    | 'phase'
    | 'exitReason'
    | 'startedAt'
    | 'completedAt'
    | 'durationMs'
    | 'executionArn'
    | 'taskArn'
    | 'logStream'
    | 'stopCode'
    | 'stoppedReason'
    | 'containerExitCode'
    | 'attempt'
    | 'redriveCount'
    | 'requeues'
    | 'waitingFor'
    | 'result'
    | 'message'
    | 'pullRequest'
    | 'lastHeartbeatAt'
  >
> & { pendingApproval?: PendingApproval };

/**
 * A change of the run decided from the run as read: written only while its status is still `from`
 * (otherwise the command is decided again from what is stored). `path` holds the statuses the run
 * passes through, each hop allowed by TRANSITIONS; empty when only `patch` changes.
 */
export interface Transition {
  runId: string;
  from: RunStatus;
  path: RunStatus[];
  /** when the run passes through each status of `path` */
  at: string;
  patch: RunPatch;
  /** the run has ended: the pod's credentials go with the same write (a run that ended takes no events) */
  revokeCredentials: boolean;
  /** the checkpoint pending on the run leaves it for its history, as this entry says it ended */
  closeApproval?: ApprovalHistoryEntry;
  /** appended to the run's artifacts */
  artifacts?: Artifact[];
}

/** The status a transition leaves the run in. */
export const statusAfter = (t: Transition): RunStatus => t.path.at(-1) ?? t.from;

/** A model's usage before any of it is counted. */
export const noUsage = (): ModelUsage => ({
  inputTokens: 0,
  outputTokens: 0,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  costMicroUsd: 0,
});

export const ZERO_COST: RunCost = {
  tokenUsd: 0,
  sandboxCpuUsd: 0,
  sandboxMemoryUsd: 0,
  feeUsd: 0,
  totalUsd: 0,
};

/** Step Functions reserves an execution name for 90 days, so each redrive needs a new one. */
export const executionName = (run: Pick<Run, 'runId' | 'redriveCount'>): string =>
  run.redriveCount === 0 ? run.runId : `${run.runId}-r${run.redriveCount}`;
