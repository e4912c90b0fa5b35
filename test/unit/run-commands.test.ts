import { describe, expect, it } from 'vitest';
import type { ApprovalHistoryEntry } from '../../shared/domain/approval.js';
import {
  close,
  deadLetter,
  end,
  endingPath,
  fail,
  MESSAGE_LIMIT,
  provision,
  redrive,
  requeue,
  resume,
  retryLaunch,
  stop,
  waitForSlot,
} from '../../shared/domain/commands.js';
import { TransitionRefusedError } from '../../shared/domain/errors.js';
import {
  ACTIVE_STATUSES,
  canTransition,
  isTerminal,
  RUN_STATUSES,
  type Run,
  type RunStatus,
  statusAfter,
  type Transition,
} from '../../shared/domain/run.js';
import { runFactory } from '../support/factories.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');
const at = NOW.toISOString();
const runIn = (status: RunStatus, over: Partial<Run> = {}) => runFactory({ status, ...over });
const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
};

/** Every hop of a transition is a move the table has. */
const walk = (t: Transition) => {
  let status = t.from;
  for (const next of t.path) {
    expect(canTransition(status, next), `${status} -> ${next}`).toBe(true);
    status = next;
  }
  return status;
};

describe('end: a run reaches a terminal status from wherever it is', () => {
  it.each(
    ACTIVE_STATUSES.flatMap((from) => RUN_STATUSES.filter(isTerminal).map((to) => [from, to] as const)),
  )('from %s, asked for %s', (from, to) => {
    const t = end(runIn(from), { to, exitReason: 'error' }, NOW) as Transition;
    expect(t.from).toBe(from);
    const reached = walk(t);
    expect(isTerminal(reached)).toBe(true);
    expect(statusAfter(t)).toBe(reached);
    if (canTransition(from, to)) expect(t.path).toEqual([to]);
    expect(t.revokeCredentials).toBe(true);
  });

  it('changes nothing on a run that has ended', () => {
    for (const status of RUN_STATUSES.filter(isTerminal)) {
      expect(end(runIn(status), { to: 'FAILED', exitReason: 'error' }, NOW)).toBeUndefined();
    }
  });

  it('cancels what never left the queue and fails what was launched, keeping the reason and saying why', () => {
    const queued = end(runIn('QUEUED'), { to: 'FAILED', exitReason: 'error', message: 'Lambda died' }, NOW);
    expect(queued).toMatchObject({
      path: ['CANCELLED'],
      patch: {
        exitReason: 'error',
        message: 'Lambda died; the run was QUEUED, so it could not end FAILED',
      },
    });
    const provisioning = end(runIn('PROVISIONING'), { to: 'ABANDONED', exitReason: 'abandoned' }, NOW);
    expect(provisioning).toMatchObject({
      path: ['FAILED'],
      patch: { exitReason: 'abandoned', message: 'the run was PROVISIONING, so it could not end ABANDONED' },
    });
  });

  it('goes through RUNNING for a completion whose start was never recorded, with a start time', () => {
    const t = end(runIn('PROVISIONING'), { to: 'COMPLETED', exitReason: 'completed' }, NOW) as Transition;
    expect(t.path).toEqual(['RUNNING', 'COMPLETED']);
    expect(t.patch).toMatchObject({ startedAt: at, exitReason: 'completed', completedAt: at });
    // a run that has a start keeps it: the patch leaves it alone
    const started = runIn('PROVISIONING', { startedAt: '2026-01-01T00:30:00.000Z' });
    expect(end(started, { to: 'COMPLETED', exitReason: 'completed' }, NOW)?.patch).not.toHaveProperty(
      'startedAt',
    );
  });

  it('never completes a run waiting for a person: the decision comes first', () => {
    const t = end(runIn('AWAITING_APPROVAL'), { to: 'COMPLETED', exitReason: 'completed' }, NOW);
    expect(t).toMatchObject({ path: ['FAILED'], patch: { exitReason: 'error' } });
  });

  it('never reports a completion it had to turn into a failure as completed', () => {
    const t = end(runIn('RETRYING'), { to: 'COMPLETED', exitReason: 'completed' }, NOW);
    expect(t).toMatchObject({ path: ['FAILED'], patch: { exitReason: 'error' } });
  });

  it('times the run from its start, or from its creation when it never started', () => {
    const created = '2026-01-01T00:00:00.000Z';
    expect(
      end(runIn('QUEUED', { createdAt: created }), { to: 'STOPPED', exitReason: 'stopped' }, NOW)?.patch,
    ).toMatchObject({ completedAt: at, durationMs: 3_600_000 });
    const started = runIn('RUNNING', { createdAt: created, startedAt: '2026-01-01T00:59:00.000Z' });
    expect(end(started, { to: 'STOPPED', exitReason: 'stopped' }, NOW)?.patch.durationMs).toBe(60_000);
    const future = runIn('RUNNING', { startedAt: '2026-01-01T02:00:00.000Z' });
    expect(end(future, { to: 'STOPPED', exitReason: 'stopped' }, NOW)?.patch.durationMs).toBe(0);
  });

  it('cuts long messages', () => {
    const t = end(runIn('RUNNING'), { to: 'FAILED', exitReason: 'error', message: 'x'.repeat(5000) }, NOW);
    expect(t?.patch.message).toHaveLength(MESSAGE_LIMIT);
  });

  it('closes a pending checkpoint as decided, expired or withdrawn', () => {
    const pending = { seq: 4, name: 'plan', summary: 's', requestedAt: 't0', approvalId: 'a1' };
    const paused = runIn('AWAITING_APPROVAL', { pendingApproval: pending });
    const decided: ApprovalHistoryEntry = { ...pending, decision: 'cancelled', at: 't1', by: 'bob' };
    const ending = { to: 'ABANDONED' as const, exitReason: 'abandoned' as const };
    expect(end(paused, { ...ending, checkpoint: { decided } }, NOW)?.closeApproval).toEqual(decided);
    expect(end(paused, { ...ending, checkpoint: { expired: true } }, NOW)?.closeApproval).toEqual({
      ...pending,
      decision: 'expired',
      at,
    });
    expect(end(paused, ending, NOW)?.closeApproval).toEqual({ ...pending, decision: 'withdrawn', at });
    expect(
      end(paused, { ...ending, checkpoint: { decided: { ...decided, seq: 2 } } }, NOW)?.closeApproval
        ?.decision,
    ).toBe('withdrawn');
    expect(end(runIn('RUNNING'), ending, NOW)).not.toHaveProperty('closeApproval');
  });
});

describe('endingPath', () => {
  it('is the status asked for when the table allows it', () => {
    expect(endingPath('RUNNING', 'COMPLETED')).toEqual(['COMPLETED']);
    expect(endingPath('AWAITING_APPROVAL', 'ABANDONED')).toEqual(['ABANDONED']);
    expect(endingPath('QUEUED', 'STOPPED')).toEqual(['STOPPED']);
  });
});

describe('user commands', () => {
  it('stops a run that has not ended, and refuses to stop one that has', () => {
    for (const status of ACTIVE_STATUSES) {
      expect(stop(runIn(status), 'alice', NOW)).toMatchObject({
        path: ['STOPPED'],
        patch: { exitReason: 'stopped', message: 'stopped by alice' },
      });
    }
    const err = refusal(() => stop(runIn('COMPLETED'), 'alice', NOW));
    expect(err).toBeInstanceOf(TransitionRefusedError);
    expect(err).toMatchObject({ to: 'STOPPED', current: 'COMPLETED' });
  });

  it('closes a run that has ended as DONE, and refuses an open or a closed one', () => {
    for (const status of RUN_STATUSES.filter((s) => isTerminal(s) && s !== 'DONE')) {
      expect(close(runIn(status), 'alice', NOW)).toMatchObject({
        from: status,
        path: ['DONE'],
        patch: { message: 'closed by alice' },
      });
    }
    for (const status of [...ACTIVE_STATUSES, 'DONE' as const]) {
      expect(refusal(() => close(runIn(status), 'alice', NOW))).toBeInstanceOf(TransitionRefusedError);
    }
  });

  it('redrives a dead-lettered run with its counts anew, and nothing else', () => {
    const t = redrive(runIn('DEAD_LETTER', { redriveCount: 2, attempt: 3, requeues: 3 }), 'alice', NOW);
    expect(t).toMatchObject({
      path: ['QUEUED'],
      patch: { redriveCount: 3, attempt: 1, requeues: 0, message: 'redriven by alice' },
      revokeCredentials: false,
    });
    for (const status of RUN_STATUSES.filter((s) => s !== 'DEAD_LETTER')) {
      expect(refusal(() => redrive(runIn(status), 'alice', NOW))).toBeInstanceOf(TransitionRefusedError);
    }
  });
});

describe('every command', () => {
  const pending = { seq: 4, name: 'plan', summary: 's', requestedAt: 't0', approvalId: 'a1' };
  const decided: ApprovalHistoryEntry = { ...pending, decision: 'approved', at: 't1' };
  const commands: [string, (run: Run) => Transition | undefined][] = [
    ...RUN_STATUSES.filter(isTerminal).map((to): [string, (run: Run) => Transition | undefined] => [
      `end ${to}`,
      (run) => end(run, { to, exitReason: 'error' }, NOW),
    ]),
    ['stop', (run) => stop(run, 'alice', NOW)],
    ['close', (run) => close(run, 'alice', NOW)],
    ['redrive', (run) => redrive(run, 'alice', NOW)],
    ['deadLetter', (run) => deadLetter(run, 'gave up', NOW)],
    ['requeue', (run) => requeue(run, { maxRequeues: 1 }, 'lost', NOW)],
    ['requeue when spent', (run) => requeue(run, { maxRequeues: 0 }, 'lost', NOW)],
    ['provision', (run) => provision(run, NOW)],
    [
      'retryLaunch',
      (run) => {
        const retry = retryLaunch(run, { maxAttempts: 3 }, 'x', NOW);
        return retry.retry ? retry.transition : undefined;
      },
    ],
    ['resume', (run) => resume(run, decided, NOW)],
    ['fail', (run) => fail(run, 'interrupted', 'gone', NOW)],
    ['waitForSlot', (run) => waitForSlot(run, 'no slot', NOW)],
  ];

  it.each(
    commands.flatMap(([name, command]) => RUN_STATUSES.map((status) => [name, status, command] as const)),
  )('%s on a %s run moves only along the table, or refuses', (_, status, command) => {
    let t: Transition | undefined;
    try {
      t = command(runIn(status, { pendingApproval: pending }));
    } catch (err) {
      expect(err).toBeInstanceOf(TransitionRefusedError);
      return;
    }
    if (t === undefined) return;
    expect(t.from).toBe(status);
    expect(isTerminal(walk(t))).toBe(t.revokeCredentials);
  });
});

describe('refusals', () => {
  it.each([
    ['stop', 'COMPLETED', 'STOPPED', (run: Run) => stop(run, 'alice', NOW)],
    ['close', 'RUNNING', 'DONE', (run: Run) => close(run, 'alice', NOW)],
    ['close', 'DONE', 'DONE', (run: Run) => close(run, 'alice', NOW)],
    ['redrive', 'FAILED', 'QUEUED', (run: Run) => redrive(run, 'alice', NOW)],
    ['provision', 'RUNNING', 'PROVISIONING', (run: Run) => provision(run, NOW)],
  ] as const)(
    '%s of a %s run names the refused move to %s and the status it was in',
    (_, from, to, command) => {
      const err = refusal(() => command(runIn(from)));
      expect(err).toBeInstanceOf(TransitionRefusedError);
      expect(err).toMatchObject({ runId: runIn(from).runId, to, current: from });
    },
  );
});

describe('the queue', () => {
  it('dead-letters only a run still waiting', () => {
    expect(deadLetter(runIn('QUEUED'), 'gave up', NOW)).toMatchObject({
      path: ['DEAD_LETTER'],
      patch: { exitReason: 'dead_letter', message: 'gave up', completedAt: at },
    });
    for (const status of RUN_STATUSES.filter((s) => s !== 'QUEUED')) {
      expect(deadLetter(runIn(status), 'gave up', NOW)).toBeUndefined();
    }
  });

  it('re-queues a stale run a bounded number of times, then dead-letters it with the reason', () => {
    const policy = { maxRequeues: 3 };
    expect(requeue(runIn('QUEUED'), policy, 'lost', NOW)).toMatchObject({ path: [], patch: { requeues: 1 } });
    expect(requeue(runIn('QUEUED', { requeues: 2 }), policy, 'lost', NOW)).toMatchObject({
      path: [],
      patch: { requeues: 3 },
    });
    expect(requeue(runIn('QUEUED', { requeues: 3 }), policy, 'its messages were lost', NOW)).toMatchObject({
      path: ['DEAD_LETTER'],
      patch: {
        exitReason: 'dead_letter',
        message: 'the run was still QUEUED after 3 re-queues by the sweeper: its messages were lost',
      },
    });
    expect(requeue(runIn('RUNNING'), policy, 'lost', NOW)).toBeUndefined();
  });

  it('keeps a run waiting for a slot of its account QUEUED, saying why, once', () => {
    expect(waitForSlot(runIn('QUEUED'), 'no slot', NOW)).toMatchObject({
      path: [],
      patch: { waitingFor: 'no slot' },
    });
    expect(waitForSlot(runIn('QUEUED', { waitingFor: 'no slot' }), 'no slot', NOW)).toBeUndefined();
    expect(waitForSlot(runIn('QUEUED', { waitingFor: 'no slot' }), 'no slot of 5', NOW)).toMatchObject({
      patch: { waitingFor: 'no slot of 5' },
    });
    for (const status of RUN_STATUSES.filter((s) => s !== 'QUEUED')) {
      expect(waitForSlot(runIn(status), 'no slot', NOW)).toBeUndefined();
    }
  });
});

describe('the launch', () => {
  it('provisions a queued run, or a retrying one before its relaunch; a provisioned one already is', () => {
    expect(provision(runIn('QUEUED'), NOW)).toMatchObject({ from: 'QUEUED', path: ['PROVISIONING'] });
    expect(provision(runIn('RETRYING'), NOW)).toMatchObject({ from: 'RETRYING', path: ['PROVISIONING'] });
    expect(provision(runIn('PROVISIONING'), NOW)).toBeUndefined();
    for (const status of ['RUNNING', 'AWAITING_APPROVAL', 'STOPPED', 'CANCELLED'] as const) {
      expect(refusal(() => provision(runIn(status), NOW))).toBeInstanceOf(TransitionRefusedError);
    }
  });

  it('retries a failed launch while attempts are left, counting each once', () => {
    const policy = { maxAttempts: 3 };
    expect(retryLaunch(runIn('PROVISIONING', { attempt: 1 }), policy, 'RESOURCE:ENI', NOW)).toMatchObject({
      retry: true,
      attempt: 2,
      transition: {
        path: ['RETRYING'],
        patch: { attempt: 2, message: 'launch attempt 1 failed: RESOURCE:ENI' },
      },
    });
    expect(retryLaunch(runIn('PROVISIONING', { attempt: 2 }), policy, 'x', NOW)).toMatchObject({
      retry: true,
      attempt: 3,
    });
    expect(retryLaunch(runIn('PROVISIONING', { attempt: 3 }), policy, 'x', NOW)).toEqual({
      retry: false,
      attempt: 3,
    });
    expect(retryLaunch(runIn('RETRYING', { attempt: 2 }), policy, 'x', NOW)).toEqual({
      retry: true,
      attempt: 2,
    });
    expect(retryLaunch(runIn('STOPPED', { attempt: 1 }), policy, 'x', NOW)).toEqual({
      retry: false,
      attempt: 1,
    });
  });

  it('fails a launched run whose sandbox is gone or whose limit is reached, and nothing else', () => {
    for (const status of ['PROVISIONING', 'RETRYING', 'RUNNING', 'AWAITING_APPROVAL'] as const) {
      expect(fail(runIn(status), 'interrupted', 'gone', NOW)).toMatchObject({
        path: ['FAILED'],
        patch: { exitReason: 'interrupted', message: 'gone' },
      });
    }
    expect(fail(runIn('QUEUED'), 'budget_hit', 'over', NOW)).toBeUndefined();
    expect(fail(runIn('STOPPED'), 'budget_hit', 'over', NOW)).toBeUndefined();
  });
});

describe('resume', () => {
  const pending = { seq: 4, name: 'plan', summary: 's', requestedAt: 't0', approvalId: 'a1' };
  const decided: ApprovalHistoryEntry = { ...pending, decision: 'approved', at: 't1' };

  it('lets a run paused at the decided checkpoint go on, closing the checkpoint in the same write', () => {
    const t = resume(runIn('AWAITING_APPROVAL', { pendingApproval: pending }), decided, NOW);
    expect(t).toMatchObject({ path: ['RUNNING'], closeApproval: decided, revokeCredentials: false });
  });

  it('leaves a run that went on already, paused elsewhere, or ended', () => {
    expect(resume(runIn('RUNNING'), decided, NOW)).toBeUndefined();
    expect(
      resume(runIn('AWAITING_APPROVAL', { pendingApproval: { ...pending, seq: 9 } }), decided, NOW),
    ).toBeUndefined();
    expect(resume(runIn('STOPPED', { pendingApproval: pending }), decided, NOW)).toBeUndefined();
  });

  it('leaves a paused run with no checkpoint on record', () => {
    expect(resume(runIn('AWAITING_APPROVAL'), decided, NOW)).toBeUndefined();
  });
});
