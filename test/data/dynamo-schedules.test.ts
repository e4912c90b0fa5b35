import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoScheduleStore } from '../../shared/adapters/dynamo-schedules.js';
import type { ScheduleSettings, ScheduleSkip } from '../../shared/domain/schedule.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
let store: DynamoScheduleStore;
beforeAll(() => {
  store = new DynamoScheduleStore(table.doc, table.tableName);
});

const settings = (overrides: Partial<ScheduleSettings> = {}): ScheduleSettings => ({
  accountId: `acct-${randomUUID().slice(0, 8)}`,
  projectId: 'proj-1',
  scheduleId: 'nightly',
  expression: 'cron(0 2 * * ? *)',
  timezone: 'Europe/Paris',
  podId: 'pod-1',
  itemId: 'ITEM-1',
  prompt: 'Keep the dependencies current',
  mode: 'autopilot',
  ref: 'main',
  enabled: true,
  savedBy: { userId: 'ada', accountRole: 'member' },
  revision: 'rev-1',
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

const skip = (scheduledTime: string): ScheduleSkip => ({
  scheduledTime,
  at: scheduledTime,
  activeRunId: 'run_A',
  activeRunStatus: 'RUNNING',
});

describe('DynamoScheduleStore', () => {
  it('saves a new schedule once, and reads it back with nothing recorded by ticks', async () => {
    const first = settings();
    expect(await store.save(first, undefined)).toEqual({ ...first, skips: [], skippedCount: 0 });
    expect(await store.get(first)).toEqual({ ...first, skips: [], skippedCount: 0 });
    // a second create of the same schedule finds it there
    expect(await store.save({ ...first, revision: 'rev-other' }, undefined)).toBeUndefined();
    expect((await store.get(first))?.revision).toBe('rev-1');
  });

  it('replaces the settings only while the revision is the one read, keeping what ticks recorded', async () => {
    const first = settings();
    await store.save(first, undefined);
    await store.recordTick(
      first,
      { outcome: 'claimed', scheduledTime: '2026-01-01T02:00:00.000Z', runId: 'run_1' },
      undefined,
    );
    const { ref: _ref, ...withoutRef } = first;
    const second = {
      ...withoutRef,
      expression: 'rate(5 minutes)',
      revision: 'rev-2',
      updatedAt: '2026-01-02T00:00:00.000Z',
    };
    expect(await store.save(second, 'rev-stale')).toBeUndefined();
    const saved = await store.save(second, 'rev-1');
    expect(saved).toEqual({
      ...second,
      skips: [],
      skippedCount: 0,
      lastFiredAt: '2026-01-01T02:00:00.000Z',
      lastRun: { runId: 'run_1', scheduledTime: '2026-01-01T02:00:00.000Z' },
    });
    expect(saved?.ref).toBeUndefined();
  });

  it('records a tick only while the latest tick recorded is the one read, and never on a deleted schedule', async () => {
    const s = settings();
    await store.save(s, undefined);
    const claim = (scheduledTime: string, runId: string) =>
      ({ outcome: 'claimed', scheduledTime, runId }) as const;
    expect(await store.recordTick(s, claim('2026-01-01T02:00:00.000Z', 'run_1'), undefined)).toBe(true);
    // another tick read the schedule before that claim: it decides again
    expect(await store.recordTick(s, claim('2026-01-01T02:01:00.000Z', 'run_x'), undefined)).toBe(false);
    const skips = [skip('2026-01-01T02:01:00.000Z')];
    const skipped = { outcome: 'skipped', scheduledTime: '2026-01-01T02:01:00.000Z', skips } as const;
    expect(await store.recordTick(s, skipped, '2026-01-01T02:00:00.000Z')).toBe(true);
    expect(await store.recordTick(s, skipped, '2026-01-01T02:00:00.000Z')).toBe(false);
    expect(await store.get(s)).toMatchObject({
      lastFiredAt: '2026-01-01T02:01:00.000Z',
      lastRun: { runId: 'run_1', scheduledTime: '2026-01-01T02:00:00.000Z' },
      skips,
      skippedCount: 1,
    });

    // a claim, then its dispatch refused: the claim is withdrawn and the reason kept
    expect(
      await store.recordTick(s, claim('2026-01-01T02:02:00.000Z', 'run_2'), '2026-01-01T02:01:00.000Z'),
    ).toBe(true);
    const refused = {
      outcome: 'refused',
      scheduledTime: '2026-01-01T02:02:00.000Z',
      message: 'no pod',
    } as const;
    expect(await store.recordTick(s, refused, '2026-01-01T02:02:00.000Z')).toBe(true);
    const afterRefusal = await store.get(s);
    expect(afterRefusal).toMatchObject({
      lastFiredAt: '2026-01-01T02:02:00.000Z',
      lastError: { scheduledTime: '2026-01-01T02:02:00.000Z', message: 'no pod' },
    });
    expect(afterRefusal?.lastRun).toBeUndefined();
    expect(
      await store.recordTick(s, claim('2026-01-01T02:03:00.000Z', 'run_3'), '2026-01-01T02:02:00.000Z'),
    ).toBe(true);
    expect((await store.get(s))?.lastError).toBeUndefined();

    expect(await store.delete(s)).toBe(true);
    expect(await store.delete(s)).toBe(false);
    expect(await store.recordTick(s, claim('2026-01-01T03:00:00.000Z', 'run_4'), undefined)).toBe(false);
    expect(await store.get(s)).toBeUndefined();
  });

  it('lists the schedules of one project only', async () => {
    const base = settings();
    const { accountId } = base;
    await store.save(base, undefined);
    await store.save({ ...base, scheduleId: 'weekly' }, undefined);
    await store.save({ ...base, projectId: 'proj-10', scheduleId: 'other' }, undefined);
    await store.save({ ...base, accountId: `${accountId}x` }, undefined);
    expect((await store.list(accountId, 'proj-1')).map((s) => s.scheduleId).sort()).toEqual([
      'nightly',
      'weekly',
    ]);
    expect((await store.list(accountId, 'proj-10')).map((s) => s.scheduleId)).toEqual(['other']);
    expect(await store.list(accountId, 'proj-2')).toEqual([]);
  });
});
