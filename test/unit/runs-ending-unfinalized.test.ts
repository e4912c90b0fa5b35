import { describe, expect, it, vi } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, RunList, RunQueue, Sandbox, TaskSignals } from '../../shared/ports.js';
import { markDeadLetter } from '../../shared/usecases/lifecycle.js';
import { stopRun } from '../../shared/usecases/runs.js';
import { gitHubIssueFactory, projectFactory, runFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';

/** Runs that end with no execution to finalize them still tell the GitHub issue they came from. */

const clock = { now: () => new Date('2026-12-06T10:00:00.000Z') };
const admin: Caller = { accountId: 'acct-1', userId: 'root', accountRole: 'admin' };
const gitHubIssue = gitHubIssueFactory({ commentId: 901 });

const stopping = (run: Run) => {
  const tellEnded = vi.fn(async (_: Run) => undefined);
  const deps = {
    runs: new MemoryRuns().put(run),
    list: {} as RunList,
    directory: { getProject: async () => projectFactory() } as unknown as DirectoryRepository,
    queue: {} as RunQueue,
    signals: { failTask: vi.fn() } as unknown as TaskSignals,
    sandbox: { stop: vi.fn() } as unknown as Sandbox,
    clock,
    tellEnded,
  };
  return { deps, tellEnded };
};

describe('a run started from an issue', () => {
  it('stopped while queued, with no execution, tells its issue it was stopped', async () => {
    const { deps, tellEnded } = stopping(runFactory({ status: 'QUEUED', gitHubIssue }));
    const stopped = await stopRun(deps, admin, runFactory().runId);
    expect(stopped.status).toBe('STOPPED');
    expect(tellEnded).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({ status: 'STOPPED', gitHubIssue }),
    );
  });

  it('stopped with an execution is left to its finalization; a run from no issue tells nothing', async () => {
    const running = stopping(
      runFactory({
        status: 'RUNNING',
        gitHubIssue,
        executionArn: 'arn:aws:states:us-east-1:1:execution:m:e',
      }),
    );
    await stopRun(running.deps, admin, runFactory().runId);
    expect(running.tellEnded).not.toHaveBeenCalled();

    const plain = stopping(runFactory({ status: 'QUEUED' }));
    await stopRun(plain.deps, admin, runFactory().runId);
    expect(plain.tellEnded).not.toHaveBeenCalled();
  });

  it('dead-lettered tells its issue once, and not again when the message comes back', async () => {
    const runs = new MemoryRuns().put(runFactory({ status: 'QUEUED', gitHubIssue }));
    const tellEnded = vi.fn(async (_: Run) => undefined);
    expect(await markDeadLetter({ runs, clock, tellEnded }, runFactory().runId)).toBe(true);
    expect(await markDeadLetter({ runs, clock, tellEnded }, runFactory().runId)).toBe(false);
    expect(tellEnded).toHaveBeenCalledExactlyOnceWith(expect.objectContaining({ status: 'DEAD_LETTER' }));
  });
});
