import type { Schedule, ScheduleKey, ScheduleSettings, TickRecord } from '../../shared/domain/schedule.js';
import type { Scheduler, ScheduleStore } from '../../shared/ports.js';

const id = (key: ScheduleKey) => `${key.accountId}/${key.projectId}/${key.scheduleId}`;

/**
 * The schedule store in memory, for unit tests of the use cases: it writes on the same conditions the
 * DynamoDB store does (a save while the revision is the one read, a tick while the latest tick
 * recorded is the one read).
 */
export class MemorySchedules implements ScheduleStore {
  readonly schedules = new Map<string, Schedule>();

  put(schedule: Schedule): this {
    this.schedules.set(id(schedule), structuredClone(schedule));
    return this;
  }

  /** The schedule as stored (not a copy). */
  stored(key: ScheduleKey): Schedule | undefined {
    return this.schedules.get(id(key));
  }

  async get(key: ScheduleKey) {
    const schedule = this.schedules.get(id(key));
    return schedule && structuredClone(schedule);
  }

  async list(accountId: string, projectId: string) {
    return [...this.schedules.values()]
      .filter((s) => s.accountId === accountId && s.projectId === projectId)
      .map((s) => structuredClone(s));
  }

  async save(settings: ScheduleSettings, expectedRevision: string | undefined) {
    const stored = this.schedules.get(id(settings));
    if (stored?.revision !== expectedRevision) return undefined;
    const { lastFiredAt, lastRun, lastError, skips = [], skippedCount = 0 } = stored ?? {};
    const schedule: Schedule = {
      ...structuredClone(settings),
      skips,
      skippedCount,
      ...(lastFiredAt === undefined ? {} : { lastFiredAt }),
      ...(lastRun === undefined ? {} : { lastRun }),
      ...(lastError === undefined ? {} : { lastError }),
    };
    this.schedules.set(id(settings), schedule);
    return structuredClone(schedule);
  }

  async delete(key: ScheduleKey) {
    return this.schedules.delete(id(key));
  }

  async recordTick(key: ScheduleKey, record: TickRecord, lastFiredAt: string | undefined) {
    const schedule = this.schedules.get(id(key));
    if (!schedule || schedule.lastFiredAt !== lastFiredAt) return false;
    schedule.lastFiredAt = record.scheduledTime;
    if (record.outcome === 'claimed') {
      schedule.lastRun = { runId: record.runId, scheduledTime: record.scheduledTime };
      delete schedule.lastError;
    } else if (record.outcome === 'skipped') {
      schedule.skips = structuredClone(record.skips);
      schedule.skippedCount += 1;
    } else {
      schedule.lastError = { scheduledTime: record.scheduledTime, message: record.message };
      delete schedule.lastRun;
    }
    return true;
  }
}

/** The Scheduler's copies in memory: what was put and removed, in order. */
export class MemoryScheduler implements Scheduler {
  readonly copies = new Map<string, ScheduleSettings>();
  readonly calls: string[] = [];

  async put(settings: ScheduleSettings) {
    this.calls.push(`put ${settings.scheduleId} ${settings.revision}`);
    this.copies.set(id(settings), structuredClone(settings));
  }

  async remove(key: ScheduleKey) {
    this.calls.push(`remove ${key.scheduleId}`);
    return this.copies.delete(id(key));
  }

  copy(key: ScheduleKey): ScheduleSettings | undefined {
    return this.copies.get(id(key));
  }
}
