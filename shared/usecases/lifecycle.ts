import { createHash } from 'node:crypto';
import type { ApprovalOutcome, CheckpointSignal } from '../domain/approval.js';
import { TransitionRefusedError } from '../domain/errors.js';
import { randomToken } from '../domain/ids.js';
import {
  type ExitReason,
  executionName,
  isTerminal,
  type PodResult,
  type Run,
  type RunStatus,
} from '../domain/run.js';
import { hasSpendCaps, preflight } from '../domain/tenancy.js';
import type {
  Clock,
  DirectoryRepository,
  Orchestrator,
  RunQueue,
  RunRepository,
  Sandbox,
  TaskSignals,
} from '../ports.js';
import { closePendingApproval, pendingCheckpointSignal, settleApprovalOnRun } from './approvals.js';
import { type Pricing, settleRun, trailingSpend } from './spend.js';

/** The state machine's steps and the handlers that catch what it cannot see. */

export interface LifecycleDeps {
  runs: RunRepository;
  directory: DirectoryRepository;
  orchestrator: Orchestrator;
  signals: TaskSignals;
  sandbox: Sandbox;
  queue: RunQueue;
  clock: Clock;
  pricing: Pricing;
}

export const hashAgentToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/** Move a run unless it already moved on; a refusal here means another path got there first. */
const tryTransition = async (
  runs: RunRepository,
  ...args: Parameters<RunRepository['transition']>
): Promise<Run | undefined> => {
  try {
    return await runs.transition(...args);
  } catch (err) {
    if (err instanceof TransitionRefusedError) return undefined;
    throw err;
  }
};

const ended = (run: Run, now: Date) => ({
  completedAt: now.toISOString(),
  durationMs: Math.max(0, now.getTime() - Date.parse(run.startedAt ?? run.createdAt)),
});

/** SQS → Step Functions. A run that is no longer QUEUED (stopped, already started) needs nothing. */
export const startRun = async (
  deps: Pick<LifecycleDeps, 'runs' | 'orchestrator'>,
  runId: string,
): Promise<void> => {
  const run = await deps.runs.get(runId);
  if (run?.status !== 'QUEUED') return;
  const { executionArn } = await deps.orchestrator.start(executionName(run), { runId });
  if (run.executionArn !== executionArn) await deps.runs.update(runId, { executionArn }, ['QUEUED']);
};

/** The queue gave up on this run's message. Only a run still waiting becomes DEAD_LETTER. */
export const markDeadLetter = async (
  deps: Pick<LifecycleDeps, 'runs' | 'clock'>,
  runId: string,
): Promise<boolean> => {
  const run = await deps.runs.get(runId);
  if (!run) return false;
  const moved = await tryTransition(deps.runs, {
    runId,
    to: 'DEAD_LETTER',
    from: ['QUEUED'],
    patch: {
      exitReason: 'dead_letter',
      message: 'the run could not be started after repeated attempts',
      ...ended(run, deps.clock.now()),
    },
  });
  return moved !== undefined;
};

export interface LaunchSettings {
  agentApiUrl: string;
  heartbeatSeconds: number;
}

export interface ChecksResult {
  ok: boolean;
  exitReason: ExitReason | null;
  message: string | null;
  launch: {
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
 * Pre-flight checks. Passing moves the run to PROVISIONING and mints the pod's run-scoped token (only
 * its hash is stored); failing leaves the run QUEUED for Finalize to cancel with the reason.
 */
export const runChecks = async (
  deps: Pick<LifecycleDeps, 'runs' | 'directory' | 'clock'>,
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
  if (run.status !== 'QUEUED' && run.status !== 'PROVISIONING')
    return refuse('cancelled', `run is ${run.status}`);
  const [pod, account] = await Promise.all([
    deps.directory.getPod(run.accountId, run.podId),
    deps.directory.getAccount(run.accountId),
  ]);
  const spend =
    account && hasSpendCaps(account.limits)
      ? await trailingSpend(deps.runs, account.accountId, account.limits, deps.clock.now())
      : undefined;
  const outcome = preflight(pod, account, spend);
  if (!outcome.ok) return refuse(outcome.exitReason, outcome.message);
  const snapshot = await deps.runs.getSnapshot(runId);
  const frozenPod = snapshot?.pod ?? pod;
  if (!frozenPod) return refuse('cancelled', 'the pod no longer exists');
  const token = `${runId}.${randomToken()}`;
  await deps.runs.setAgentTokenHash(runId, hashAgentToken(token));
  if (run.status === 'QUEUED') {
    const moved = await tryTransition(deps.runs, { runId, to: 'PROVISIONING', from: ['QUEUED'] });
    if (!moved) return refuse('cancelled', 'the run left QUEUED before it could be provisioned');
  }
  return {
    ok: true,
    exitReason: null,
    message: null,
    launch: {
      cpu: String(frozenPod.cpu),
      memory: String(frozenPod.memoryMiB),
      environment: [
        { Name: 'RUN_ID', Value: runId },
        { Name: 'AGENT_API_URL', Value: settings.agentApiUrl },
        { Name: 'AGENT_TOKEN', Value: token },
      ],
      maxDurationSeconds: frozenPod.maxDurationSeconds,
      heartbeatSeconds: settings.heartbeatSeconds,
      approvalWindowSeconds: frozenPod.approvalWindowSeconds,
    },
  };
};

/**
 * A launch failed before the agent acted (capacity, ENI, throttling). RETRYING and back off, or give
 * up once the attempts are spent.
 */
export const markRetrying = async (
  deps: Pick<LifecycleDeps, 'runs'>,
  policy: { maxAttempts: number; backoffSeconds: number[] },
  runId: string,
  reason: string,
): Promise<{ retry: boolean; waitSeconds: number; attempt: number }> => {
  const run = await deps.runs.get(runId);
  if (!run || isTerminal(run.status) || run.attempt >= policy.maxAttempts) {
    return { retry: false, waitSeconds: 0, attempt: run?.attempt ?? 0 };
  }
  const attempt = run.attempt + 1;
  const patch = { attempt, message: `launch attempt ${run.attempt} failed: ${reason}`.slice(0, 1000) };
  const moved =
    run.status === 'RETRYING'
      ? await deps.runs.update(runId, patch, ['RETRYING'])
      : await tryTransition(deps.runs, { runId, to: 'RETRYING', from: ['PROVISIONING'], patch });
  if (!moved) return { retry: false, waitSeconds: 0, attempt: run.attempt };
  const waitSeconds = policy.backoffSeconds[Math.min(attempt - 2, policy.backoffSeconds.length - 1)] ?? 0;
  return { retry: true, waitSeconds, attempt };
};

/** The reason a launch failed, from either the 200 answer's failures or the caught error. */
export const launchFailureReason = (state: {
  launch?: { failures?: { Reason?: string; Arn?: string }[] };
  launchError?: { Error?: string; Cause?: string };
}): string => {
  const failure = state.launch?.failures?.[0];
  if (failure?.Reason) return failure.Reason;
  if (state.launchError?.Error) return `${state.launchError.Error}: ${state.launchError.Cause ?? ''}`.trim();
  return 'no task was started';
};

export const logStreamOf = (taskArn: string, prefix = 'pod', container = 'pod'): string =>
  `${prefix}/${container}/${taskArn.split('/').pop() ?? taskArn}`;

/**
 * The pod is launched, or goes on after an approval (`approval`): park the token that ends its wait.
 * A checkpoint or a result that came before the token did, or a stop that already ended the run,
 * settles the token at once, so no signal is lost.
 */
export const parkPod = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals'>,
  input: { runId: string; taskArn: string; taskToken: string; approval?: ApprovalOutcome },
): Promise<void> => {
  // The decision already did this unless its writer died half-way: then the run goes on from here.
  if (input.approval) await settleApprovalOnRun(deps.runs, input.runId, input.approval);
  const current = await deps.runs.get(input.runId);
  if (current?.status === 'RETRYING') {
    await tryTransition(deps.runs, { runId: input.runId, to: 'PROVISIONING', from: ['RETRYING'] });
  }
  await deps.runs.update(input.runId, { taskArn: input.taskArn, logStream: logStreamOf(input.taskArn) });
  const run = await deps.runs.setPodTaskToken(input.runId, input.taskToken);
  const checkpoint = pendingCheckpointSignal(run);
  if (isTerminal(run.status)) {
    await deps.signals.failTask(input.taskToken, 'Run.Ended', `the run is already ${run.status}`);
  } else if (checkpoint) {
    // a person decides before anything else: a result the pod sent meanwhile waits for the next wait
    await deps.signals.succeedTask(input.taskToken, checkpoint);
  } else if (run.result) {
    await deps.signals.succeedTask(input.taskToken, run.result);
  }
};

interface ExecutionState {
  runId: string;
  checks?: { ok: boolean; exitReason: ExitReason | null; message: string | null };
  launch?: { tasks?: { TaskArn?: string }[] };
  retry?: { retry: boolean; attempt: number };
  pod?: PodResult | CheckpointSignal;
  /** the last decision that reached the state machine */
  approval?: ApprovalOutcome;
  error?: { Error?: string; Cause?: string };
}

interface Outcome {
  to: RunStatus;
  exitReason: ExitReason;
  message?: string;
}

const causeMessage = (cause: string | undefined): string | undefined => {
  if (!cause) return undefined;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    return parsed.errorMessage ?? cause;
  } catch {
    return cause;
  }
};

/** What the path through the state machine means for the run. */
export const outcomeOf = (state: ExecutionState): Outcome => {
  if (state.error) {
    const message = causeMessage(state.error.Cause);
    switch (state.error.Error) {
      case 'States.HeartbeatTimeout':
      case 'Pod.Interrupted':
        return { to: 'FAILED', exitReason: 'interrupted', message: message ?? 'the pod stopped reporting' };
      case 'States.Timeout':
        return {
          to: 'FAILED',
          exitReason: 'timed_out',
          message: message ?? 'the run exceeded its maximum duration',
        };
      case 'Run.Stopped':
        return { to: 'STOPPED', exitReason: 'stopped', message };
      // RequestApproval's own timeout, told apart from the pod waits' States.Timeout by the ASL
      case 'Approval.Expired':
        return {
          to: 'ABANDONED',
          exitReason: 'timed_out',
          message: message ?? 'no decision was made within the approval window',
        };
      default:
        return { to: 'FAILED', exitReason: 'error', message: message ?? state.error.Error };
    }
  }
  if (state.checks && !state.checks.ok) {
    return {
      to: 'CANCELLED',
      exitReason: state.checks.exitReason ?? 'cancelled',
      message: state.checks.message ?? undefined,
    };
  }
  if (state.retry && !state.retry.retry) {
    return {
      to: 'FAILED',
      exitReason: 'error',
      message: `no sandbox could be launched after ${state.retry.attempt} attempts`,
    };
  }
  // a cancellation goes straight to Finalize, so it is the last word
  if (state.approval?.decision === 'cancelled') {
    const by = state.approval.by ? ` by ${state.approval.by}` : '';
    return {
      to: 'ABANDONED',
      exitReason: 'abandoned',
      message: `cancelled at the checkpoint ${state.approval.name}${by}`,
    };
  }
  if (state.pod?.outcome === 'completed')
    return { to: 'COMPLETED', exitReason: 'completed', message: state.pod.message };
  if (state.pod?.outcome === 'failed') {
    return { to: 'FAILED', exitReason: state.pod.exitReason ?? 'error', message: state.pod.message };
  }
  return { to: 'FAILED', exitReason: 'error', message: 'the execution ended without an outcome' };
};

/** Always the last step: stop the sandbox, write the terminal status the path implies, settle its cost. */
export const finalizeRun = async (
  deps: Pick<LifecycleDeps, 'runs' | 'sandbox' | 'clock' | 'pricing'>,
  state: ExecutionState,
): Promise<{ status: RunStatus }> => {
  const run = await deps.runs.get(state.runId);
  if (!run) return { status: 'FAILED' };
  const taskArn = run.taskArn ?? state.launch?.tasks?.[0]?.TaskArn;
  await deps.runs.clearPodTaskToken(state.runId);
  // A checkpoint still pending records how it ended: decided, expired, or withdrawn with the run.
  await closePendingApproval(deps.runs, run, {
    decided: state.approval,
    expired: state.error?.Error === 'Approval.Expired',
    at: deps.clock.now().toISOString(),
  });
  let final = run;
  if (!isTerminal(run.status)) {
    const outcome = outcomeOf(state);
    const moved = await tryTransition(deps.runs, {
      runId: run.runId,
      to: outcome.to,
      patch: { exitReason: outcome.exitReason, message: outcome.message, ...ended(run, deps.clock.now()) },
    });
    final = moved ?? (await deps.runs.get(run.runId)) ?? run;
  }
  // Stopped after the terminal status is written: the task-stopped event then finds the run ended and
  // cannot give it another reason (a cancelled or expired approval is not an interrupted pod).
  if (taskArn) await deps.sandbox.stop(taskArn, 'the run is finalized');
  await settleRun(deps, final);
  return { status: final.status };
};

/** A run ends FAILED when its sandbox disappears under it, whatever the state machine is waiting for. */
export const failInterrupted = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  run: Run,
  message: string,
): Promise<void> => {
  const moved = await tryTransition(deps.runs, {
    runId: run.runId,
    to: 'FAILED',
    from: ['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'],
    patch: { exitReason: 'interrupted', message, ...ended(run, deps.clock.now()) },
  });
  if (!moved) return;
  const token = await deps.runs.getPodTaskToken(run.runId);
  if (token) await deps.signals.failTask(token, 'Pod.Interrupted', message);
};

/**
 * A run over its budget or its account's cap ends FAILED / budget_hit at once; settling its pod wait
 * sends the execution to Finalize, which stops the sandbox. Returns the run as it now is.
 */
export const failOverBudget = async (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>,
  run: Run,
  message: string,
): Promise<Run> => {
  const moved = await tryTransition(deps.runs, {
    runId: run.runId,
    to: 'FAILED',
    from: ['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'],
    patch: { exitReason: 'budget_hit', message, ...ended(run, deps.clock.now()) },
  });
  if (!moved) return (await deps.runs.get(run.runId)) ?? run;
  const token = await deps.runs.getPodTaskToken(run.runId);
  if (token) await deps.signals.failTask(token, 'Run.BudgetHit', message);
  return moved;
};

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
  await deps.runs.update(runId, {
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
  deps: Pick<LifecycleDeps, 'runs' | 'sandbox' | 'clock' | 'pricing'>,
  detail: { status: string; input?: string; error?: string; cause?: string },
): Promise<void> => {
  let runId: string | undefined;
  try {
    runId = (JSON.parse(detail.input ?? '{}') as { runId?: string }).runId;
  } catch {
    return;
  }
  if (!runId) return;
  const run = await deps.runs.get(runId);
  if (!run) return;
  if (run.taskArn) await deps.sandbox.stop(run.taskArn, `execution ${detail.status}`);
  await deps.runs.clearPodTaskToken(runId);
  await closePendingApproval(deps.runs, run, { expired: false, at: deps.clock.now().toISOString() });
  // Finalize may never have run, so the cost is settled here too (once, whoever comes first).
  if (isTerminal(run.status)) {
    await settleRun(deps, run);
    return;
  }
  const outcome: Outcome =
    detail.status === 'TIMED_OUT'
      ? { to: 'FAILED', exitReason: 'timed_out', message: 'the execution timed out' }
      : detail.status === 'ABORTED'
        ? { to: 'STOPPED', exitReason: 'stopped', message: 'the execution was aborted' }
        : {
            to: 'FAILED',
            exitReason: 'error',
            message: `the execution failed: ${detail.error ?? ''} ${detail.cause ?? ''}`.trim(),
          };
  // A run that never left the queue cannot fail; it is cancelled instead.
  const moved = await tryTransition(deps.runs, {
    runId,
    to: run.status === 'QUEUED' && outcome.to === 'FAILED' ? 'CANCELLED' : outcome.to,
    patch: {
      exitReason: outcome.exitReason,
      message: outcome.message?.slice(0, 1000),
      ...ended(run, deps.clock.now()),
    },
  });
  await settleRun(deps, moved ?? (await deps.runs.get(runId)) ?? run);
};

/** Re-enqueue runs whose message was lost: QUEUED for longer than a message takes to be picked up. */
export const sweepQueued = async (
  deps: Pick<LifecycleDeps, 'runs' | 'queue' | 'clock'>,
  staleAfterSeconds: number,
  limit = 500,
): Promise<number> => {
  const stale = await deps.runs.listQueuedBefore(
    deps.clock.now().getTime() - staleAfterSeconds * 1000,
    limit,
  );
  for (const run of stale) await deps.queue.enqueue(run.runId);
  return stale.length;
};
