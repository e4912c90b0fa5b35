import type { ExitReason, Phase, PodResult, Run, RunSource, RunStatus } from './domain/run.js';
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
>;

export interface TransitionRequest {
  runId: string;
  to: RunStatus;
  /** restrict further than the lifecycle allows (e.g. only from QUEUED) */
  from?: RunStatus[];
  patch?: RunPatch;
  /** expected version for optimistic locking */
  expectedVersion?: number;
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
  /** Store the hash of the pod's run-scoped token. */
  setAgentTokenHash(runId: string, hash: string): Promise<void>;
  getAgentTokenHash(runId: string): Promise<string | undefined>;
  /** Record agent events; returns which seqs were new. Idempotent per (runId, seq). */
  recordEvents(runId: string, events: AgentEvent[]): Promise<{ accepted: AgentEvent[]; duplicates: number }>;
  advancePhase(runId: string, phase: Phase): Promise<void>;
}

export interface DirectoryRepository {
  getAccount(accountId: string): Promise<Account | undefined>;
  putAccount(account: Account): Promise<void>;
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

export interface Sandbox {
  stop(taskArn: string, reason: string): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type { AgentEvent, ExitReason, PodResult, Run };
