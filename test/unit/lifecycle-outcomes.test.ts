import { describe, expect, it } from 'vitest';
import { endingOf, endingOfExecution, launchFailureReason } from '../../shared/domain/execution.js';
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

describe('endingOfExecution: a run whose execution ended abnormally', () => {
  it.each([
    ['TIMED_OUT', 'FAILED', 'timed_out'],
    ['ABORTED', 'STOPPED', 'stopped'],
    ['FAILED', 'FAILED', 'error'],
    ['SUCCEEDED', 'FAILED', 'error'],
  ])('%s → %s / %s', (status, to, exitReason) => {
    expect(endingOfExecution(status)).toMatchObject({ to, exitReason });
  });

  it('says what the execution failed with', () => {
    expect(endingOfExecution('FAILED', 'Lambda.Unknown', 'out of memory').message).toBe(
      'the execution failed: Lambda.Unknown out of memory',
    );
  });
});

describe('launch failures', () => {
  it('reads the reason from the failures of a 200 answer, or from the caught error', () => {
    expect(launchFailureReason({ launch: { failures: [{ Reason: 'RESOURCE:ENI' }] } })).toBe('RESOURCE:ENI');
    expect(
      launchFailureReason({ launchError: { Error: 'ECS.ThrottlingException', Cause: 'Rate exceeded' } }),
    ).toBe('ECS.ThrottlingException: Rate exceeded');
    expect(launchFailureReason({})).toBe('no task was started');
  });

  it('names the log stream as the awslogs driver does', () => {
    expect(logStreamOf('arn:aws:ecs:us-east-1:1:task/cluster/abc123')).toBe('pod/pod/abc123');
  });
});
