import type { BatchPlan } from './domain/agent-batch.js';
import type { Approval, DecisionRecord, PendingApproval } from './domain/approval.js';
import type { FeedEvent, FeedHead, NewFeedEvent } from './domain/feed.js';
import type { SandboxCharge } from './domain/pricing.js';
import type {
  ExitReason,
  PodResult,
  PullRequest,
  Run,
  RunSource,
  RunStatus,
  Transition,
} from './domain/run.js';
import type { RunMetric } from './domain/run-metrics.js';
import type { Schedule, ScheduleKey, ScheduleSettings, TickRecord } from './domain/schedule.js';
import type { Step, StepContentRef, StepPage } from './domain/steps.js';
import type { Account, AccountLimits, Caller, GitHubLink, Pod, Project } from './domain/tenancy.js';
import type { RequestWindow } from './domain/throttle.js';
import type { AgentEvent, GitCredential } from './schemas/agent-events.js';

/** Ports: what the use cases need from the outside world. Adapters in shared/adapters implement them. */

export interface RunConfigSnapshot {
  prompt: string;
  repos: string[];
  /** the branch, tag or commit to check out; absent: each repository's default branch */
  ref?: string;
  /** who dispatched (or replayed) the run; absent from snapshots frozen before it was recorded */
  dispatcher?: { userId: string; email?: string };
  pod: Pod;
  request: Record<string, unknown>;
  demo?: Record<string, unknown>;
}

export interface RunListFilter {
  accountId: string;
  projectId?: string;
  /** without `projectId`: only the runs of these projects (the ones a caller who is not an account admin may read) */
  projectIds?: string[];
  statuses?: RunStatus[];
  source?: RunSource;
  podId?: string;
  limit: number;
  /** exclusive upper bound on runId: the list continues below it */
  before?: string;
}

export interface RunPage {
  items: Run[];
  /**
   * where the next page starts (below it) when more may follow: this page's last runId, or where a
   * filtered read stopped within its budget (the page may then hold fewer runs than asked, or none)
   */
  lastRunId?: string;
}

/** Infrastructure facts about a run: recorded as they become known, whatever its status. */
export type RunFacts = Partial<
  Pick<
    Run,
    | 'executionArn'
    | 'taskArn'
    | 'logStream'
    | 'stopCode'
    | 'stoppedReason'
    | 'containerExitCode'
    | 'gitHubIssue'
  >
>;

/**
 * What the server keeps on the run record and never shows: the token of the state machine's current
 * wait on the run (the pod's, or while a checkpoint waits, its approval's), the hash of the pod's
 * run-scoped token, and the hash of the one-time code the pod exchanges for that token.
 */
export interface RunSecrets {
  podTaskToken?: string;
  agentTokenHash?: string;
  launchCodeHash?: string;
}

/** Whose spend a priced entry counts toward, besides its run's: the account, by project and pod. */
export interface SpendScope {
  accountId: string;
  projectId: string;
  podId: string;
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

/** A transition written, or refused because the run was no longer where it was decided from. */
export type Applied = { applied: true; run: Run } | { applied: false; run?: Run };

/** The run records: the run, its frozen config, its status changes and the secrets kept on it. */
export interface RunStore {
  create(
    run: Run,
    snapshot: RunConfigSnapshot,
    idempotencyKey?: string,
  ): Promise<{ run: Run; created: boolean }>;
  get(runId: string): Promise<Run | undefined>;
  /** The run and its secrets, from one consistent read. */
  getWithSecrets(runId: string): Promise<{ run: Run; secrets: RunSecrets } | undefined>;
  getSnapshot(runId: string): Promise<RunConfigSnapshot | undefined>;
  /**
   * Writes a transition decided from `decidedFrom`, only while the run is still in `t.from` (and, when
   * it closes a checkpoint, still pending that one). Refused: the run as it now is, to decide again.
   */
  apply(decidedFrom: Run, t: Transition): Promise<Applied>;
  recordFacts(runId: string, facts: RunFacts): Promise<void>;
  /**
   * Writes a planned event batch (its steps and records, ledger lines, the run's changes and the
   * account's spend) only while the run is still at `run.version`. False: the run changed since it
   * was read; plan again.
   */
  recordBatch(run: Run, plan: BatchPlan, written: BatchWriteContext): Promise<boolean>;
  /** Park the token of the state machine's pod wait; returns the run and its secrets as stored. */
  parkPodToken(runId: string, token: string): Promise<{ run: Run; secrets: RunSecrets }>;
  clearPodToken(runId: string): Promise<void>;
  /**
   * The approval for the pending checkpoint `pending.seq` was requested: record its id and expiry, and
   * park its task token as the run's current wait (so a stop or a lost sandbox settles it). Undefined
   * when the run no longer awaits that checkpoint.
   */
  parkApproval(runId: string, pending: PendingApproval, token: string): Promise<Run | undefined>;
  /** Checks passed: the hash of the one-time code the launched pod exchanges for its token. */
  setLaunchCode(runId: string, codeHash: string): Promise<void>;
  /**
   * The pod's exchange, once: while the run is active, the code's hash is the one set and the task is
   * the run's, the code is spent and the token's hash stored. False when any of that does not hold.
   */
  exchangeLaunchCode(
    runId: string,
    exchange: { codeHash: string; taskArn: string; tokenHash: string },
  ): Promise<boolean>;
}

/** What a batch's write needs besides the plan. */
export interface BatchWriteContext {
  /** where the whole text of each step too large for its record was kept, by seq */
  fullContent: ReadonlyMap<number, StepContentRef>;
  /** whose spend the batch's priced usage counts toward */
  scope: SpendScope;
}

/** The run lists: by account, project, status, pod and source, newest first; and the stale queue. */
export interface RunList {
  list(filter: RunListFilter): Promise<RunPage>;
  /** QUEUED runs created before `olderThan` (epoch ms), oldest first */
  listQueuedBefore(olderThan: number, limit: number): Promise<Run[]>;
  /** runs paused for approval, oldest first */
  listAwaitingApproval(limit: number): Promise<Run[]>;
  /** COMPLETED runs whose pull request is open, oldest first */
  listOpenPullRequests(limit: number): Promise<Run[]>;
  /** The oldest run not ended yet, whatever its account; undefined when every run has ended. */
  oldestActive(): Promise<Run | undefined>;
}

/** The step timeline. */
export interface Timeline {
  /** Steps with seq above `afterSeq` and at most `throughSeq`, in seq order. */
  listSteps(runId: string, query: { afterSeq: number; throughSeq: number; limit: number }): Promise<StepPage>;
  getStep(runId: string, seq: number): Promise<Step | undefined>;
}

/** The ledger of what runs cost and the accounts' spend. */
export interface SpendLedger {
  /** Charge the settlement once, with the account's spend; false when the run was settled before. */
  settle(runId: string, settlement: Settlement, scope: SpendScope): Promise<boolean>;
  /** The account's hourly spend from `fromHour` to `toHour`, both included; hours without spend are absent. */
  hourlySpend(accountId: string, fromHour: string, toHour: string): Promise<HourlySpend[]>;
}

/** A run holding one of its account's active-run slots: what its sandbox accrues is priced from it. */
export interface ActiveRun {
  runId: string;
  /** when it took the slot, just before its launch */
  since: string;
  cpu: number;
  memoryMiB: number;
}

/** Each account's active-run slots and the runs waiting for one. */
export interface ActiveRuns {
  /**
   * Take a slot for the run unless `limit` other runs hold one (0 = no limit): true when it holds one
   * (a retried take finds it held). Refused, the run is kept among those waiting.
   */
  take(accountId: string, run: ActiveRun, limit: number): Promise<boolean>;
  /** Give the run's slot back (once); answers the run waiting longest, to be woken. */
  release(accountId: string, runId: string): Promise<string | undefined>;
  /** The run no longer waits (it ended while queued); answers the run waiting longest after it. */
  forget(accountId: string, runId: string): Promise<string | undefined>;
  /** the runs holding a slot */
  active(accountId: string): Promise<ActiveRun[]>;
}

export interface DirectoryRepository {
  getAccount(accountId: string): Promise<Account | undefined>;
  /** Stores the account unless one exists (a concurrent request may have made it); answers the one stored. */
  createAccount(account: Account): Promise<Account>;
  setAccountLimits(accountId: string, limits: AccountLimits): Promise<Account>;
  /** A ConflictError when another account links the installation. */
  setAccountGitHub(accountId: string, github: GitHubLink): Promise<Account>;
  /** The account that links the GitHub App installation, if any does. */
  accountOfInstallation(installationId: number): Promise<Account | undefined>;
  getProject(accountId: string, projectId: string): Promise<Project | undefined>;
  putProject(project: Project): Promise<void>;
  listProjects(accountId: string): Promise<Project[]>;
  getPod(accountId: string, podId: string): Promise<Pod | undefined>;
  putPod(pod: Pod): Promise<void>;
  listPods(accountId: string): Promise<Pod[]>;
}

/** The task definitions of pods that cannot run on the stack's own (needsOwnTaskDefinition). */
export interface PodTaskDefinitions {
  /**
   * Registers a new revision of the pod's own task definition and answers its ARN; undefined when
   * the stack's task definition serves the pod (no image of its own, no secrets).
   */
  register(pod: Pod): Promise<string | undefined>;
}

/** The schedules' records: what their ticks dispatch, and what the ticks did. */
export interface ScheduleStore {
  get(key: ScheduleKey): Promise<Schedule | undefined>;
  /** every schedule of the project */
  list(accountId: string, projectId: string): Promise<Schedule[]>;
  /**
   * Writes the settings, leaving what ticks recorded as it is, only while the stored revision is still
   * `expectedRevision` (undefined: while no schedule is stored). Answers the schedule as now stored;
   * undefined when the condition did not hold and nothing was written.
   */
  save(settings: ScheduleSettings, expectedRevision: string | undefined): Promise<Schedule | undefined>;
  /** True when there was one to delete. */
  delete(key: ScheduleKey): Promise<boolean>;
  /**
   * Records what a tick did, only while the schedule exists and the latest tick it acted on is still
   * the one read, `lastFiredAt` (undefined: none). False when nothing was written.
   */
  recordTick(key: ScheduleKey, record: TickRecord, lastFiredAt: string | undefined): Promise<boolean>;
}

/**
 * The service that ticks the schedules (EventBridge Scheduler) and its copy of each: the expression,
 * time zone and state, and the revision every tick carries back.
 */
export interface Scheduler {
  /** Creates the copy, or replaces it whole. An expression the service refuses is a ValidationError. */
  put(settings: ScheduleSettings): Promise<void>;
  /** True when there was a copy to remove. */
  remove(key: ScheduleKey): Promise<boolean>;
}

export interface RunQueue {
  enqueue(runId: string): Promise<void>;
}

/** How an execution stands; `error` and `cause` once it failed. */
export interface ExecutionStatus {
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED' | 'PENDING_REDRIVE';
  error?: string;
  cause?: string;
}

export interface Orchestrator {
  /**
   * Start the run's execution; an execution that already exists counts as started. The input names
   * the run and its account, which the tasks given the whole state put on their log lines.
   */
  start(
    executionName: string,
    input: { runId: string; accountId: string },
  ): Promise<{ executionArn: string; alreadyExisted: boolean }>;
  /** How the execution stands; undefined when there is no such execution. */
  describe(executionArn: string): Promise<ExecutionStatus | undefined>;
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

export interface GitCredentialRequest {
  /** the run the credential is for */
  runId: string;
  /** the GitHub App installation of the run's account, where GitHub is the git provider */
  installationId?: number;
  /** the only repositories it opens, as the run names them (clone URLs) */
  repos: string[];
  /** how long it lasts; a source may give less, never more than an hour */
  ttlSeconds: number;
}

/**
 * Where short-lived git credentials come from: the local git server's tokens here; a GitHub App's
 * installation tokens on AWS. A repository the source cannot grant is a ForbiddenError.
 */
export interface GitCredentials {
  mint(request: GitCredentialRequest): Promise<GitCredential>;
}

export interface GitHubInstallation {
  installationId: number;
  /** the organization or user it is installed on */
  login: string;
  /** the clone URLs of the repositories it covers */
  repos: string[];
}

export interface PullRequestRequest {
  installationId: number;
  /** the repository's clone URL, as the run names it */
  repo: string;
  /** the branch the run pushed */
  branch: string;
  title: string;
  body: string;
  draft: boolean;
}

/**
 * The deployment's GitHub App, seen from the control plane: its installations, and the pull requests
 * it opens. Repositories are named by their clone URLs, as runs name them; one outside the App's
 * GitHub host is covered by no installation.
 */
export interface GitHubApp {
  /** The installation and what it covers; a NotFoundError when the App has no such installation. */
  installation(installationId: number): Promise<GitHubInstallation>;
  /** The open pull request from `branch`, or a new one: a retried call never opens a second. */
  openPullRequest(request: PullRequestRequest): Promise<PullRequest>;
  /** The pull request as it is now (its URL names it); NotFoundError when it is gone. */
  pullRequest(installationId: number, pullRequest: PullRequest): Promise<PullRequest>;
  /** A comment of the App's on an issue of the repository (its clone URL); answers the comment's id. */
  comment(installationId: number, repo: string, issueNumber: number, body: string): Promise<number>;
  /** Rewrites the App's own comment; a NotFoundError when it was deleted. */
  editComment(installationId: number, repo: string, commentId: number, body: string): Promise<void>;
}

/** A run's feed as stored: appended from the run's changes, read by followers catching up. */
export interface FeedStore {
  head(runId: string): Promise<FeedHead>;
  /**
   * Appends the events one change of the run made (numbered from `head.seq + 1`) and moves the head
   * to `change`, only while the head is still `head`. False: another append got there first; read
   * the head again.
   */
  append(runId: string, head: FeedHead, events: NewFeedEvent[], change: string): Promise<FeedEvent[] | false>;
  /** The events after `seq`, in seq order, at most `limit`. */
  after(runId: string, seq: number, limit: number): Promise<FeedEvent[]>;
}

/** A WebSocket connection's follow of a run: the last seq it was sent. */
export interface Follower {
  connectionId: string;
  cursor: number;
}

/**
 * A WebSocket connection's follow of a run's log: `cursor`, the logs API's afterCursor after the last
 * line it was sent, and `lastAt`, that line's timestamp (0 before any).
 */
export interface LogFollower {
  connectionId: string;
  cursor: string;
  lastAt: number;
}

/** Which run each pod log stream belongs to: its subscription's deliveries name only the stream. */
export interface LogStreamOwners {
  rememberLogStream(logStream: string, runId: string, expiresAt: Date): Promise<void>;
  runOfLogStream(logStream: string): Promise<string | undefined>;
}

/** A connection's follow of the account's runs (or one project's), for list views. */
export interface RunsFollower {
  connectionId: string;
  projectId?: string;
  /** the projects whose runs it may see, for a caller who is not an account admin */
  projectIds?: string[];
}

/** The stream's connections: their single-use tickets, who is connected, and who follows what. */
export interface StreamConnections {
  saveTicket(ticketHash: string, caller: Caller, expiresAt: Date): Promise<void>;
  /** The caller a ticket was issued to, once: a ticket used or past its expiry answers undefined. */
  redeemTicket(ticketHash: string, connectionId: string, now: Date): Promise<Caller | undefined>;
  saveConnection(connectionId: string, caller: Caller, expiresAt: Date): Promise<void>;
  getConnection(connectionId: string): Promise<Caller | undefined>;
  removeConnection(connectionId: string): Promise<void>;
  /** Follows the run from `cursor`, replacing an earlier follow of the same connection. */
  follow(runId: string, connectionId: string, cursor: number, expiresAt: Date): Promise<void>;
  /**
   * Moves the follower's cursor from `from` to `to`: whoever moves it sends those events, so each is
   * sent once. False when the cursor is elsewhere, or the follow is gone.
   */
  advance(runId: string, connectionId: string, from: number, to: number): Promise<boolean>;
  cursorOf(runId: string, connectionId: string): Promise<number | undefined>;
  followers(runId: string): Promise<Follower[]>;
  unfollow(runId: string, connectionId: string): Promise<void>;
  /** Follows the run's log from `cursor`, replacing an earlier follow of its log by the same connection. */
  followLogs(runId: string, connectionId: string, cursor: string, expiresAt: Date): Promise<void>;
  /** As `advance`, for a follow of the run's log: moved from `from` only, with the last line's time. */
  advanceLogs(
    runId: string,
    connectionId: string,
    from: string,
    to: { cursor: string; lastAt: number },
  ): Promise<boolean>;
  logFollower(runId: string, connectionId: string): Promise<LogFollower | undefined>;
  logFollowers(runId: string): Promise<LogFollower[]>;
  unfollowLogs(runId: string, connectionId: string): Promise<void>;
  followRuns(accountId: string, follower: RunsFollower, expiresAt: Date): Promise<void>;
  runsFollowers(accountId: string): Promise<RunsFollower[]>;
  unfollowRuns(accountId: string, connectionId: string): Promise<void>;
}

/** Messages to a WebSocket connection; a connection that is gone says so instead of failing. */
export interface ConnectionSender {
  send(connectionId: string, message: unknown): Promise<'sent' | 'gone'>;
}

/** Webhook deliveries already acted on, for effects that have no record of their own to be idempotent by. */
export interface WebhookDeliveries {
  /** True the first time a delivery id is seen within `keepSeconds`; false for the same delivery again. */
  firstTime(deliveryId: string, keepSeconds: number): Promise<boolean>;
}

/** The run metrics (shared/domain/run-metrics.ts), published with the run they are about, if one. */
export interface RunMetricsPublisher {
  publish(run: { runId: string; accountId?: string } | undefined, metrics: readonly RunMetric[]): void;
}

/** Requests counted per caller in shared windows (shared/domain/throttle.ts), across every instance. */
export interface RequestCounter {
  /** Counts one request of `callerKey` in `window`; answers the window's count with it. */
  count(callerKey: string, window: RequestWindow): Promise<number>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type { AgentEvent, ExitReason, GitCredential, PodResult, PullRequest, Run };
