import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { SCHEDULE, type Schedule } from '../../shared/domain/schedule.js';
import { api, endpoints, waitForRun } from './support/api.js';

/**
 * Schedules on the local cloud: the API keeps each one's copy on the local EventBridge Scheduler, whose
 * clock runs a minute a second here, so a one-minute rate ticks every second and each tick invokes
 * the scheduled-dispatch function.
 */

const setSchedulerSpeed = async (speed: number) => {
  const res = await fetch(`${endpoints().services.scheduler}/_local/clock`, {
    method: 'POST',
    body: JSON.stringify({ speed }),
  });
  expect(res.status).toBe(200);
};

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const schedulePath = (scheduleId: string) => `/v1/projects/${endpoints().projectId}/schedules/${scheduleId}`;
const putSchedule = (scheduleId: string, body: Record<string, unknown>) =>
  api<Schedule>('PUT', schedulePath(scheduleId), {
    body: {
      expression: 'rate(1 minute)',
      podId: endpoints().scriptedPodId,
      prompt: 'Keep the changelog current',
      mode: 'supervised',
      ...body,
    },
  });
const readSchedule = async (scheduleId: string) =>
  (await api<Schedule>('GET', schedulePath(scheduleId))).body;

const waitForSchedule = async (
  scheduleId: string,
  done: (schedule: Schedule) => boolean,
  timeoutMs = 30_000,
) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const schedule = await readSchedule(scheduleId);
    if (done(schedule)) return schedule;
    if (Date.now() > deadline)
      throw new Error(`schedule ${scheduleId} did not get there: ${JSON.stringify(schedule)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** The cron runs of one backlog item, newest first. */
const cronRunsOf = async (itemId: string) => {
  const { body } = await api<{ items: Run[] }>(
    'GET',
    `/v1/projects/${endpoints().projectId}/runs?source=cron&limit=100`,
  );
  return body.items.filter((run) => run.itemId === itemId);
};

describe('schedules', () => {
  beforeAll(() => setSchedulerSpeed(60));
  // the local cloud is shared: the other test files see the clock run at its own pace
  afterAll(() => setSchedulerSpeed(1));

  it('refuses an invalid expression or time zone with 400 and the reason, and saves nothing', async () => {
    const scheduleId = `bad-${unique()}`;
    for (const [body, reason] of [
      [{ expression: 'cron(0 9 * * * *)' }, /^expression: one of day-of-month and day-of-week must be \?/],
      [{ expression: 'rate(1 minutes)' }, /^expression: write rate\(1 minute\) for one/],
      [{ expression: 'cron(0 9 32 * ? *)' }, /^expression: day-of-month: 32 is out of range \(1-31\)/],
      [
        { expression: 'at(2030-01-01T09:00:00)' },
        /^expression: one-time at\(\.\.\.\) expressions are not taken/,
      ],
      [{ expression: 'rate(5 minutes)', timezone: 'Mars/Olympus' }, /^timezone: an IANA time zone name/],
    ] as const) {
      const res = await putSchedule(scheduleId, { itemId: 'SCHED-BAD', ...body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((res.body as unknown as { error: { message: string } }).error.message).toMatch(reason);
    }
    const unknownPod = await putSchedule(scheduleId, { itemId: 'SCHED-BAD', podId: 'no-such-pod' });
    expect(unknownPod.status).toBe(400);
    expect((await api('GET', schedulePath(scheduleId))).status).toBe(404);
  });

  it('dispatches a one-minute rate’s runs with source cron as its owner, skipping and recording the ticks that find the last run active', async () => {
    const scheduleId = `every-minute-${unique()}`;
    const itemId = `SCHED-${unique()}`;
    const saved = await putSchedule(scheduleId, { itemId });
    expect(saved.status).toBe(200);
    expect(saved.body).toMatchObject({ expression: 'rate(1 minute)', timezone: 'UTC', enabled: true });

    // the first tick comes at once: a supervised run that waits at its plan, so it stays active
    const first = await waitForSchedule(scheduleId, (s) => s.lastRun !== undefined);
    const runId = first.lastRun?.runId as string;
    const { run } = await waitForRun(runId, (r) => r.status === 'AWAITING_APPROVAL');
    expect(run).toMatchObject({
      source: 'cron',
      attribution: saved.body.savedBy.userId,
      itemId,
      podId: endpoints().scriptedPodId,
      mode: 'supervised',
    });

    // the ticks that find it active are skipped, each recorded with the run it found and its status
    const skipped = await waitForSchedule(scheduleId, (s) =>
      s.skips.some((skip) => skip.activeRunStatus === 'AWAITING_APPROVAL'),
    );
    expect(skipped.lastRun?.runId).toBe(runId);
    expect(skipped.skips).toHaveLength(Math.min(skipped.skippedCount, SCHEDULE.recentSkips));
    expect(skipped.skips[0]).toMatchObject({
      activeRunId: runId,
      activeRunStatus: 'AWAITING_APPROVAL',
      scheduledTime: skipped.lastFiredAt,
    });
    expect(await cronRunsOf(itemId)).toHaveLength(1);

    // once it has ended, the next tick dispatches again
    expect((await api('POST', `/v1/runs/${runId}/stop`)).status).toBe(200);
    const next = await waitForSchedule(scheduleId, (s) => s.lastRun?.runId !== runId);
    const nextRunId = next.lastRun?.runId as string;
    await waitForRun(nextRunId, (run) => run.source === 'cron' && run.itemId === itemId);

    // disabled, it dispatches nothing more
    expect((await putSchedule(scheduleId, { itemId, enabled: false })).status).toBe(200);
    expect((await api('POST', `/v1/runs/${nextRunId}/stop`)).status).toBe(200);
    const runs = (await cronRunsOf(itemId)).length;
    await new Promise((r) => setTimeout(r, 3000));
    expect(await cronRunsOf(itemId)).toHaveLength(runs);
    expect(runs).toBe(2);

    expect((await api('DELETE', schedulePath(scheduleId))).status).toBe(204);
    expect((await api('GET', schedulePath(scheduleId))).status).toBe(404);
  });

  it('starts nothing for a schedule saved disabled, and lists it', async () => {
    const scheduleId = `disabled-${unique()}`;
    const itemId = `SCHED-${unique()}`;
    expect((await putSchedule(scheduleId, { itemId, enabled: false, mode: 'autopilot' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 3000));
    const schedule = await readSchedule(scheduleId);
    expect(schedule.lastFiredAt).toBeUndefined();
    expect(await cronRunsOf(itemId)).toEqual([]);
    const listed = await api<{ items: Schedule[] }>('GET', `/v1/projects/${endpoints().projectId}/schedules`);
    expect(listed.body.items.map((s) => s.scheduleId)).toContain(scheduleId);
    expect((await api('DELETE', schedulePath(scheduleId))).status).toBe(204);
    expect((await api('DELETE', schedulePath(scheduleId))).status).toBe(404);
  });
});
