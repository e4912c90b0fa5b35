import { describe, expect, it, vi } from 'vitest';
import { ValidationError } from '../../shared/domain/errors.js';
import type { Schedule, Tick } from '../../shared/domain/schedule.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, RunQueue } from '../../shared/ports.js';
import { type ScheduleRequest, scheduleRequestSchema } from '../../shared/schemas/schedules.js';
import {
  deleteSchedule,
  fireSchedule,
  getSchedule,
  listSchedules,
  putSchedule,
  type ScheduleDeps,
} from '../../shared/usecases/schedules.js';
import { podFactory, projectFactory, runFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryScheduler, MemorySchedules } from '../support/memory-schedules.js';

const NOW = new Date('2026-01-01T10:00:30.000Z');
const clock = { now: () => NOW };

const caller = (userId: string, accountRole: Caller['accountRole'] = 'member'): Caller => ({
  accountId: 'acct-1',
  userId,
  email: `${userId}@example.com`,
  accountRole,
});
const admin = caller('ada');
const member = caller('mel');
const viewer = caller('vic');
const stranger = caller('sam');
const accountAdmin = caller('root', 'admin');

const directory = () =>
  ({
    getProject: vi.fn(async (_: string, projectId: string) =>
      projectId === 'proj-1'
        ? projectFactory({
            members: [
              { userId: 'ada', role: 'admin' },
              { userId: 'mel', role: 'member' },
              { userId: 'vic', role: 'viewer' },
            ],
          })
        : undefined,
    ),
    getPod: vi.fn(async (_: string, podId: string) => (podId === 'pod-1' ? podFactory() : undefined)),
  }) as unknown as DirectoryRepository;

const scheduleDeps = () => {
  const deps = {
    schedules: new MemorySchedules(),
    scheduler: new MemoryScheduler(),
    directory: directory(),
    clock,
  };
  return deps satisfies ScheduleDeps;
};

const request = (overrides: Record<string, unknown> = {}): ScheduleRequest =>
  scheduleRequestSchema.parse({
    expression: 'rate(1 minute)',
    podId: 'pod-1',
    itemId: 'ITEM-7',
    prompt: 'Keep the dependencies current',
    mode: 'autopilot',
    ...overrides,
  });

const key = { accountId: 'acct-1', projectId: 'proj-1', scheduleId: 'nightly' };

describe('scheduleRequestSchema', () => {
  it('defaults the time zone to UTC and enabled to true, keeping the expression in its one form', () => {
    expect(request({ expression: 'cron(0  9 ? * MON-FRI *)' })).toMatchObject({
      expression: 'cron(0 9 ? * MON-FRI *)',
      timezone: 'UTC',
      enabled: true,
    });
  });

  it.each([
    [{ expression: 'cron(0 9 * * * *)' }, /^expression: one of day-of-month and day-of-week must be \?/],
    [{ expression: 'rate(30 seconds)' }, /^expression: a rate expression is rate\(value unit\)/],
    [
      { expression: 'at(2027-01-01T09:00:00)' },
      /^expression: one-time at\(\.\.\.\) expressions are not taken/,
    ],
    [{ timezone: 'Mars/Olympus' }, /^timezone: an IANA time zone name/],
    [{ mode: 'yolo' }, /^mode:/],
    [{ ref: '../etc' }, /^ref:/],
    [{ config: { demo: {} } }, /config/],
  ])('refuses %j with the field and the reason', (overrides, reason) => {
    const parsed = scheduleRequestSchema.safeParse({
      expression: 'rate(1 minute)',
      podId: 'pod-1',
      itemId: 'ITEM-7',
      prompt: 'p',
      mode: 'autopilot',
      ...overrides,
    });
    expect(parsed.success).toBe(false);
    const message = parsed.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    expect(message).toMatch(reason);
  });
});

describe('putSchedule', () => {
  it('writes the copy, then the record: the settings, who saved it and a revision the copy carries', async () => {
    const deps = scheduleDeps();
    const saved = await putSchedule(deps, admin, 'proj-1', 'nightly', request({ ref: 'main' }));
    expect(saved).toEqual({
      ...key,
      expression: 'rate(1 minute)',
      timezone: 'UTC',
      podId: 'pod-1',
      itemId: 'ITEM-7',
      prompt: 'Keep the dependencies current',
      mode: 'autopilot',
      ref: 'main',
      enabled: true,
      savedBy: { userId: 'ada', email: 'ada@example.com', accountRole: 'member' },
      revision: expect.any(String),
      createdAt: NOW.toISOString(),
      updatedAt: NOW.toISOString(),
      skips: [],
      skippedCount: 0,
    });
    expect(deps.scheduler.copy(key)).toMatchObject({
      revision: saved.revision,
      expression: 'rate(1 minute)',
    });
    expect(deps.scheduler.calls).toEqual([`put nightly ${saved.revision}`]);
  });

  it('replaces the settings and the revision, keeping what the ticks recorded', async () => {
    const deps = scheduleDeps();
    const first = await putSchedule(deps, admin, 'proj-1', 'nightly', request({ ref: 'main' }));
    await deps.schedules.recordTick(
      key,
      { outcome: 'claimed', scheduledTime: '2026-01-01T10:00:00.000Z', runId: 'run_1' },
      undefined,
    );
    const second = await putSchedule(
      deps,
      accountAdmin,
      'proj-1',
      'nightly',
      request({ expression: 'cron(0 9 ? * MON-FRI *)', timezone: 'Europe/Paris', enabled: false }),
    );
    expect(second).toMatchObject({
      expression: 'cron(0 9 ? * MON-FRI *)',
      timezone: 'Europe/Paris',
      enabled: false,
      savedBy: { userId: 'root', accountRole: 'admin' },
      createdAt: first.createdAt,
      lastRun: { runId: 'run_1', scheduledTime: '2026-01-01T10:00:00.000Z' },
      lastFiredAt: '2026-01-01T10:00:00.000Z',
    });
    expect(second.ref).toBeUndefined();
    expect(second.revision).not.toBe(first.revision);
    expect(deps.scheduler.copy(key)).toMatchObject({ revision: second.revision, enabled: false });
  });

  it('is for the project’s admins and the account’s; members and others are refused, nothing written', async () => {
    const deps = scheduleDeps();
    for (const who of [member, viewer, stranger]) {
      await expect(putSchedule(deps, who, 'proj-1', 'nightly', request())).rejects.toMatchObject({
        code: 'Forbidden',
        message: 'this needs the admin role in project proj-1',
      });
    }
    await expect(putSchedule(deps, admin, 'proj-9', 'nightly', request())).rejects.toMatchObject({
      code: 'NotFound',
    });
    expect(deps.scheduler.calls).toEqual([]);
    expect(deps.schedules.schedules.size).toBe(0);
  });

  it('refuses a pod the account does not have, writing nothing', async () => {
    const deps = scheduleDeps();
    await expect(putSchedule(deps, admin, 'proj-1', 'nightly', request({ podId: 'pod-9' }))).rejects.toEqual(
      new ValidationError('podId: there is no pod pod-9', { podId: 'pod-9' }),
    );
    expect(deps.scheduler.calls).toEqual([]);
  });

  it('writes no record when the Scheduler fails (503), and passes on what it refuses (400)', async () => {
    const deps = scheduleDeps();
    vi.spyOn(deps.scheduler, 'put').mockRejectedValueOnce(
      Object.assign(new Error('x'), { name: 'Throttling' }),
    );
    await expect(putSchedule(deps, admin, 'proj-1', 'nightly', request())).rejects.toMatchObject({
      code: 'ServiceUnavailable',
      message: 'schedule nightly was not saved: EventBridge Scheduler did not take it; try again',
    });
    vi.spyOn(deps.scheduler, 'put').mockRejectedValueOnce(new ValidationError('refused: why'));
    await expect(putSchedule(deps, admin, 'proj-1', 'nightly', request())).rejects.toMatchObject({
      code: 'ValidationError',
      message: 'refused: why',
    });
    expect(deps.schedules.schedules.size).toBe(0);
  });

  it('puts the copy back as the record stands when the record cannot be written (503)', async () => {
    const deps = scheduleDeps();
    const before = await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    vi.spyOn(deps.schedules, 'save').mockRejectedValueOnce(new Error('ProvisionedThroughputExceeded'));
    await expect(
      putSchedule(deps, admin, 'proj-1', 'nightly', request({ expression: 'rate(5 minutes)' })),
    ).rejects.toMatchObject({
      code: 'ServiceUnavailable',
      message: 'schedule nightly was not saved; try again',
    });
    expect(deps.scheduler.copy(key)).toMatchObject({
      revision: before.revision,
      expression: 'rate(1 minute)',
    });
    expect(await deps.schedules.get(key)).toEqual(before);
  });

  it('removes the copy of a schedule whose first save failed half-way', async () => {
    const deps = scheduleDeps();
    vi.spyOn(deps.schedules, 'save').mockRejectedValueOnce(new Error('InternalServerError'));
    await expect(putSchedule(deps, admin, 'proj-1', 'nightly', request())).rejects.toMatchObject({
      code: 'ServiceUnavailable',
    });
    expect(deps.scheduler.copy(key)).toBeUndefined();
  });

  it('answers 409 to the save that lost a race, the copy made the winner’s', async () => {
    const deps = scheduleDeps();
    await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    // another save lands between this one's read and its write
    const save = deps.schedules.save.bind(deps.schedules);
    let winner: Schedule | undefined;
    vi.spyOn(deps.schedules, 'save').mockImplementationOnce(async (settings, expected) => {
      winner = await save({ ...settings, revision: 'winner', expression: 'rate(2 hours)' }, expected);
      return save(settings, expected);
    });
    await expect(
      putSchedule(deps, admin, 'proj-1', 'nightly', request({ expression: 'rate(5 minutes)' })),
    ).rejects.toMatchObject({ code: 'Conflict' });
    expect(winner?.revision).toBe('winner');
    expect(deps.scheduler.copy(key)).toMatchObject({ revision: 'winner', expression: 'rate(2 hours)' });
  });
});

describe('reading schedules', () => {
  it('lets every member of the project read them, and no one else', async () => {
    const deps = scheduleDeps();
    const saved = await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    await putSchedule(deps, admin, 'proj-1', 'weekly', request({ expression: 'rate(7 days)' }));
    for (const who of [viewer, member, admin, accountAdmin]) {
      expect(await getSchedule(deps, who, 'proj-1', 'nightly')).toEqual(saved);
      expect((await listSchedules(deps, who, 'proj-1')).map((s) => s.scheduleId).sort()).toEqual([
        'nightly',
        'weekly',
      ]);
    }
    await expect(getSchedule(deps, stranger, 'proj-1', 'nightly')).rejects.toMatchObject({
      code: 'Forbidden',
    });
    await expect(listSchedules(deps, stranger, 'proj-1')).rejects.toMatchObject({ code: 'Forbidden' });
    await expect(getSchedule(deps, admin, 'proj-1', 'hourly')).rejects.toMatchObject({ code: 'NotFound' });
  });
});

describe('deleteSchedule', () => {
  it('deletes the record, then the copy; then it is not found', async () => {
    const deps = scheduleDeps();
    await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    await deleteSchedule(deps, admin, 'proj-1', 'nightly');
    expect(deps.schedules.schedules.size).toBe(0);
    expect(deps.scheduler.copy(key)).toBeUndefined();
    await expect(deleteSchedule(deps, admin, 'proj-1', 'nightly')).rejects.toMatchObject({
      code: 'NotFound',
    });
  });

  it('is for admins only', async () => {
    const deps = scheduleDeps();
    await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    await expect(deleteSchedule(deps, member, 'proj-1', 'nightly')).rejects.toMatchObject({
      code: 'Forbidden',
    });
    expect(deps.schedules.schedules.size).toBe(1);
  });

  it('answers 503 when the copy stays, and removes it when the DELETE is sent again', async () => {
    const deps = scheduleDeps();
    await putSchedule(deps, admin, 'proj-1', 'nightly', request());
    vi.spyOn(deps.scheduler, 'remove').mockRejectedValueOnce(new Error('InternalServerException'));
    await expect(deleteSchedule(deps, admin, 'proj-1', 'nightly')).rejects.toMatchObject({
      code: 'ServiceUnavailable',
      message: expect.stringContaining('send the DELETE again'),
    });
    expect(deps.schedules.schedules.size).toBe(0);
    expect(deps.scheduler.copy(key)).toBeDefined();
    await deleteSchedule(deps, admin, 'proj-1', 'nightly');
    expect(deps.scheduler.copy(key)).toBeUndefined();
  });
});

describe('fireSchedule', () => {
  const tickDeps = async (overrides: Record<string, unknown> = {}) => {
    const deps = scheduleDeps();
    const saved = await putSchedule(deps, admin, 'proj-1', 'nightly', request(overrides));
    const runs = new MemoryRuns();
    const queue: RunQueue = { enqueue: vi.fn(async () => undefined) };
    return { ...deps, runs, queue, saved };
  };
  const tickAt = (saved: Schedule, scheduledTime: string): Tick => ({
    ...key,
    revision: saved.revision,
    scheduledTime,
  });

  it('dispatches the schedule’s run as the one who saved it, source cron, and records it', async () => {
    const deps = await tickDeps({ ref: 'main', mode: 'supervised' });
    const outcome = await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'));
    expect(outcome).toEqual({ outcome: 'dispatched', runId: expect.stringMatching(/^run_/), created: true });
    const runId = outcome.outcome === 'dispatched' ? outcome.runId : '';
    expect(deps.runs.stored(runId)).toMatchObject({
      projectId: 'proj-1',
      podId: 'pod-1',
      itemId: 'ITEM-7',
      mode: 'supervised',
      source: 'cron',
      attribution: 'ada',
      status: 'QUEUED',
    });
    expect(deps.runs.snapshots.get(runId)).toMatchObject({
      prompt: 'Keep the dependencies current',
      ref: 'main',
      dispatcher: { userId: 'ada', email: 'ada@example.com' },
    });
    expect(deps.queue.enqueue).toHaveBeenCalledWith(runId);
    expect(deps.schedules.stored(key)).toMatchObject({
      lastRun: { runId, scheduledTime: '2026-01-01T10:00:00.000Z' },
      lastFiredAt: '2026-01-01T10:00:00.000Z',
    });
  });

  it('starts one run for a tick delivered twice, whether the first delivery died before or after creating it', async () => {
    const deps = await tickDeps();
    const at = tickAt(deps.saved, '2026-01-01T10:00:00.000Z');
    // died after its claim, before the run was created: the next delivery creates the claimed run
    vi.spyOn(deps.runs, 'create').mockRejectedValueOnce(new Error('the function timed out'));
    await expect(fireSchedule(deps, at)).rejects.toThrow('timed out');
    const claimed = deps.schedules.stored(key)?.lastRun?.runId;
    expect(await fireSchedule(deps, at)).toEqual({ outcome: 'dispatched', runId: claimed, created: true });
    expect(await fireSchedule(deps, at)).toEqual({ outcome: 'repeat' });
    // died after the run was created, before answering: the same run, found again
    const next = tickAt(deps.saved, '2026-01-01T10:01:00.000Z');
    deps.runs.stored(claimed ?? '').status = 'COMPLETED';
    vi.spyOn(deps.queue, 'enqueue').mockRejectedValueOnce(new Error('the function timed out'));
    await expect(fireSchedule(deps, next)).rejects.toThrow('could not be queued');
    expect(await fireSchedule(deps, next)).toEqual({ outcome: 'repeat' });
    expect(deps.runs.runs.size).toBe(2);
  });

  it('decides two ticks acting at once one after the other: one dispatches, the other skips', async () => {
    const deps = await tickDeps();
    const [first, second] = await Promise.all([
      fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z')),
      fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:01:00.000Z')),
    ]);
    const outcomes = [first?.outcome, second?.outcome].sort();
    expect(outcomes).toEqual(['dispatched', 'skipped']);
    expect(deps.runs.runs.size).toBe(1);
  });

  it('withdraws the claim of a refused dispatch, so the next tick is not held by a run that never was', async () => {
    const deps = await tickDeps();
    vi.mocked(deps.directory.getPod).mockResolvedValueOnce(undefined);
    expect(await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'))).toEqual({
      outcome: 'refused',
      message: 'unknown pod pod-1',
    });
    expect(deps.schedules.stored(key)?.lastRun).toBeUndefined();
    expect(await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:01:00.000Z'))).toMatchObject({
      outcome: 'dispatched',
    });
    expect(deps.schedules.stored(key)?.lastError).toBeUndefined();
  });

  it('skips a tick while the previous run is active, records when and which, then dispatches once it ended', async () => {
    const deps = await tickDeps();
    const first = await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'));
    const runId = first.outcome === 'dispatched' ? first.runId : '';
    deps.runs.stored(runId).status = 'RUNNING';
    expect(await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:01:00.000Z'))).toEqual({
      outcome: 'skipped',
      activeRunId: runId,
    });
    expect(deps.schedules.stored(key)).toMatchObject({
      lastRun: { runId, scheduledTime: '2026-01-01T10:00:00.000Z' },
      lastFiredAt: '2026-01-01T10:01:00.000Z',
      skippedCount: 1,
      skips: [
        {
          scheduledTime: '2026-01-01T10:01:00.000Z',
          at: NOW.toISOString(),
          activeRunId: runId,
          activeRunStatus: 'RUNNING',
        },
      ],
    });
    deps.runs.stored(runId).status = 'COMPLETED';
    const third = await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:02:00.000Z'));
    expect(third).toMatchObject({ outcome: 'dispatched', created: true });
    expect(deps.runs.runs.size).toBe(2);
  });

  it('dispatches nothing for a disabled, deleted or changed schedule, or a late tick', async () => {
    const disabled = await tickDeps({ enabled: false });
    expect(await fireSchedule(disabled, tickAt(disabled.saved, '2026-01-01T10:00:00.000Z'))).toEqual({
      outcome: 'ignored',
      reason: 'disabled',
    });
    const deps = await tickDeps();
    const old = deps.saved;
    const resaved = await putSchedule(
      deps,
      admin,
      'proj-1',
      'nightly',
      request({ expression: 'rate(2 hours)' }),
    );
    expect(await fireSchedule(deps, tickAt(old, '2026-01-01T10:00:00.000Z'))).toEqual({
      outcome: 'ignored',
      reason: 'changed',
    });
    await fireSchedule(deps, tickAt(resaved, '2026-01-01T10:00:00.000Z'));
    deps.runs.stored(deps.schedules.stored(key)?.lastRun?.runId ?? '').status = 'COMPLETED';
    expect(await fireSchedule(deps, tickAt(resaved, '2026-01-01T09:00:00.000Z'))).toEqual({
      outcome: 'ignored',
      reason: 'stale',
    });
    await deleteSchedule(deps, admin, 'proj-1', 'nightly');
    expect(await fireSchedule(deps, tickAt(resaved, '2026-01-01T12:00:00.000Z'))).toEqual({
      outcome: 'ignored',
      reason: 'gone',
    });
    expect(deps.runs.runs.size + disabled.runs.runs.size).toBe(1);
  });

  it('records why a tick could not dispatch when asking again would not help, instead of failing it', async () => {
    const deps = await tickDeps();
    // the one who saved it has left the project
    vi.mocked(deps.directory.getProject).mockResolvedValue(projectFactory({ members: [] }));
    const outcome = await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'));
    expect(outcome).toEqual({ outcome: 'refused', message: 'this needs the member role in project proj-1' });
    expect(deps.schedules.stored(key)).toMatchObject({
      lastFiredAt: '2026-01-01T10:00:00.000Z',
      lastError: {
        scheduledTime: '2026-01-01T10:00:00.000Z',
        message: 'this needs the member role in project proj-1',
      },
    });
    expect(deps.runs.runs.size).toBe(0);
  });

  it('throws what may pass, so that the Scheduler tries the tick again', async () => {
    const deps = await tickDeps();
    vi.spyOn(deps.runs, 'create').mockRejectedValueOnce(new Error('ThrottlingException'));
    await expect(fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'))).rejects.toThrow(
      'ThrottlingException',
    );
    expect(deps.runs.runs.size).toBe(0);
  });

  it('counts a claimed run that was never created as ended once its tick can no longer be retried', async () => {
    const deps = await tickDeps();
    await deps.schedules.recordTick(
      key,
      { outcome: 'claimed', scheduledTime: '2026-01-01T08:00:00.000Z', runId: runFactory().runId },
      undefined,
    );
    expect(await fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'))).toMatchObject({
      outcome: 'dispatched',
    });
  });

  it('answers a Conflict, for the Scheduler to try again, when the schedule keeps changing under its tick', async () => {
    const deps = await tickDeps();
    vi.spyOn(deps.schedules, 'recordTick').mockResolvedValue(false);
    await expect(fireSchedule(deps, tickAt(deps.saved, '2026-01-01T10:00:00.000Z'))).rejects.toMatchObject({
      code: 'Conflict',
    });
    expect(deps.runs.runs.size).toBe(0);
  });
});
