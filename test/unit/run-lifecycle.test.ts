import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACTIVE_STATUSES,
  canAdvancePhase,
  canTransition,
  executionName,
  hasSandbox,
  isLaunched,
  isTerminal,
  LAUNCHED_STATUSES,
  PHASES,
  type Phase,
  RUN_STATUSES,
  type RunStatus,
  SANDBOX_STATUSES,
  statusAfter,
  TERMINAL_STATUSES,
  TRANSITIONS,
  ZERO_COST,
} from '../../shared/domain/run.js';

/** The lifecycle as the design states it, written out independently of the table under test. */
const EXPECTED: Record<RunStatus, RunStatus[]> = {
  QUEUED: ['PROVISIONING', 'CANCELLED', 'STOPPED', 'DEAD_LETTER'],
  PROVISIONING: ['RUNNING', 'RETRYING', 'CANCELLED', 'FAILED', 'STOPPED'],
  RETRYING: ['PROVISIONING', 'CANCELLED', 'FAILED', 'STOPPED'],
  RUNNING: ['AWAITING_APPROVAL', 'COMPLETED', 'FAILED', 'STOPPED'],
  AWAITING_APPROVAL: ['RUNNING', 'ABANDONED', 'STOPPED', 'FAILED'],
  COMPLETED: ['PR_REJECTED', 'DONE'],
  FAILED: ['DONE'],
  CANCELLED: ['DONE'],
  STOPPED: ['DONE'],
  ABANDONED: ['DONE'],
  PR_REJECTED: ['DONE'],
  DEAD_LETTER: ['QUEUED', 'DONE'],
  DONE: [],
};

/** Where a run has ended, and where an execution carries it, as the design states them. */
const ENDED: RunStatus[] = [
  'COMPLETED',
  'DONE',
  'FAILED',
  'CANCELLED',
  'STOPPED',
  'ABANDONED',
  'PR_REJECTED',
  'DEAD_LETTER',
];
const LAUNCHED: RunStatus[] = ['PROVISIONING', 'RETRYING', 'RUNNING', 'AWAITING_APPROVAL'];
/** Launched, less RETRYING: between launches no sandbox exists. */
const WITH_SANDBOX: RunStatus[] = ['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'];

/** The phases a run's phase may move to, from none yet and from each phase, as the design states them. */
const PHASE_MOVES: Record<Phase | 'none', Phase[]> = {
  none: ['STARTED', 'PLANNING', 'EXECUTING', 'COMMITTING', 'PR_RAISED', 'COMPLETED', 'FAILED'],
  STARTED: ['PLANNING', 'EXECUTING', 'COMMITTING', 'PR_RAISED', 'COMPLETED', 'FAILED'],
  PLANNING: ['EXECUTING', 'COMMITTING', 'PR_RAISED', 'COMPLETED', 'FAILED'],
  EXECUTING: ['COMMITTING', 'PR_RAISED', 'COMPLETED', 'FAILED'],
  COMMITTING: ['PR_RAISED', 'COMPLETED', 'FAILED'],
  PR_RAISED: ['COMPLETED', 'FAILED'],
  COMPLETED: [],
  FAILED: [],
};

const pairs = RUN_STATUSES.flatMap((from) => RUN_STATUSES.map((to) => [from, to] as const));

describe('run lifecycle transition table', () => {
  it.each(pairs)('%s -> %s is allowed exactly when the design allows it', (from, to) => {
    expect(canTransition(from, to)).toBe(EXPECTED[from].includes(to));
  });

  it('lets every status that has not ended end in one move, so no run need stay open', () => {
    for (const status of ACTIVE_STATUSES) {
      expect(TRANSITIONS[status].some(isTerminal), status).toBe(true);
    }
  });

  it('terminal statuses leave only for DONE, PR_REJECTED (from COMPLETED) or QUEUED (redrive)', () => {
    for (const status of RUN_STATUSES.filter(isTerminal)) {
      for (const to of TRANSITIONS[status]) expect(['DONE', 'PR_REJECTED', 'QUEUED']).toContain(to);
    }
  });

  it('no sequence of events moves a run out of a terminal status except by the listed exits', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...RUN_STATUSES), { maxLength: 60 }), (attempts) => {
        let status: RunStatus = 'QUEUED';
        for (const to of attempts) {
          if (!canTransition(status, to)) continue;
          if (isTerminal(status)) {
            const listedExit =
              to === 'DONE' ||
              (status === 'COMPLETED' && to === 'PR_REJECTED') ||
              (status === 'DEAD_LETTER' && to === 'QUEUED');
            if (!listedExit) return false;
          }
          status = to;
        }
        return true;
      }),
    );
  });

  it('no sequence of phase reports moves the phase backwards or out of a final phase', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...PHASES), { maxLength: 40 }), (reports) => {
        let phase: Phase | undefined;
        for (const next of reports) {
          if (!canAdvancePhase(phase, next)) continue;
          if (phase === 'COMPLETED' || phase === 'FAILED') return false;
          if (phase && next !== 'FAILED' && PHASES.indexOf(next) <= PHASES.indexOf(phase)) return false;
          phase = next;
        }
        return true;
      }),
    );
  });
});

describe('status sets', () => {
  it.each(RUN_STATUSES)('%s has ended exactly when the design says so', (status) => {
    expect(isTerminal(status)).toBe(ENDED.includes(status));
    expect(TERMINAL_STATUSES.has(status)).toBe(ENDED.includes(status));
  });

  it.each(RUN_STATUSES)(
    '%s is launched exactly when an execution carries it and it has not ended',
    (status) => {
      expect(isLaunched(status)).toBe(LAUNCHED.includes(status));
    },
  );

  it.each(RUN_STATUSES)('%s has a sandbox exactly when it is launched and not between launches', (status) => {
    expect(hasSandbox(status)).toBe(WITH_SANDBOX.includes(status));
  });

  it('counts as active every status that has not ended, and only those', () => {
    expect([...ACTIVE_STATUSES].sort()).toEqual([
      'AWAITING_APPROVAL',
      'PROVISIONING',
      'QUEUED',
      'RETRYING',
      'RUNNING',
    ]);
    expect([...LAUNCHED_STATUSES].sort()).toEqual([...LAUNCHED].sort());
    expect([...SANDBOX_STATUSES].sort()).toEqual([...WITH_SANDBOX].sort());
  });
});

describe('run phases', () => {
  const phasePairs = (['none', ...PHASES] as const).flatMap((from) =>
    PHASES.map((to) => [from, to] as const),
  );

  it.each(phasePairs)('%s -> %s is a move exactly when the design allows it', (from, to) => {
    expect(canAdvancePhase(from === 'none' ? undefined : from, to)).toBe(PHASE_MOVES[from].includes(to));
  });
});

describe('statusAfter', () => {
  const transition = { runId: 'r', at: 't', patch: {}, revokeCredentials: false };

  it('is the last status of the path', () => {
    expect(statusAfter({ ...transition, from: 'PROVISIONING', path: ['RUNNING', 'AWAITING_APPROVAL'] })).toBe(
      'AWAITING_APPROVAL',
    );
  });

  it('is the status the run was in when only fields change', () => {
    expect(statusAfter({ ...transition, from: 'QUEUED', path: [] })).toBe('QUEUED');
  });
});

describe('executionName', () => {
  it('is the run id for the first execution, and a new name for each redrive', () => {
    expect(executionName({ runId: 'run_1', redriveCount: 0 })).toBe('run_1');
    expect(executionName({ runId: 'run_1', redriveCount: 1 })).toBe('run_1-r1');
    expect(executionName({ runId: 'run_1', redriveCount: 12 })).toBe('run_1-r12');
  });
});

describe('ZERO_COST', () => {
  it('is what a run that used nothing costs, on every line', () => {
    expect(ZERO_COST).toEqual({ tokenUsd: 0, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 0, totalUsd: 0 });
  });
});
