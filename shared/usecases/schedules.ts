import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  ServiceUnavailableError,
  ValidationError,
} from '../domain/errors.js';
import { newRunId, randomToken } from '../domain/ids.js';
import {
  decideTick,
  type Schedule,
  type ScheduleKey,
  type ScheduleSettings,
  skipRecord,
  type Tick,
  tickIdempotencyKey,
} from '../domain/schedule.js';
import type { Caller } from '../domain/tenancy.js';
import type { Clock, DirectoryRepository, Scheduler, ScheduleStore } from '../ports.js';
import type { ScheduleRequest } from '../schemas/schedules.js';
import { type DispatchDeps, dispatchRun, projectWithRole } from './runs.js';

/**
 * Schedules: saved and deleted by the project's admins, read by its members. Each is a record (what
 * its ticks dispatch) and a copy on the Scheduler (when it ticks). A save writes the copy first and
 * the record after, on the condition that the record is still the one read, so what a GET shows has
 * always been accepted by the Scheduler; a copy whose record did not follow is put back or, failing
 * that, carries a revision no record has and starts nothing (decideTick).
 */

export interface ScheduleDeps {
  schedules: ScheduleStore;
  scheduler: Scheduler;
  directory: DirectoryRepository;
  clock: Clock;
}

const keyOf = (caller: Caller, projectId: string, scheduleId: string): ScheduleKey => ({
  accountId: caller.accountId,
  projectId,
  scheduleId,
});

/** After a save failed half-way, the copy is made the stored record's again, or removed with it. */
const putCopyBack = async (deps: ScheduleDeps, key: ScheduleKey): Promise<void> => {
  try {
    const stored = await deps.schedules.get(key);
    if (stored) await deps.scheduler.put(stored);
    else await deps.scheduler.remove(key);
  } catch {
    // The copy keeps the failed save's revision, which no record has: its ticks start nothing, and the
    // next save replaces it.
  }
};

export const putSchedule = async (
  deps: ScheduleDeps,
  caller: Caller,
  projectId: string,
  scheduleId: string,
  request: ScheduleRequest,
): Promise<Schedule> => {
  const key = keyOf(caller, projectId, scheduleId);
  const [, pod, existing] = await Promise.all([
    projectWithRole(deps.directory, caller, projectId, 'admin'),
    deps.directory.getPod(caller.accountId, request.podId),
    deps.schedules.get(key),
  ]);
  if (!pod) throw new ValidationError(`podId: there is no pod ${request.podId}`, { podId: request.podId });
  const now = deps.clock.now().toISOString();
  const { ref, ...fields } = request;
  const settings: ScheduleSettings = {
    ...key,
    ...fields,
    ...(ref === undefined ? {} : { ref }),
    savedBy: {
      userId: caller.userId,
      ...(caller.email === undefined ? {} : { email: caller.email }),
      accountRole: caller.accountRole,
    },
    revision: randomToken(12),
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  try {
    await deps.scheduler.put(settings);
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    throw new ServiceUnavailableError(
      `schedule ${scheduleId} was not saved: EventBridge Scheduler did not take it; try again`,
      { scheduleId, cause: err instanceof Error ? err.name : 'unknown' },
    );
  }
  let saved: Schedule | undefined;
  try {
    saved = await deps.schedules.save(settings, existing?.revision);
  } catch (err) {
    await putCopyBack(deps, key);
    throw new ServiceUnavailableError(`schedule ${scheduleId} was not saved; try again`, {
      scheduleId,
      cause: err instanceof Error ? err.name : 'unknown',
    });
  }
  if (!saved) {
    await putCopyBack(deps, key);
    throw new ConflictError(
      `schedule ${scheduleId} was saved by another request meanwhile; read it and save it again`,
      { scheduleId },
    );
  }
  return saved;
};

export const getSchedule = async (
  deps: ScheduleDeps,
  caller: Caller,
  projectId: string,
  scheduleId: string,
): Promise<Schedule> => {
  await projectWithRole(deps.directory, caller, projectId, 'viewer');
  const schedule = await deps.schedules.get(keyOf(caller, projectId, scheduleId));
  if (!schedule) throw new NotFoundError('schedule', scheduleId);
  return schedule;
};

export const listSchedules = async (
  deps: ScheduleDeps,
  caller: Caller,
  projectId: string,
): Promise<Schedule[]> => {
  await projectWithRole(deps.directory, caller, projectId, 'viewer');
  return deps.schedules.list(caller.accountId, projectId);
};

/**
 * The record goes first, so no tick acts from then on; the copy after. A DELETE sent again after a
 * failure removes a copy left behind, even once the record is gone.
 */
export const deleteSchedule = async (
  deps: ScheduleDeps,
  caller: Caller,
  projectId: string,
  scheduleId: string,
): Promise<void> => {
  const key = keyOf(caller, projectId, scheduleId);
  await projectWithRole(deps.directory, caller, projectId, 'admin');
  const deleted = await deps.schedules.delete(key);
  let removed: boolean;
  try {
    removed = await deps.scheduler.remove(key);
  } catch (err) {
    throw new ServiceUnavailableError(
      `schedule ${scheduleId} was deleted, but its copy on EventBridge Scheduler was not removed (it starts nothing); send the DELETE again`,
      { scheduleId, cause: err instanceof Error ? err.name : 'unknown' },
    );
  }
  if (!deleted && !removed) throw new NotFoundError('schedule', scheduleId);
};

export interface TickDeps extends DispatchDeps {
  schedules: ScheduleStore;
}

export type TickOutcome =
  | { outcome: 'ignored'; reason: 'gone' | 'changed' | 'disabled' | 'stale' }
  | { outcome: 'repeat' }
  | { outcome: 'skipped'; activeRunId: string }
  | { outcome: 'dispatched'; runId: string; created: boolean }
  | { outcome: 'refused'; message: string };

/** What asking again will not change: the tick is recorded as refused instead of retried. */
const isRefusal = (err: unknown): err is Error =>
  err instanceof ValidationError || err instanceof ForbiddenError || err instanceof NotFoundError;

/** Ticks that act on the schedule at the same moment are decided again, one after the other. */
const MAX_DECISIONS = 5;

/**
 * A tick of a schedule: dispatch the schedule's run as the one who saved it (source `cron`), unless
 * its previous run is still active, which records a skip. The run is claimed on the schedule (its id
 * chosen) before it is created, on the condition that no other tick acted since the schedule was
 * read, so two ticks never both dispatch; the dispatch's idempotency key is the schedule and the
 * tick's time, so a tick delivered twice starts one run. What fails and may pass throws, and the
 * Scheduler tries the tick again.
 */
export const fireSchedule = async (deps: TickDeps, tick: Tick): Promise<TickOutcome> => {
  for (let decision = 1; decision <= MAX_DECISIONS; decision++) {
    const schedule = await deps.schedules.get(tick);
    if (!schedule) return { outcome: 'ignored', reason: 'gone' };
    const lastRun = schedule.lastRun && (await deps.runs.get(schedule.lastRun.runId));
    const decided = decideTick(schedule, tick, lastRun?.status, deps.clock.now());
    if (decided.kind === 'ignore') return { outcome: 'ignored', reason: decided.reason };
    if (decided.kind === 'repeat') return { outcome: 'repeat' };
    if (decided.kind === 'resume') return dispatchClaimed(deps, schedule, tick, decided.runId);
    if (decided.kind === 'skip') {
      if (await deps.schedules.recordTick(tick, skipRecord(schedule, decided.skip), schedule.lastFiredAt)) {
        return { outcome: 'skipped', activeRunId: decided.skip.activeRunId };
      }
      continue;
    }
    const runId = newRunId(deps.clock.now().getTime());
    const claim = { outcome: 'claimed', scheduledTime: tick.scheduledTime, runId } as const;
    if (await deps.schedules.recordTick(tick, claim, schedule.lastFiredAt)) {
      return dispatchClaimed(deps, schedule, tick, runId);
    }
  }
  throw new ConflictError(`schedule ${tick.scheduleId} kept changing while its tick was decided`, {
    scheduleId: tick.scheduleId,
  });
};

/** The claimed run, dispatched; a refusal withdraws the claim and says why on the schedule. */
const dispatchClaimed = async (
  deps: TickDeps,
  schedule: Schedule,
  tick: Tick,
  runId: string,
): Promise<TickOutcome> => {
  const owner: Caller = { accountId: schedule.accountId, ...schedule.savedBy };
  try {
    const { run, created } = await dispatchRun(
      deps,
      owner,
      schedule.projectId,
      {
        itemId: schedule.itemId,
        podId: schedule.podId,
        mode: schedule.mode,
        prompt: schedule.prompt,
        ...(schedule.ref === undefined ? {} : { ref: schedule.ref }),
        source: 'cron',
      },
      tickIdempotencyKey(tick),
      runId,
    );
    return { outcome: 'dispatched', runId: run.runId, created };
  } catch (err) {
    if (!isRefusal(err)) throw err;
    const refused = { outcome: 'refused', scheduledTime: tick.scheduledTime, message: err.message } as const;
    await deps.schedules.recordTick(tick, refused, tick.scheduledTime);
    return { outcome: 'refused', message: err.message };
  }
};
