import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACTIVE_STATUSES,
  canAdvancePhase,
  canTransition,
  isTerminal,
  PHASES,
  type Phase,
  RUN_STATUSES,
  type RunStatus,
  TRANSITIONS,
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
