import { createHash } from 'node:crypto';
import { owedSignal } from '../domain/agent-batch.js';
import { type ApprovalOutcome, historyEntryOf } from '../domain/approval.js';
import {
  deadLetter,
  type Ending,
  end,
  fail,
  provision,
  requeue,
  resume,
  retryLaunch,
  waitForSlot,
} from '../domain/commands.js';
import { NotFoundError, TransitionRefusedError } from '../domain/errors.js';
import { type ExecutionState, endingOf, endingOfExecution } from '../domain/execution.js';
import { randomToken } from '../domain/ids.js';
import { type ExitReason, executionName, isTerminal, type Run, type RunStatus } from '../domain/run.js';
import {
  type Account,
  activeRunLimit,
  hasSpendCaps,
  needsOwnTaskDefinition,
  preflight,
  uncoveredRepos,
  waitingForSlot,
} from '../domain/tenancy.js';
import type {
  ActiveRuns,
  Clock,
  DirectoryRepository,
  GitHubApp,
  LogStreamOwners,
  Orchestrator,
  RunList,
  RunQueue,
  RunStore,
  Sandbox,
  SpendLedger,
  TaskSignals,
} from '../ports.js';
import { carryOut } from './carry-out.js';
import { limitBreach, liveSlots, type Pricing, settleRun, spendWithAccrued } from './spend.js';

/** The state machine's steps and the handlers that catch what it cannot see. */

export interface LifecycleDeps {
  runs: RunStore;
  ledger: SpendLedger;
  list: RunList;
  directory: DirectoryRepository;
  orchestrator: Orchestrator;
  signals: TaskSignals;
  sandbox: Sandbox;
  queue: RunQueue;
  clock: Clock;
  pricing: Pricing;
  slots: ActiveRuns;
}

/** Only hashes of the pod's credentials are stored. */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/**
 * What ending a run takes besides its status: the sandbox stopped, the wait released, the cost settled,
 * the active-run slot given back to the run waiting longest for one.
 */
type EndingDeps = Pick<
  LifecycleDeps,
  'runs' | 'ledger' | 'sandbox' | 'clock' | 'pricing' | 'slots' | 'queue'
> & {
  /** told once the run has ended and its cost is settled (the GitHub issue it was started from) */
  tellEnded?: (run: Run) => Promise<void>;
};

/** The run waiting longest for a slot goes back on the queue, to take the one just freed. */
const wake = async (deps: Pick<LifecycleDeps, 'queue'>, runId: string | undefined): Promise<void> => {
  if (runId) await deps.queue.enqueue(runId);
};

/** Given back once the run's cost is settled, so the account's caps count its sandbox throughout. */
const releaseSlot = async (deps: Pick<LifecycleDeps, 'slots' | 'queue'>, run: Run): Promise<void> =>
  wake(deps, await deps.slots.release(run.accountId, run.runId));

/**
 * End a run whose execution is over without having ended it (failed, timed out, aborted, or closed
 * with the run still open): its sandbox goes, its wait is released, it reaches a terminal status and
 * its cost is settled (once, whoever comes first).
 */
export const reconcileRun = async (deps: EndingDeps, run: Run, ending: Ending): Promise<Run> => {
  if (run.taskArn)
    await deps.sandbox.stop(run.taskArn, `the run's execution is over: ${ending.message ?? ''}`);
  await deps.runs.clearPodToken(run.runId);
  const { run: ended, changed } = await carryOut(deps.runs, run, (r) => end(r, ending, deps.clock.now()));
  await settleRun(deps, ended);
  await releaseSlot(deps, ended);
  await tellIfFromIssue(deps, changed, ended);
  return ended;
};

/** A run from an issue that has just ended tells it, with the cost its settlement added. */
const tellIfFromIssue = async (
  deps: Pick<EndingDeps, 'runs' | 'tellEnded'>,
  ended: boolean,
  run: Run,
): Promise<void> => {
  if (ended && deps.tellEnded && run.gitHubIssue) {
    await deps.tellEnded((await deps.runs.get(run.runId)) ?? run);
  }
};

/** The execution, if it is over: a run it left open is ended as reconcile would. */
const endIfExecutionClosed = async (
  deps: EndingDeps & Pick<LifecycleDeps, 'orchestrator'>,
  run: Run,
  executionArn: string,
): Promise<void> => {
  const execution = await deps.orchestrator.describe(executionArn);
  if (!execution || execution.status === 'RUNNING' || execution.status === 'PENDING_REDRIVE') return;
  await reconcileRun(deps, run, endingOfExecution(execution.status, execution.error, execution.cause));
};

/**
 * A slot of the account's active-run limit for a queued run, taken before its execution starts; with
 * none free, the run stays QUEUED saying why, and is woken when one frees. A run whose account or
 * config is gone takes none: its checks will cancel it.
 */
const takeSlot = async (
  deps: Pick<LifecycleDeps, 'runs' | 'directory' | 'slots' | 'clock'>,
  run: Run,
): Promise<boolean> => {
  const [account, snapshot] = await Promise.all([
    deps.directory.getAccount(run.accountId),
    deps.runs.getSnapshot(run.runId),
  ]);
  if (!account || !snapshot) return true;
  const now = deps.clock.now();
  const limit = activeRunLimit(account.limits);
  const { cpu, memoryMiB } = snapshot.pod;
  const slot = { runId: run.runId, since: now.toISOString(), cpu, memoryMiB };
  let taken = await deps.slots.take(run.accountId, slot, limit);
  // all taken: a slot held by a run that has ended (its end could not give it back) is freed, once
  if (!taken && (await liveSlots(deps, run.accountId)).length < limit) {
    taken = await deps.slots.take(run.accountId, slot, limit);
  }
  if (!taken) await carryOut(deps.runs, run, (r) => waitForSlot(r, waitingForSlot(limit), now));
  return taken;
};

/**
 * SQS → Step Functions. A queued run takes a slot of its account's active runs, then gets its
 * execution, named after it, so a redelivered message starts nothing twice. An execution that already
 * exists and is over while its run is still open (Finalize failed, or the run was re-queued after it)
 * is a run to end, not one to leave waiting. A run woken for a slot that ended while it waited hands
 * the wake on.
 */
export const startRun = async (
  deps: EndingDeps & Pick<LifecycleDeps, 'orchestrator' | 'directory'>,
  runId: string,
): Promise<void> => {
  const run = await deps.runs.get(runId);
  if (!run) return;
  if (isTerminal(run.status)) {
    if (run.history.at(-2)?.status === 'QUEUED')
      await wake(deps, await deps.slots.forget(run.accountId, runId));
    return;
  }
  if (run.status !== 'QUEUED') {
    if (run.executionArn) await endIfExecutionClosed(deps, run, run.executionArn);
    return;
  }
  if (!(await takeSlot(deps, run))) return;
  const { executionArn, alreadyExisted } = await deps.orchestrator
    .start(executionName(run), { runId, accountId: run.accountId })
    .catch(async (err: unknown) => {
      // the message is retried and takes the slot again; a run that never starts must not keep it
      await releaseSlot(deps, run);
      throw err;
    });
  if (run.executionArn !== executionArn) await deps.runs.recordFacts(runId, { executionArn });
  if (alreadyExisted) await endIfExecutionClosed(deps, { ...run, executionArn }, executionArn);
};

/** The queue gave up on this run's message. Only a run still waiting becomes DEAD_LETTER. */
export const markDeadLetter = async (
  /** `tellEnded`: no execution ends a DEAD_LETTER run, so no finalization tells its issue */
  deps: Pick<EndingDeps, 'runs' | 'clock' | 'tellEnded'>,
  runId: string,
): Promise<boolean> => {
  const run = await deps.runs.get(runId);
  if (!run) return false;
  const { changed, run: marked } = await carryOut(deps.runs, run, (r) =>
    deadLetter(r, 'the run could not be started after repeated attempts', deps.clock.now()),
  );
  await tellIfFromIssue(deps, changed, marked);
  return changed;
};

export interface LaunchSettings {
  agentApiUrl: string;
  heartbeatSeconds: number;
  /** the stack's pod task definition, launched for a pod that has none of its own */
  stackTaskDefinitionArn: string;
}

export interface ChecksResult {
  ok: boolean;
  exitReason: ExitReason | null;
  message: string | null;
  launch: {
    /** the frozen pod's own task definition, or the stack's */
    taskDefinition: string;
    cpu: string;
    memory: string;
    environment: { Name: string; Value: string }[];
    maxDurationSeconds: number;
    heartbeatSeconds: number;
    /** how long a checkpoint waits for a decision (RequestApproval's timeout) */
    approvalWindowSeconds: number;
  } | null;
}

/**
 * With GitHub as the git provider, each repository of the run must be one its account's installation
 * covers, or the pod could not clone it: said before anything launches. Undefined when all are.
 */
const repoCoverage = async (
  github: GitHubApp | undefined,
  account: Account | undefined,
  repos: string[],
): Promise<string | undefined> => {
  if (!github || !account || repos.length === 0) return undefined;
  const link = account.github;
  if (!link) {
    return `the account has linked no GitHub App installation (PUT /v1/account/github), so ${repos.join(', ')} cannot be cloned`;
  }
  const covered = await github.installation(link.installationId).then(
    (installation) => installation.repos,
    (err: unknown) => {
      if (err instanceof NotFoundError) return [];
      throw err;
    },
  );
  const missing = uncoveredRepos(repos, covered);
  return missing.length > 0
    ? `the GitHub App installation ${link.installationId} (${link.login}) does not cover ${missing.join(', ')}`
    : undefined;
};

/**
 * Pre-flight checks, before the first launch and before each relaunch. Passing moves the run to
 * PROVISIONING and sets the one-time code the launched pod exchanges for its run-scoped token (only
 * hashes are stored; the code is spent within seconds, so the execution history holds nothing that
 * still works). Failing, or a run that ended meanwhile (stopped during a back-off), launches nothing.
 */
export const runChecks = async (
  deps: Pick<LifecycleDeps, 'runs' | 'ledger' | 'directory' | 'clock' | 'slots' | 'pricing'> & {
    github?: GitHubApp;
  },
  settings: LaunchSettings,
  runId: string,
): Promise<ChecksResult> => {
  const refuse = (exitReason: ExitReason, message: string): ChecksResult => ({
    ok: false,
    exitReason,
    message,
    launch: null,
  });
  const run = await deps.runs.get(runId);
  if (!run) return refuse('error', `run ${runId} does not exist`);
  if (isTerminal(run.status)) return refuse('cancelled', `the run is ${run.status}`);
  const [pod, account] = await Promise.all([
    deps.directory.getPod(run.accountId, run.podId),
    deps.directory.getAccount(run.accountId),
  ]);
  const spend =
    account && hasSpendCaps(account.limits)
      ? await spendWithAccrued(deps, account, { runId, unsettled: 0 }, deps.clock.now())
      : undefined;
  const outcome = preflight(pod, account, spend);
  if (!outcome.ok) return refuse(outcome.exitReason, outcome.message);
  const notCovered = await repoCoverage(deps.github, account, run.repos);
  if (notCovered) return refuse('missing_repo_access', notCovered);
  const snapshot = await deps.runs.getSnapshot(runId);
  const frozenPod = snapshot?.pod ?? pod;
  if (!frozenPod) return refuse('cancelled', 'the pod no longer exists');
  // Saved before its own task definition was registered: the stack's would run it without its image
  // or its secrets.
  if (needsOwnTaskDefinition(frozenPod) && !frozenPod.taskDefinitionArn) {
    return refuse(
      'cancelled',
      `pod ${frozenPod.podId} has its own image or secrets but no task definition registered for them; save the pod again (PUT /v1/pods/${frozenPod.podId}) and dispatch anew`,
    );
  }
  try {
    await carryOut(deps.runs, run, (r) => provision(r, deps.clock.now()));
  } catch (err) {
    if (!(err instanceof TransitionRefusedError)) throw err;
    return refuse('cancelled', `the run is ${err.current ?? 'gone'}; nothing was launched`);
  }
  const code = randomToken();
  await deps.runs.setLaunchCode(runId, hashSecret(code));
  return {
    ok: true,
    exitReason: null,
    message: null,
    launch: {
      taskDefinition: frozenPod.taskDefinitionArn ?? settings.stackTaskDefinitionArn,
      cpu: String(frozenPod.cpu),
      memory: String(frozenPod.memoryMiB),
      environment: [
        { Name: 'RUN_ID', Value: runId },
        { Name: 'AGENT_API_URL', Value: settings.agentApiUrl },
        { Name: 'AGENT_LAUNCH_CODE', Value: code },
      ],
      maxDurationSeconds: frozenPod.maxDurationSeconds,
      heartbeatSeconds: settings.heartbeatSeconds,
      approvalWindowSeconds: frozenPod.approvalWindowSeconds,
    },
  };
};

/**
 * A launch failed before the agent acted (capacity, ENI, throttling). RETRYING and back off (Checks
 * run again before the relaunch), or give up once the attempts are spent.
 */
export const markRetrying = async (
  deps: Pick<LifecycleDeps, 'runs' | 'clock'>,
  policy: { maxAttempts: number; backoffSeconds: readonly number[] },
  runId: string,
  reason: string,
): Promise<{ retry: boolean; waitSeconds: number; attempt: number }> => {
  let decision: ReturnType<typeof retryLaunch> = { retry: false, attempt: 0 };
  const run = await deps.runs.get(runId);
  if (run) {
    await carryOut(deps.runs, run, (r) => {
      decision = retryLaunch(r, policy, reason, deps.clock.now());
      return decision.retry ? decision.transition : undefined;
    });
  }
  const { retry, attempt } = decision;
  if (!retry) return { retry, waitSeconds: 0, attempt };
  const waitSeconds = policy.backoffSeconds[Math.min(attempt - 2, policy.backoffSeconds.length - 1)] ?? 0;
  return { retry, waitSeconds, attempt };
};

/** How long a stream's run is remembered: a pod writes only while its run lasts, far less than this. */
const LOG_STREAM_OWNER_DAYS = 30;

export const logStreamOf = (taskArn: string, prefix = 'pod', container = 'pod'): string =>
  `${prefix}/${container}/${taskArn.split('/').pop() ?? taskArn}`;

/**
 * The pod is launched, or goes on after an approval (`approval`): park the token that ends its wait.
 * Whatever the state machine is owed already (a checkpoint or a result that came before the token
 * did), or a run that already ended, settles the token at once, so no signal is lost.
 */
export const parkPod = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'> & { logStreams: LogStreamOwners },
  input: { runId: string; taskArn: string; taskToken: string; approval?: ApprovalOutcome },
): Promise<void> => {
  const { approval } = input;
  // The decision already did this unless its writer died half-way: then the run goes on from here.
  if (approval?.decision === 'approved') {
    await carryOut(deps.runs, input.runId, (r) => resume(r, historyEntryOf(approval), deps.clock.now()));
  }
  const logStream = logStreamOf(input.taskArn);
  await deps.runs.recordFacts(input.runId, { taskArn: input.taskArn, logStream });
  // after the run names its stream, so a delivery that finds the stream's run finds the run reading it
  await deps.logStreams.rememberLogStream(
    logStream,
    input.runId,
    new Date(deps.clock.now().getTime() + LOG_STREAM_OWNER_DAYS * 86_400_000),
  );
  const { run } = await deps.runs.parkPodToken(input.runId, input.taskToken);
  if (isTerminal(run.status)) {
    await deps.signals.failTask(input.taskToken, 'Run.Ended', `the run is already ${run.status}`);
    return;
  }
  const owed = owedSignal(run);
  if (owed) await deps.signals.succeedTask(input.taskToken, owed);
};

/**
 * Always the last step: write the terminal status the path implies (one the run can take from where
 * it is), release the wait, stop the sandbox, settle the cost. A run still not terminal after that is
 * an error: the execution then fails and reconcile ends the run.
 */
export const finalizeRun = async (
  deps: EndingDeps,
  state: ExecutionState,
): Promise<{ status: RunStatus | null }> => {
  const found = await deps.runs.get(state.runId);
  if (!found) return { status: null };
  const { run } = await carryOut(deps.runs, found, (r) => end(r, endingOf(state), deps.clock.now()));
  if (!isTerminal(run.status)) throw new Error(`run ${run.runId} is still ${run.status} after Finalize`);
  await deps.runs.clearPodToken(run.runId);
  // Stopped after the terminal status is written: the task-stopped event then finds the run ended and
  // cannot give it another reason (a cancelled or expired approval is not an interrupted pod).
  const taskArn = run.taskArn ?? state.launch?.tasks?.[0]?.TaskArn;
  if (taskArn) await deps.sandbox.stop(taskArn, 'the run is finalized');
  await settleRun(deps, run);
  await releaseSlot(deps, run);
  // whoever ended the run, its finalization tells the issue
  await tellIfFromIssue(deps, true, run);
  return { status: run.status };
};

/**
 * A run that must end while an execution waits on it (its sandbox is gone, a limit is reached): it
 * ends FAILED at once, and the wait the state machine has parked on it is failed, so Finalize runs.
 */
const failWithWait = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  run: Run,
  why: { exitReason: 'interrupted' | 'budget_hit'; error: string; message: string },
): Promise<Run> => {
  const { run: after, changed } = await carryOut(deps.runs, run, (r) =>
    fail(r, why.exitReason, why.message, deps.clock.now()),
  );
  if (!changed) return after;
  const token = (await deps.runs.getWithSecrets(run.runId))?.secrets.podTaskToken;
  if (token) await deps.signals.failTask(token, why.error, why.message);
  return after;
};

/** The run's sandbox disappeared under it, whatever the state machine is waiting for. */
export const failInterrupted = (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  run: Run,
  message: string,
) => failWithWait(deps, run, { exitReason: 'interrupted', error: 'Pod.Interrupted', message });

/** A run over its budget or its account's cap; returns the run as it now is. */
export const failOverBudget = (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  run: Run,
  message: string,
) => failWithWait(deps, run, { exitReason: 'budget_hit', error: 'Run.BudgetHit', message });

export interface TaskStoppedDetail {
  taskArn: string;
  startedBy?: string;
  stopCode?: string;
  stoppedReason?: string;
  containers?: { name?: string; exitCode?: number }[];
}

/** ECS says the task stopped: record the facts; a run still waiting on it was interrupted. */
export const onPodStopped = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  detail: TaskStoppedDetail,
): Promise<void> => {
  const runId = detail.startedBy;
  if (!runId) return;
  const run = await deps.runs.get(runId);
  // A stale task from an earlier launch attempt says nothing about the current one.
  if (!run || (run.taskArn && run.taskArn !== detail.taskArn)) return;
  const exitCode = detail.containers?.find((c) => c.exitCode !== undefined)?.exitCode;
  await deps.runs.recordFacts(runId, {
    stopCode: detail.stopCode,
    stoppedReason: detail.stoppedReason,
    containerExitCode: exitCode,
  });
  if (isTerminal(run.status) || run.result) return;
  await failInterrupted(
    deps,
    run,
    `the sandbox stopped (${detail.stopCode ?? 'unknown'}: ${detail.stoppedReason ?? 'no reason'}${exitCode === undefined ? '' : `, exit code ${exitCode}`})`,
  );
};

/** The execution itself failed, timed out or was aborted: the run must still end, and its sandbox go. */
export const reconcileExecution = async (
  deps: EndingDeps,
  detail: { status: string; executionArn?: string; input?: string; error?: string; cause?: string },
): Promise<void> => {
  let runId: string | undefined;
  try {
    runId = (JSON.parse(detail.input ?? '{}') as { runId?: string }).runId;
  } catch {
    return;
  }
  if (typeof runId !== 'string') return;
  const run = await deps.runs.get(runId);
  // An earlier execution of a redriven run says nothing about the current one.
  if (!run || (detail.executionArn && run.executionArn && run.executionArn !== detail.executionArn)) return;
  await reconcileRun(deps, run, endingOfExecution(detail.status, detail.error, detail.cause));
};

/** The oldest run not ended, and how long ago it was created (0 seconds when every run has ended). */
export const oldestActiveRun = async (
  deps: Pick<LifecycleDeps, 'list' | 'clock'>,
): Promise<{ run: Run | undefined; ageSeconds: number }> => {
  const run = await deps.list.oldestActive();
  const ageMs = run ? deps.clock.now().getTime() - Date.parse(run.createdAt) : 0;
  return { run, ageSeconds: Math.max(0, Math.floor(ageMs / 1000)) };
};

/**
 * Re-enqueue runs whose message was lost: QUEUED for longer than a message takes to be picked up. Each
 * is re-queued a bounded number of times, then dead-lettered with the reason. A run waiting for a slot
 * of its account lost nothing: it is woken to try again, uncounted, in case a wake went astray.
 */
export const sweepQueued = async (
  deps: Pick<LifecycleDeps, 'runs' | 'list' | 'queue' | 'clock'>,
  policy: { staleAfterSeconds: number; maxRequeues: number },
  limit = 500,
): Promise<{ requeued: number; deadLettered: number; woken: number }> => {
  const now = deps.clock.now();
  const stale = await deps.list.listQueuedBefore(now.getTime() - policy.staleAfterSeconds * 1000, limit);
  let requeued = 0;
  let deadLettered = 0;
  let woken = 0;
  for (const found of stale) {
    if (found.waitingFor) {
      await deps.queue.enqueue(found.runId);
      woken += 1;
      continue;
    }
    const why = found.executionArn
      ? `its execution ${found.executionArn} did not take it out of the queue`
      : 'no execution was started for it: its queue messages were lost or failed';
    const { run, changed } = await carryOut(deps.runs, found, (r) => requeue(r, policy, why, now));
    if (!changed) continue;
    if (run.status === 'QUEUED') {
      await deps.queue.enqueue(run.runId);
      requeued += 1;
    } else deadLettered += 1;
  }
  return { requeued, deadLettered, woken };
};

/**
 * The budget checks of paused runs whose pods stopped asking for control (each ask checks them too):
 * a run paused past its budget or its account's cap ends FAILED / budget_hit, and the wait it is
 * parked on fails, so Finalize stops its sandbox.
 */
export const checkPausedRuns = async (
  deps: Pick<
    LifecycleDeps,
    'runs' | 'list' | 'ledger' | 'directory' | 'pricing' | 'signals' | 'clock' | 'slots'
  >,
  limit = 500,
): Promise<{ checked: number; failed: number }> => {
  const paused = await deps.list.listAwaitingApproval(limit);
  let failed = 0;
  for (const run of paused) {
    const breach = await limitBreach(deps, run, true);
    if (breach && (await failOverBudget(deps, run, breach)).status === 'FAILED') failed += 1;
  }
  return { checked: paused.length, failed };
};
