/**
 * The execution run and its lifecycle. Pure domain: no AWS imports, no I/O.
 * Every status change in the system goes through `assertTransition` / `allowedFrom`, and the
 * repository turns `allowedFrom(to)` into a DynamoDB condition, so the database enforces this table.
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

/** Statuses in which a run may be stopped by a user: it has not ended yet. */
export const ACTIVE_STATUSES: readonly RunStatus[] = RUN_STATUSES.filter((s) => !isTerminal(s));

/**
 * The one transition table. Terminal statuses only leave for DONE (a human closed the run),
 * PR_REJECTED (its pull request was closed unmerged) or, from DEAD_LETTER, QUEUED (redrive).
 */
export const TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  QUEUED: ['PROVISIONING', 'CANCELLED', 'STOPPED', 'DEAD_LETTER'],
  PROVISIONING: ['RUNNING', 'RETRYING', 'FAILED', 'STOPPED'],
  RETRYING: ['PROVISIONING', 'FAILED', 'STOPPED'],
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

/** The statuses a run may be in for a move to `to` to be allowed: the repository's condition. */
export const allowedFrom = (to: RunStatus): RunStatus[] =>
  RUN_STATUSES.filter((from) => TRANSITIONS[from].includes(to));

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

const FINAL_PHASES: ReadonlySet<Phase> = new Set(['COMPLETED', 'FAILED']);

/** Phases only move forward; COMPLETED and FAILED are final. A repeated phase is not a move. */
export const canAdvancePhase = (from: Phase | undefined, to: Phase): boolean => {
  if (from === undefined) return true;
  if (FINAL_PHASES.has(from)) return false;
  if (to === 'FAILED') return true;
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

/** Failure kinds a pod may report as its own exit reason. */
export const POD_FAILURE_REASONS = [
  'tool_call_failed',
  'lifecycle_hook_failed',
  'missing_repo_access',
  'budget_hit',
  'error',
] as const satisfies readonly ExitReason[];

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
}

export interface Artifact {
  kind: 'commit' | 'pull_request';
  url: string;
  sha?: string;
  at: string;
}

export interface PodResult {
  outcome: 'completed' | 'failed';
  exitReason?: ExitReason;
  message?: string;
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
  artifacts: Artifact[];
  result?: PodResult;
  message?: string;
  attempt: number;
  redriveCount: number;
  executionArn?: string;
  taskArn?: string;
  logStream?: string;
  stopCode?: string;
  stoppedReason?: string;
  containerExitCode?: number;
  lastSeq: number;
  lastHeartbeatAt?: string;
  version: number;
  updatedAt: string;
}

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

/** The exit reason a terminal status implies when nothing more specific is known. */
export const defaultExitReason = (status: RunStatus): ExitReason | undefined => {
  switch (status) {
    case 'COMPLETED':
      return 'completed';
    case 'STOPPED':
      return 'stopped';
    case 'ABANDONED':
      return 'abandoned';
    case 'CANCELLED':
      return 'cancelled';
    case 'DEAD_LETTER':
      return 'dead_letter';
    case 'FAILED':
      return 'error';
    default:
      return undefined;
  }
};
