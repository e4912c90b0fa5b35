import { describe, expect, it } from 'vitest';
import type { ApprovalOutcome } from '../../shared/domain/approval.js';
import type { Ending } from '../../shared/domain/commands.js';
import {
  type ExecutionState,
  endingOf,
  endingOfExecution,
  launchFailureReason,
} from '../../shared/domain/execution.js';
import { logStreamOf } from '../../shared/usecases/lifecycle.js';

describe('endingOf: what the path through the state machine means for the run', () => {
  it.each([
    [{ runId: 'r', pod: { outcome: 'completed' as const } }, 'COMPLETED', 'completed'],
    [
      { runId: 'r', pod: { outcome: 'failed' as const, exitReason: 'tool_call_failed' as const } },
      'FAILED',
      'tool_call_failed',
    ],
    [{ runId: 'r', pod: { outcome: 'failed' as const } }, 'FAILED', 'error'],
    [{ runId: 'r', error: { Error: 'States.HeartbeatTimeout' } }, 'FAILED', 'interrupted'],
    [{ runId: 'r', error: { Error: 'Pod.Interrupted', Cause: 'gone' } }, 'FAILED', 'interrupted'],
    [{ runId: 'r', error: { Error: 'States.Timeout' } }, 'FAILED', 'timed_out'],
    [{ runId: 'r', error: { Error: 'Run.Stopped' } }, 'STOPPED', 'stopped'],
    [{ runId: 'r', error: { Error: 'States.TaskFailed' } }, 'FAILED', 'error'],
    [
      { runId: 'r', checks: { ok: false, exitReason: 'payment_required' as const, message: 'no card' } },
      'CANCELLED',
      'payment_required',
    ],
    [
      {
        runId: 'r',
        checks: { ok: true, exitReason: null, message: null },
        retry: { retry: false, attempt: 3 },
      },
      'FAILED',
      'error',
    ],
    [{ runId: 'r' }, 'FAILED', 'error'],
  ])('%j → %s / %s', (state, status, exitReason) => {
    const outcome = endingOf(state);
    expect(outcome.to).toBe(status);
    expect(outcome.exitReason).toBe(exitReason);
  });

  it('prefers a caught error over an earlier pod result', () => {
    expect(
      endingOf({ runId: 'r', pod: { outcome: 'completed' }, error: { Error: 'States.Timeout' } }).to,
    ).toBe('FAILED');
  });

  it("reads a Lambda error's message out of its JSON cause", () => {
    const cause = JSON.stringify({ errorType: 'Error', errorMessage: 'boom' });
    expect(endingOf({ runId: 'r', error: { Error: 'Error', Cause: cause } }).message).toBe('boom');
  });
});

describe('endingOf: the whole ending, message and checkpoint included', () => {
  const cancelled: ApprovalOutcome = {
    approvalId: 'a1',
    seq: 4,
    name: 'plan',
    summary: 's',
    requestedAt: 't0',
    decision: 'cancelled',
    at: 't1',
    by: 'alice',
    via: 'api',
    podSecondsLeft: 600,
  };
  const { podSecondsLeft: _left, ...cancelledEntry } = cancelled;
  const lambdaCause = (errorMessage: unknown) => JSON.stringify({ errorType: 'Error', errorMessage });

  it.each<[string, Omit<ExecutionState, 'runId'>, Ending]>([
    [
      'a lost heartbeat',
      { error: { Error: 'States.HeartbeatTimeout' } },
      { to: 'FAILED', exitReason: 'interrupted', message: 'the pod stopped reporting' },
    ],
    [
      'an interrupted pod, with the cause as text',
      { error: { Error: 'Pod.Interrupted', Cause: 'the task stopped' } },
      { to: 'FAILED', exitReason: 'interrupted', message: 'the task stopped' },
    ],
    [
      'a timeout',
      { error: { Error: 'States.Timeout' } },
      { to: 'FAILED', exitReason: 'timed_out', message: 'the run exceeded its maximum duration' },
    ],
    [
      'a timeout with a Lambda error as cause',
      { error: { Error: 'States.Timeout', Cause: lambdaCause('too slow') } },
      { to: 'FAILED', exitReason: 'timed_out', message: 'too slow' },
    ],
    ['a stop', { error: { Error: 'Run.Stopped' } }, { to: 'STOPPED', exitReason: 'stopped' }],
    [
      'a stop with its cause',
      { error: { Error: 'Run.Stopped', Cause: 'stopped by alice' } },
      { to: 'STOPPED', exitReason: 'stopped', message: 'stopped by alice' },
    ],
    [
      'an approval window that passed',
      { error: { Error: 'Approval.Expired' } },
      {
        to: 'ABANDONED',
        exitReason: 'timed_out',
        message: 'no decision was made within the approval window',
        checkpoint: { expired: true },
      },
    ],
    [
      'any other error, named',
      { error: { Error: 'States.TaskFailed' } },
      { to: 'FAILED', exitReason: 'error', message: 'States.TaskFailed' },
    ],
    [
      'an error whose JSON cause has no message, as the cause text',
      { error: { Error: 'States.TaskFailed', Cause: '{"errorType":"Error"}' } },
      { to: 'FAILED', exitReason: 'error', message: '{"errorType":"Error"}' },
    ],
    [
      'an error whose JSON cause has a message that is not text, as the cause text',
      { error: { Error: 'States.TaskFailed', Cause: lambdaCause(42) } },
      { to: 'FAILED', exitReason: 'error', message: lambdaCause(42) },
    ],
    [
      'an error with an empty cause, by its name',
      { error: { Error: 'States.TaskFailed', Cause: '' } },
      { to: 'FAILED', exitReason: 'error', message: 'States.TaskFailed' },
    ],
    [
      'failed checks, with their reason and message',
      { checks: { ok: false, exitReason: 'payment_required', message: 'no card' } },
      { to: 'CANCELLED', exitReason: 'payment_required', message: 'no card' },
    ],
    [
      'failed checks without a reason',
      { checks: { ok: false, exitReason: null, message: null } },
      { to: 'CANCELLED', exitReason: 'cancelled' },
    ],
    [
      'launch attempts spent',
      { retry: { retry: false, attempt: 3 } },
      { to: 'FAILED', exitReason: 'error', message: 'no sandbox could be launched after 3 attempts' },
    ],
    [
      'a completion after a retried launch',
      { retry: { retry: true, attempt: 2 }, pod: { outcome: 'completed', message: 'done' } },
      { to: 'COMPLETED', exitReason: 'completed', message: 'done' },
    ],
    [
      'a cancellation at a checkpoint',
      { approval: cancelled, pod: { outcome: 'completed' } },
      {
        to: 'ABANDONED',
        exitReason: 'abandoned',
        message: 'cancelled at the checkpoint plan by alice',
        checkpoint: { decided: cancelledEntry },
      },
    ],
    [
      'a cancellation with no one named',
      { approval: { ...cancelled, by: undefined } },
      {
        to: 'ABANDONED',
        exitReason: 'abandoned',
        message: 'cancelled at the checkpoint plan',
        checkpoint: { decided: { ...cancelledEntry, by: undefined } },
      },
    ],
    [
      'a completion after an approval',
      { approval: { ...cancelled, decision: 'approved' }, pod: { outcome: 'completed' } },
      { to: 'COMPLETED', exitReason: 'completed' },
    ],
    [
      'a pod failure, with its message',
      { pod: { outcome: 'failed', exitReason: 'budget_hit', message: 'over budget' } },
      { to: 'FAILED', exitReason: 'budget_hit', message: 'over budget' },
    ],
    [
      'no outcome',
      {},
      { to: 'FAILED', exitReason: 'error', message: 'the execution ended without an outcome' },
    ],
  ])('ends %s', (_, state, ending) => {
    expect(endingOf({ runId: 'r', ...state })).toEqual(ending);
  });
});

describe('endingOfExecution: a run whose execution ended abnormally', () => {
  it.each([
    ['TIMED_OUT', 'FAILED', 'timed_out'],
    ['ABORTED', 'STOPPED', 'stopped'],
    ['FAILED', 'FAILED', 'error'],
    ['SUCCEEDED', 'FAILED', 'error'],
  ])('%s → %s / %s', (status, to, exitReason) => {
    expect(endingOfExecution(status)).toMatchObject({ to, exitReason });
  });

  it.each([
    ['TIMED_OUT', undefined, undefined, 'the execution timed out'],
    ['ABORTED', undefined, undefined, 'the execution was aborted'],
    ['SUCCEEDED', undefined, undefined, 'the execution ended without ending the run'],
    ['FAILED', 'Lambda.Unknown', 'out of memory', 'the execution failed: Lambda.Unknown out of memory'],
    ['FAILED', 'Lambda.Unknown', undefined, 'the execution failed: Lambda.Unknown'],
    ['FAILED', undefined, 'out of memory', 'the execution failed: out of memory'],
    ['FAILED', undefined, undefined, 'the execution failed'],
  ])(
    'says why an execution that %s (error %s, cause %s) ended the run: %s',
    (status, error, cause, message) => {
      expect(endingOfExecution(status, error, cause).message).toBe(message);
    },
  );
});

describe('launch failures', () => {
  it('reads the reason from the failures of a 200 answer, or from the caught error', () => {
    expect(launchFailureReason({ launch: { failures: [{ Reason: 'RESOURCE:ENI' }] } })).toBe('RESOURCE:ENI');
    expect(
      launchFailureReason({ launchError: { Error: 'ECS.ThrottlingException', Cause: 'Rate exceeded' } }),
    ).toBe('ECS.ThrottlingException: Rate exceeded');
    expect(launchFailureReason({})).toBe('no task was started');
  });

  it.each<[string, string, Parameters<typeof launchFailureReason>[0]]>([
    ['a started task', 'no task was started', { launch: { tasks: [{ TaskArn: 'arn:task' }] } }],
    ['no failure listed', 'no task was started', { launch: { failures: [] } }],
    ['a failure without a reason', 'no task was started', { launch: { failures: [{}] } }],
    ['an error without a cause', 'ECS.ServerException:', { launchError: { Error: 'ECS.ServerException' } }],
    ['a cause without an error', 'no task was started', { launchError: { Cause: 'Rate exceeded' } }],
    [
      'a failure and an error',
      'AGENT',
      { launch: { failures: [{ Reason: 'AGENT' }] }, launchError: { Error: 'E', Cause: 'c' } },
    ],
  ])('reads %s as: %s', (_, reason, state) => {
    expect(launchFailureReason(state)).toBe(reason);
  });

  it('names the log stream as the awslogs driver does', () => {
    expect(logStreamOf('arn:aws:ecs:us-east-1:1:task/cluster/abc123')).toBe('pod/pod/abc123');
  });
});
