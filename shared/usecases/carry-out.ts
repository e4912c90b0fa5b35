import { NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import type { Run, Transition } from '../domain/run.js';
import type { RunStore } from '../ports.js';

/** How often a command is decided again when other writers keep moving the run first. */
const MAX_DECISIONS = 8;

/**
 * The one way a run's status changes: decide the command from the run as stored, write it on the
 * condition that the run is still where it was decided from, and when another writer got there first,
 * decide again from what is now stored. Nothing is swallowed: a command with nothing left to do says
 * so (`changed: false`), a command the lifecycle refuses throws its refusal, and a run that keeps
 * changing under it fails loudly.
 */
export const carryOut = async (
  runs: RunStore,
  start: Run | string,
  decide: (run: Run) => Transition | undefined,
): Promise<{ run: Run; changed: boolean }> => {
  const runId = typeof start === 'string' ? start : start.runId;
  let run = typeof start === 'string' ? await runs.get(start) : start;
  for (let decisions = 1; ; decisions++) {
    if (!run) throw new NotFoundError('run', runId);
    const transition = decide(run);
    if (!transition) return { run, changed: false };
    const written = await runs.apply(run, transition);
    if (written.applied) return { run: written.run, changed: true };
    if (decisions >= MAX_DECISIONS) {
      throw new ServiceUnavailableError(`run ${runId} kept changing while it was being updated; retry`);
    }
    run = written.run ?? (await runs.get(runId));
  }
};
