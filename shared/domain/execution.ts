import { type ApprovalOutcome, type CheckpointSignal, historyEntryOf } from './approval.js';
import type { Ending } from './commands.js';
import type { ExitReason, PodResult } from './run.js';

/**
 * What a run's path through the state machine means: the state its last step (Finalize) receives,
 * and the ending it implies. Pure; the ASL names these paths (`$.checks`, `$.pod`, `$.error`, ...).
 */
export interface ExecutionState {
  runId: string;
  checks?: { ok: boolean; exitReason: ExitReason | null; message: string | null };
  launch?: { tasks?: { TaskArn?: string }[]; failures?: { Reason?: string }[] };
  launchError?: { Error?: string; Cause?: string };
  retry?: { retry: boolean; attempt: number };
  pod?: PodResult | CheckpointSignal;
  /** the last decision that reached the state machine */
  approval?: ApprovalOutcome;
  error?: { Error?: string; Cause?: string };
}

/** A Lambda error's cause is its JSON error object; its message is what people need to read. */
const causeMessage = (cause: string | undefined): string | undefined => {
  if (!cause) return undefined;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    return typeof parsed.errorMessage === 'string' ? parsed.errorMessage : cause;
  } catch {
    return cause;
  }
};

const caughtError = (error: NonNullable<ExecutionState['error']>): Ending => {
  const message = causeMessage(error.Cause);
  switch (error.Error) {
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
        checkpoint: { expired: true },
      };
    default:
      return { to: 'FAILED', exitReason: 'error', message: message ?? error.Error };
  }
};

/** The ending the path through the state machine implies; `end` then makes it one the run can take. */
export const endingOf = (state: ExecutionState): Ending => {
  if (state.error) return caughtError(state.error);
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
      checkpoint: { decided: historyEntryOf(state.approval) },
    };
  }
  if (state.pod?.outcome === 'completed')
    return { to: 'COMPLETED', exitReason: 'completed', message: state.pod.message };
  if (state.pod?.outcome === 'failed') {
    return { to: 'FAILED', exitReason: state.pod.exitReason ?? 'error', message: state.pod.message };
  }
  return { to: 'FAILED', exitReason: 'error', message: 'the execution ended without an outcome' };
};

/**
 * The ending of a run whose execution itself ended abnormally (failed, timed out, aborted), so that
 * Finalize never ran or did not finish.
 */
export const endingOfExecution = (status: string, error?: string, cause?: string): Ending => {
  switch (status) {
    case 'TIMED_OUT':
      return { to: 'FAILED', exitReason: 'timed_out', message: 'the execution timed out' };
    case 'ABORTED':
      return { to: 'STOPPED', exitReason: 'stopped', message: 'the execution was aborted' };
    case 'SUCCEEDED':
      return { to: 'FAILED', exitReason: 'error', message: 'the execution ended without ending the run' };
    default: {
      const why = [error, cause].filter(Boolean).join(' ');
      return {
        to: 'FAILED',
        exitReason: 'error',
        message: `the execution ${status.toLowerCase()}${why ? `: ${why}` : ''}`,
      };
    }
  }
};

/** The reason a launch failed, from either the 200 answer's failures or the caught error. */
export const launchFailureReason = (state: Pick<ExecutionState, 'launch' | 'launchError'>): string => {
  const failure = state.launch?.failures?.[0];
  if (failure?.Reason) return failure.Reason;
  if (state.launchError?.Error) return `${state.launchError.Error}: ${state.launchError.Cause ?? ''}`.trim();
  return 'no task was started';
};
