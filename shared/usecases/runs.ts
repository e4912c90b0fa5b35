import { close, redrive, stop } from '../domain/commands.js';
import { ForbiddenError, NotFoundError, ServiceUnavailableError, ValidationError } from '../domain/errors.js';
import { newRunId } from '../domain/ids.js';
import { type Run, ZERO_COST } from '../domain/run.js';
import { type Caller, canView, hasProjectRole, type Project, type ProjectRole } from '../domain/tenancy.js';
import type {
  Clock,
  DirectoryRepository,
  RunConfigSnapshot,
  RunList,
  RunQueue,
  RunStore,
  Sandbox,
  TaskSignals,
} from '../ports.js';
import type { DispatchRequest, ListQuery } from '../schemas/api.js';
import { carryOut } from './carry-out.js';
import { type CursorDeps, PageCursors } from './cursor.js';

export interface RunCommandDeps {
  runs: RunStore;
  list: RunList;
  directory: DirectoryRepository;
  queue: RunQueue;
  signals: TaskSignals;
  sandbox: Sandbox;
  clock: Clock;
  /** told when a run ends without an execution to finalize it (stopped while queued) */
  tellEnded?: (run: Run) => Promise<void>;
}

/** Runs and projects of other tenants do not exist for the caller. */
const ownRun = async (runs: RunStore, caller: Caller, runId: string): Promise<Run> => {
  const run = await runs.get(runId);
  if (!run || run.accountId !== caller.accountId) throw new NotFoundError('run', runId);
  return run;
};

/** The caller's project, when they hold `role` in it (shared by every use case on a project's things). */
export const projectWithRole = async (
  directory: DirectoryRepository,
  caller: Caller,
  projectId: string,
  role: ProjectRole,
): Promise<Project> => {
  const project = await directory.getProject(caller.accountId, projectId);
  if (!project) throw new NotFoundError('project', projectId);
  if (!hasProjectRole(project, caller, role)) {
    throw new ForbiddenError(`this needs the ${role} role in project ${projectId}`);
  }
  return project;
};

const newRun = (
  fields: Pick<
    Run,
    'accountId' | 'projectId' | 'itemId' | 'podId' | 'mode' | 'source' | 'attribution' | 'repos'
  > &
    Partial<Pick<Run, 'gitHubIssue'>> & {
      replayOf?: string;
    },
  now: Date,
  runId = newRunId(now.getTime()),
): Run => ({
  ...fields,
  runId,
  status: 'QUEUED',
  history: [{ status: 'QUEUED', at: now.toISOString() }],
  usage: {},
  cost: { ...ZERO_COST },
  artifacts: [],
  attempt: 1,
  redriveCount: 0,
  lastSeq: 0,
  version: 1,
  createdAt: now.toISOString(),
  updatedAt: now.toISOString(),
});

/**
 * Put a queued run on the queue. If the queue is unavailable the run stays QUEUED and the sweeper
 * enqueues it later; the caller learns it with a 503 that names the run.
 */
const enqueue = async (deps: Pick<RunCommandDeps, 'queue'>, run: Run): Promise<void> => {
  try {
    await deps.queue.enqueue(run.runId);
  } catch (err) {
    throw new ServiceUnavailableError(
      'the run was recorded but could not be queued yet; it will be retried',
      {
        runId: run.runId,
        cause: err instanceof Error ? err.name : 'unknown',
      },
    );
  }
};

const dispatcherOf = (caller: Caller): RunConfigSnapshot['dispatcher'] =>
  caller.email ? { userId: caller.userId, email: caller.email } : { userId: caller.userId };

/** What a dispatch needs: a schedule's tick dispatches too, without the rest of the run commands' ports. */
export type DispatchDeps = Pick<RunCommandDeps, 'runs' | 'directory' | 'queue' | 'clock'>;

/**
 * `runId`: an id chosen beforehand (a schedule's tick claims it before it dispatches); default, a new
 * one. `gitHubIssue`: the issue a comment or label started the run from, which the run answers on.
 */
export const dispatchRun = async (
  deps: DispatchDeps,
  caller: Caller,
  projectId: string,
  request: DispatchRequest & Partial<Pick<Run, 'gitHubIssue'>>,
  idempotencyKey?: string,
  runId?: string,
): Promise<{ run: Run; created: boolean }> => {
  // both reads at once: a dispatch waits for one round trip to DynamoDB fewer
  const [project, pod] = await Promise.all([
    projectWithRole(deps.directory, caller, projectId, 'member'),
    deps.directory.getPod(caller.accountId, request.podId),
  ]);
  if (!pod) throw new ValidationError(`unknown pod ${request.podId}`, { podId: request.podId });
  if (request.config?.demo && pod.agent.kind !== 'demo') {
    throw new ValidationError(`config.demo scripts the demo agent; pod ${pod.podId} runs ${pod.agent.kind}`, {
      podId: pod.podId,
    });
  }
  const repos = [...new Set([...project.repos, ...(request.repos ?? [])])];
  const run = newRun(
    {
      accountId: caller.accountId,
      projectId,
      itemId: request.itemId,
      podId: pod.podId,
      mode: request.mode,
      source: request.source,
      attribution: request.attribution ?? caller.userId,
      repos,
      ...(request.gitHubIssue === undefined ? {} : { gitHubIssue: request.gitHubIssue }),
    },
    deps.clock.now(),
    runId,
  );
  const snapshot: RunConfigSnapshot = {
    prompt: request.prompt,
    repos,
    pod,
    ...(request.ref === undefined ? {} : { ref: request.ref }),
    dispatcher: dispatcherOf(caller),
    request: { itemId: request.itemId, podId: request.podId, mode: request.mode, source: request.source },
    demo: request.config?.demo,
  };
  const result = await deps.runs.create(run, snapshot, idempotencyKey);
  // A retried dispatch of a run still waiting re-sends its message: starting a run is idempotent.
  if (result.run.status === 'QUEUED') await enqueue(deps, result.run);
  return result;
};

/**
 * A run the caller may read: of their account, in a project they have a role in (account admins read
 * every project). Any other is not found, as another account's is.
 */
export const getRun = async (
  deps: Pick<RunCommandDeps, 'runs' | 'directory'>,
  caller: Caller,
  runId: string,
): Promise<Run> => {
  const run = await ownRun(deps.runs, caller, runId);
  if (caller.accountRole === 'admin') return run;
  const project = await deps.directory.getProject(caller.accountId, run.projectId);
  if (!project || !canView(project, caller)) throw new NotFoundError('run', runId);
  return run;
};

/** The project, when the caller may read it; any other is not found, as another account's is. */
export const viewableProject = async (
  deps: Pick<RunCommandDeps, 'directory'>,
  caller: Caller,
  projectId: string,
): Promise<Project> => {
  const project = await deps.directory.getProject(caller.accountId, projectId);
  if (!project || !canView(project, caller)) throw new NotFoundError('project', projectId);
  return project;
};

/**
 * The projects whose runs the caller may read: undefined for account admins (all of them); for
 * anyone else, those they have a role in.
 */
export const viewableProjectIds = async (
  deps: Pick<RunCommandDeps, 'directory'>,
  caller: Caller,
): Promise<string[] | undefined> => {
  if (caller.accountRole === 'admin') return undefined;
  const projects = await deps.directory.listProjects(caller.accountId);
  return projects.filter((project) => canView(project, caller)).map((project) => project.projectId);
};

/** The frozen config the run executed (and a replay executes again), to whoever may read the run. */
export const getRunConfig = async (
  deps: Pick<RunCommandDeps, 'runs'>,
  caller: Caller,
  runId: string,
): Promise<RunConfigSnapshot> => {
  await ownRun(deps.runs, caller, runId);
  const snapshot = await deps.runs.getSnapshot(runId);
  if (!snapshot) throw new NotFoundError('config snapshot of run', runId);
  return snapshot;
};

export const listRuns = async (
  deps: Pick<RunCommandDeps, 'list' | 'directory'> & CursorDeps,
  caller: Caller,
  query: ListQuery,
  projectId?: string,
): Promise<{ items: Run[]; nextCursor: string | null }> => {
  if (projectId) await viewableProject(deps, caller, projectId);
  // the account's runs, for someone who is not its admin: those of the projects they have a role in
  const projectIds = projectId ? undefined : await viewableProjectIds(deps, caller);
  if (projectIds?.length === 0) return { items: [], nextCursor: null };
  const scope = { a: caller.accountId, p: projectId, s: query.status, src: query.source, pod: query.podId };
  const cursors = new PageCursors(await deps.cursorKey());
  const before = query.cursor ? cursors.decode(scope, query.cursor) : undefined;
  const page = await deps.list.list({
    accountId: caller.accountId,
    projectId,
    ...(projectIds ? { projectIds } : {}),
    statuses: query.status,
    source: query.source,
    podId: query.podId,
    limit: query.limit,
    before,
  });
  return { items: page.items, nextCursor: page.lastRunId ? cursors.encode(scope, page.lastRunId) : null };
};

/** Stop a run mid-flight: STOPPED first (so nothing moves it on), then release the wait and the sandbox. */
export const stopRun = async (deps: RunCommandDeps, caller: Caller, runId: string): Promise<Run> => {
  const run = await ownRun(deps.runs, caller, runId);
  await projectWithRole(deps.directory, caller, run.projectId, 'admin');
  const { run: stopped, changed } = await carryOut(deps.runs, run, (r) =>
    stop(r, caller.userId, deps.clock.now()),
  );
  await releaseSandbox(deps, stopped, 'Run.Stopped', 'the run was stopped');
  // a run with an execution is told by its finalization
  if (changed && !stopped.executionArn && stopped.gitHubIssue) await deps.tellEnded?.(stopped);
  return stopped;
};

/** Settle the wait the state machine has parked on the run with a failure, and stop the task. */
export const releaseSandbox = async (
  deps: Pick<RunCommandDeps, 'runs' | 'signals' | 'sandbox'>,
  run: Run,
  error: string,
  cause: string,
): Promise<void> => {
  const token = (await deps.runs.getWithSecrets(run.runId))?.secrets.podTaskToken;
  if (token) await deps.signals.failTask(token, error, cause);
  if (run.taskArn) await deps.sandbox.stop(run.taskArn, cause);
};

export const closeRun = async (deps: RunCommandDeps, caller: Caller, runId: string): Promise<Run> => {
  const run = await ownRun(deps.runs, caller, runId);
  await projectWithRole(deps.directory, caller, run.projectId, 'admin');
  return (await carryOut(deps.runs, run, (r) => close(r, caller.userId, deps.clock.now()))).run;
};

/** A new run from the same frozen config snapshot. */
export const replayRun = async (deps: RunCommandDeps, caller: Caller, runId: string): Promise<Run> => {
  const original = await ownRun(deps.runs, caller, runId);
  await projectWithRole(deps.directory, caller, original.projectId, 'admin');
  const snapshot = await deps.runs.getSnapshot(runId);
  if (!snapshot) throw new NotFoundError('config snapshot of run', runId);
  const run = newRun(
    {
      accountId: original.accountId,
      projectId: original.projectId,
      itemId: original.itemId,
      podId: original.podId,
      mode: original.mode,
      source: 'replay',
      attribution: caller.userId,
      repos: snapshot.repos,
      replayOf: original.runId,
    },
    deps.clock.now(),
  );
  const { run: created } = await deps.runs.create(run, {
    ...snapshot,
    dispatcher: dispatcherOf(caller),
    request: { ...snapshot.request, source: 'replay' },
  });
  await enqueue(deps, created);
  return created;
};

/** A dead-lettered run goes back on the queue, under a new execution name. */
export const redriveRun = async (deps: RunCommandDeps, caller: Caller, runId: string): Promise<Run> => {
  const run = await ownRun(deps.runs, caller, runId);
  await projectWithRole(deps.directory, caller, run.projectId, 'admin');
  const { run: queued } = await carryOut(deps.runs, run, (r) => redrive(r, caller.userId, deps.clock.now()));
  await enqueue(deps, queued);
  return queued;
};
