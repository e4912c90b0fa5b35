import type {
  Approval,
  ApprovalHistoryEntry,
  DecisionRecord,
  PendingApproval,
  RunApprovals,
} from './domain/approval.js';
import type { SandboxCharge, TokenCharge, TokenCounts } from './domain/pricing.js';
import type { ExitReason, Phase, PodResult, Run, RunSource, RunStatus } from './domain/run.js';
import type { Step, StepContentRef, StepPage } from './domain/steps.js';
import type { Account, AccountLimits, Pod, Project } from './domain/tenancy.js';
import type { AgentEvent } from './schemas/agent-events.js';

/** Ports: what the use cases need from the outside world. Adapters in shared/adapters implement them. */

export interface RunConfigSnapshot {
  prompt: string;
  repos: string[];
  pod: Pod;
  request: Record<string, unknown>;
  demo?: Record<string, unknown>;
}

export interface RunListFilter {
  accountId: string;
  projectId?: string;
  statuses?: RunStatus[];
  source?: RunSource;
  podId?: string;
  limit: number;
  /** exclusive upper bound on runId: the list continues below it */
  before?: string;
}

export interface RunPage {
  items: Run[];
  /** the last runId of this page when more may follow */
  lastRunId?: string;
}

/** Fields a transition may set alongside the new status. `undefined` values are ignored. */
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
    | 'result'
    | 'message'
    | 'pullRequest'
    | 'lastHeartbeatAt'
  >
> &
  Pick<RunApprovals, 'pendingApproval'>;

export interface TransitionRequest {
  runId: string;
  to: RunStatus;
  /** restrict further than the lifecycle allows (e.g. only from QUEUED) */
  from?: RunStatus[];
  patch?: RunPatch;
  /** expected version for optimistic locking */
  expectedVersion?: number;
}

/** Whose spend a priced entry counts toward, besides its run's: the account, by project and pod. */
export interface SpendScope {
  accountId: string;
  projectId: string;
  podId: string;
}

/** Prices the usage a batch of events carries. */
export interface UsagePricing {
  scope: SpendScope;
  price(model: string, tokens: TokenCounts): TokenCharge;
}

/** The run's sandbox time and per-run fee, charged once when the run has ended. */
export interface Settlement extends SandboxCharge {
  cpu: number;
  memoryMiB: number;
  architecture: string;
  runningMs: number;
}

/** One account's spend in one UTC hour (`YYYY-MM-DDTHH`), in micro-USD. */
export interface HourlySpend {
  hour: string;
  totalMicroUsd: number;
  byProject: Record<string, number>;
  byPod: Record<string, number>;
}

export interface RunRepository {
  create(
    run: Run,
    snapshot: RunConfigSnapshot,
    idempotencyKey?: string,
  ): Promise<{ run: Run; created: boolean }>;
  get(runId: string): Promise<Run | undefined>;
  getSnapshot(runId: string): Promise<RunConfigSnapshot | undefined>;
  /** Conditional status change; throws TransitionRefusedError when the run is not in an allowed status. */
  transition(req: TransitionRequest): Promise<Run>;
  /** Update non-status facts; `onlyIf` statuses guard it. Returns the new run, or undefined if refused. */
  update(runId: string, patch: RunPatch, onlyIf?: RunStatus[]): Promise<Run | undefined>;
  list(filter: RunListFilter): Promise<RunPage>;
  /** QUEUED runs created before `olderThan` (epoch ms), oldest first */
  listQueuedBefore(olderThan: number, limit: number): Promise<Run[]>;
  /** Park the state machine's task token for the pod wait; returns the run as stored. */
  setPodTaskToken(runId: string, token: string): Promise<Run>;
  getPodTaskToken(runId: string): Promise<string | undefined>;
  clearPodTaskToken(runId: string): Promise<void>;
  /**
   * The approval for the pending checkpoint `pending.seq` was requested: record its id and expiry, and
   * park its task token as the run's current wait (so a stop or a lost sandbox settles it). Undefined
   * when the run no longer awaits that checkpoint.
   */
  parkApproval(runId: string, pending: PendingApproval, token: string): Promise<Run | undefined>;
  /** Move the pending approval of checkpoint `entry.seq` into the run's history; false if it is not pending. */
  closeApproval(runId: string, entry: ApprovalHistoryEntry): Promise<boolean>;
  /** Store the hash of the pod's run-scoped token. */
  setAgentTokenHash(runId: string, hash: string): Promise<void>;
  getAgentTokenHash(runId: string): Promise<string | undefined>;
  /**
   * Record agent events; returns which seqs were new. Idempotent per (runId, seq). `fullContent` says
   * where the whole text of a step whose content is cut in its record was kept, by seq.
   */
  recordEvents(
    runId: string,
    events: AgentEvent[],
    fullContent?: ReadonlyMap<number, StepContentRef>,
    /** prices each usage ledger entry; the run's cost and the account's hourly spend grow with it */
    pricing?: UsagePricing,
  ): Promise<{ accepted: AgentEvent[]; duplicates: number }>;
  /** Charge the settlement once, with the account's spend; false when the run was settled before. */
  settle(runId: string, settlement: Settlement, scope: SpendScope): Promise<boolean>;
  /** The account's hourly spend from `fromHour` to `toHour`, both included; hours without spend are absent. */
  hourlySpend(accountId: string, fromHour: string, toHour: string): Promise<HourlySpend[]>;
  /**
   * Steps with seq above `afterSeq`, in seq order. `settledOnly` leaves out steps of a batch still
   * being written, so a reader following with `afterSeq` never skips one.
   */
  listSteps(
    runId: string,
    query: { afterSeq: number; limit: number; settledOnly: boolean },
  ): Promise<StepPage>;
  getStep(runId: string, seq: number): Promise<Step | undefined>;
  advancePhase(runId: string, phase: Phase): Promise<void>;
}

export interface DirectoryRepository {
  getAccount(accountId: string): Promise<Account | undefined>;
  /** Stores the account unless one exists (a concurrent request may have made it); answers the one stored. */
  createAccount(account: Account): Promise<Account>;
  setAccountLimits(accountId: string, limits: AccountLimits): Promise<Account>;
  getProject(accountId: string, projectId: string): Promise<Project | undefined>;
  putProject(project: Project): Promise<void>;
  listProjects(accountId: string): Promise<Project[]>;
  getPod(accountId: string, podId: string): Promise<Pod | undefined>;
  putPod(pod: Pod): Promise<void>;
  listPods(accountId: string): Promise<Pod[]>;
}

export interface RunQueue {
  enqueue(runId: string): Promise<void>;
}

export interface Orchestrator {
  /** Start the run's execution; an execution that already exists counts as started. */
  start(
    executionName: string,
    input: { runId: string },
  ): Promise<{ executionArn: string; alreadyExisted: boolean }>;
}

/** Settling the task tokens the state machine parks. 'gone': the wait was already over. */
export interface TaskSignals {
  succeedTask(token: string, output: unknown): Promise<'sent' | 'gone'>;
  failTask(token: string, error: string, cause: string): Promise<'sent' | 'gone'>;
  heartbeat(token: string): Promise<'sent' | 'gone'>;
}

export interface LogEvent {
  /** epoch milliseconds */
  timestamp: number;
  message: string;
}

export interface LogEventsRequest {
  logStream: string;
  limit: number;
  /** true: oldest first, or after a forward token; false: newest, or before a backward token */
  forward: boolean;
  token?: string;
}

/** One GetLogEvents page: events oldest first; at either end a token comes back as it was given. */
export interface LogEventsPage {
  events: LogEvent[];
  nextForwardToken?: string;
  nextBackwardToken?: string;
}

/** The pods' log streams. */
export interface LogReader {
  /** undefined when the stream does not exist (not created yet, or expired) */
  getEvents(request: LogEventsRequest): Promise<LogEventsPage | undefined>;
}

/** The full text of steps too large for their record. */
export interface StepContentStore {
  put(runId: string, seq: number, content: string): Promise<StepContentRef>;
  /** undefined when the text is gone (retention) or incomplete */
  get(ref: StepContentRef): Promise<string | undefined>;
}

/** Approval requests, found by the opaque id their links carry. */
export interface ApprovalStore {
  /** Store a new approval with the task token its decision settles (kept server-side only). */
  put(approval: Approval, taskToken: string): Promise<void>;
  get(approvalId: string): Promise<Approval | undefined>;
  getTaskToken(approvalId: string): Promise<string | undefined>;
  /**
   * The single-use decision: written only while the approval is undecided and unexpired at `now`.
   * Otherwise nothing changes and the approval as stored comes back, to show what is on record.
   */
  recordDecision(
    approvalId: string,
    decision: DecisionRecord,
    now: Date,
  ): Promise<{ recorded: true; approval: Approval } | { recorded: false; approval?: Approval }>;
  /** The decision was recorded, but the wait it was meant for had already ended. */
  markNotApplied(approvalId: string): Promise<void>;
  /** The full details of the checkpoint event the agent sent. */
  checkpointDetails(runId: string, seq: number): Promise<{ details?: string; truncated: boolean }>;
}

export interface Mail {
  to: string;
  subject: string;
  html: string;
  text: string;
}

export interface Notifier {
  send(mail: Mail): Promise<void>;
}

export interface Sandbox {
  stop(taskArn: string, reason: string): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type { AgentEvent, ExitReason, PodResult, Run };
