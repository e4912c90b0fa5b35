import { describe, expect, it } from 'vitest';
import {
  decideTick,
  isTimeZone,
  parseScheduleExpression,
  SCHEDULE,
  type Schedule,
  ScheduleExpressionError,
  type ScheduleSkip,
  skipRecord,
  type Tick,
  tickIdempotencyKey,
} from '../../shared/domain/schedule.js';

const scheduleFactory = (overrides: Partial<Schedule> = {}): Schedule => ({
  accountId: 'acct-1',
  projectId: 'proj-1',
  scheduleId: 'nightly',
  expression: 'rate(1 minute)',
  timezone: 'UTC',
  podId: 'pod-1',
  itemId: 'ITEM-1',
  prompt: 'p',
  mode: 'autopilot',
  enabled: true,
  savedBy: { userId: 'alice', accountRole: 'member' },
  revision: 'rev-1',
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  skips: [],
  skippedCount: 0,
  ...overrides,
});

const tick = (scheduledTime: string, revision = 'rev-1'): Tick => ({
  accountId: 'acct-1',
  projectId: 'proj-1',
  scheduleId: 'nightly',
  revision,
  scheduledTime,
});

const NOW = new Date('2026-01-01T10:00:30.000Z');

describe('parseScheduleExpression', () => {
  it.each([
    ['rate(1 minute)', { kind: 'rate', value: 1, unit: 'minute' }],
    ['rate(5 minutes)', { kind: 'rate', value: 5, unit: 'minute' }],
    ['rate(1 hour)', { kind: 'rate', value: 1, unit: 'hour' }],
    ['rate(12 hours)', { kind: 'rate', value: 12, unit: 'hour' }],
    ['rate(1 day)', { kind: 'rate', value: 1, unit: 'day' }],
    ['rate(  3   days )', { kind: 'rate', value: 3, unit: 'day', text: 'rate(3 days)' }],
  ])('takes %s', (text, expected) => {
    expect(parseScheduleExpression(text)).toMatchObject(expected);
  });

  it.each([
    'cron(0 9 ? * MON-FRI *)',
    'cron(0 9 * * ? *)',
    'cron(0/15 * * * ? *)',
    'cron(*/5 8-18 ? * 2-6 *)',
    'cron(0 12 L * ? *)',
    'cron(0 12 3W * ? *)',
    'cron(0 12 ? * 6L *)',
    'cron(0 12 ? * L *)',
    'cron(0 12 ? * 3#2 *)',
    'cron(0 12 ? * TUE#1 *)',
    'cron(0 0 1,15 JAN-MAR ? 2027-2030)',
    'cron(30 23 ? * sun *)',
    'cron(0 0 1 */3 ? 2026/2)',
    'cron(0 0 1 JAN,FEB,MAR,APR,MAY,JUN,JUL,AUG,SEP,OCT,NOV,DEC ? *)',
    'cron(0 0 ? * SUN,MON,TUE,WED,THU,FRI,SAT *)',
    'cron(*/60 */24 */31 */12 ? */230)',
    'cron(*/1 5-5 15W * ? *)',
    'cron(0 12 ? * 3#5 *)',
  ])('takes the cron expression %s', (text) => {
    expect(parseScheduleExpression(text)).toMatchObject({ kind: 'cron', text });
  });

  it('makes the whitespace of an expression single, the one form stored and sent', () => {
    expect(parseScheduleExpression('  cron( 0  9 ? *\tMON-FRI * ) ').text).toBe('cron(0 9 ? * MON-FRI *)');
    expect(parseScheduleExpression('cron(0 9 ? * MON-FRI *)')).toMatchObject({
      fields: { minutes: '0', hours: '9', dayOfMonth: '?', month: '*', dayOfWeek: 'MON-FRI', year: '*' },
    });
  });

  it('reads a one-time expression, a date and time that exists', () => {
    expect(parseScheduleExpression('at( 2027-03-01T09:30:45 )')).toEqual({
      kind: 'at',
      dateTime: '2027-03-01T09:30:45',
      text: 'at(2027-03-01T09:30:45)',
    });
  });

  it('takes an expression of the greatest length Scheduler does, and says what a refusal is', () => {
    const longest = `cron(${'0,'.repeat(119)}10 9 * * ? *)`;
    expect(longest).toHaveLength(SCHEDULE.maxExpressionLength);
    expect(parseScheduleExpression(longest).kind).toBe('cron');
    expect(() => parseScheduleExpression('rate(5)')).toThrow(ScheduleExpressionError);
    try {
      parseScheduleExpression('rate(5)');
    } catch (err) {
      expect((err as Error).name).toBe('ScheduleExpressionError');
    }
  });

  it.each([
    ['every 5 minutes', /an expression is rate\(value unit\)/],
    ['xrate(5 minutes)', /an expression is rate\(value unit\)/],
    ['rate(5 minutes)x', /an expression is rate\(value unit\)/],
    ['rate(5 minutes x)', /a rate expression is rate\(value unit\)/],
    ['cron(x5 9 * * ? *)', /minutes: "x5" is not a value \(0-59\)/],
    ['cron(5x 9 * * ? *)', /minutes: "5x" is not a value/],
    ['cron(*/61 9 * * ? *)', /minutes: the increment in "\*\/61" must be a whole number from 1 to 60/],
    ['cron(0 9 */32 * ? *)', /day-of-month: the increment in "\*\/32" must be a whole number from 1 to 31/],
    ['cron(*/x5 9 * * ? *)', /the increment in "\*\/x5"/],
    ['cron(*/5x 9 * * ? *)', /the increment in "\*\/5x"/],
    ['cron(1-2-3 9 * * ? *)', /minutes: "1-2-3" is not a value or a range/],
    ['cron(0 0 1 DEC-JAN ? *)', /month: the range "DEC-JAN" ends before it starts/],
    ['cron(0 9 x5W * ? *)', /day-of-month: "x5W": \? L W and # stand alone/],
    ['cron(0 9 ? * 1-5L *)', /day-of-week: "5L": \? L W and # stand alone/],
    ['cron(0 9 ? * 6L,7 *)', /day-of-week: "6L": \? L W and # stand alone/],
    ['cron(0 9 ? * 1-3#2 *)', /day-of-week: "3#2": \? L W and # stand alone/],
    ['cron(0 9 ? * 3#2,4#1 *)', /day-of-week: "3#2": \? L W and # stand alone/],
    ['cron(0 9 ? * 3#10 *)', /day-of-week: in "3#10" the week of the month must be 1-5/],
    ['cron(0 9 ? * 3#0 *)', /day-of-week: in "3#0" the week of the month must be 1-5/],
    ['at(x2027-01-01T09:00:00)', /at\(yyyy-mm-ddThh:mm:ss\)/],
    ['at(2027-01-01T09:00:00x)', /at\(yyyy-mm-ddThh:mm:ss\)/],
    ['at(2027-01-01T25:00:00)', /a date and time that exists/],
    ['rate(5)', /rate\(value unit\)/],
    ['rate(0 minutes)', /whole number of 1 or more/],
    ['rate(1 minutes)', /rate\(1 minute\) for one and rate\(2 minutes\) for more/],
    ['rate(5 hour)', /rate\(1 hour\) for one and rate\(5 hours\) for more/],
    ['rate(30 seconds)', /rate\(value unit\)/],
    ['rate(1.5 hours)', /rate\(value unit\)/],
    ['cron(0 9 * * ?)', /six fields .* not 5/],
    ['cron(0 9 * * ? * *)', /six fields .* not 7/],
    ['cron(0 9 * * * *)', /one of day-of-month and day-of-week must be \?/],
    ['cron(0 9 ? * ? *)', /one of day-of-month and day-of-week must be \?/],
    ['cron(60 9 * * ? *)', /minutes: 60 is out of range \(0-59\)/],
    ['cron(0 24 * * ? *)', /hours: 24 is out of range \(0-23\)/],
    ['cron(0 9 0 * ? *)', /day-of-month: 0 is out of range \(1-31\)/],
    ['cron(0 9 32 * ? *)', /day-of-month: 32 is out of range/],
    ['cron(0 9 * 13 ? *)', /month: 13 is out of range \(1-12\)/],
    ['cron(0 9 * FOO ? *)', /month: "FOO" is not a value \(1-12 or JAN-DEC\)/],
    ['cron(0 9 ? * 0 *)', /day-of-week: 0 is out of range \(1-7\)/],
    ['cron(0 9 ? * 8 *)', /day-of-week: 8 is out of range/],
    ['cron(0 9 * * ? 1969)', /year: 1969 is out of range \(1970-2199\)/],
    ['cron(0 9 * * ? 2200)', /year: 2200 is out of range/],
    ['cron(5-2 * * * ? *)', /minutes: the range "5-2" ends before it starts/],
    ['cron(*/0 * * * ? *)', /minutes: the increment in "\*\/0" must be a whole number from 1 to 60/],
    ['cron(0/1/2 * * * ? *)', /more than one \//],
    ['cron(0 ? * * ? *)', /hours: \? is only for day-of-month or day-of-week/],
    ['cron(0 L * * ? *)', /hours: "L": \? L W and # stand alone/],
    ['cron(0 9 5W,6 * ? *)', /day-of-month: "5W": \? L W and # stand alone/],
    ['cron(0 9 ? * MON#6 *)', /the week of the month must be 1-5/],
    ['cron(0 9 1- * ? *)', /day-of-month: "1-" is not a value or a range/],
    ['cron(, 9 * * ? *)', /minutes: "" is not a value or a range/],
    ['at(2027-02-30T09:00:00)', /a date and time that exists/],
    ['at(2027-02-03 09:00)', /at\(yyyy-mm-ddThh:mm:ss\)/],
    [`cron(${'0,'.repeat(130)}0 9 * * ? *)`, /at most 256 characters/],
  ])('refuses %s, saying why', (text, reason) => {
    expect(() => parseScheduleExpression(text)).toThrow(reason);
  });
});

describe('isTimeZone', () => {
  it.each(['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata', 'Etc/GMT+5'])('knows %s', (zone) => {
    expect(isTimeZone(zone)).toBe(true);
  });

  it.each(['Mars/Olympus', '+02:00', 'GMT+2:00', '', 'Europe/Paris;', 'a'.repeat(70)])(
    'refuses %j',
    (zone) => {
      expect(isTimeZone(zone)).toBe(false);
    },
  );
});

describe('decideTick', () => {
  const ran = (minute: string) => ({
    runId: 'run_PREVIOUS',
    scheduledTime: `2026-01-01T09:${minute}:00.000Z`,
  });
  const afterRun = (overrides: Partial<Schedule> = {}) =>
    scheduleFactory({ lastRun: ran('59'), lastFiredAt: '2026-01-01T09:59:00.000Z', ...overrides });
  const at = tick('2026-01-01T10:00:00.000Z');

  it('dispatches a tick of an enabled schedule that has no run yet, or whose last run ended', () => {
    expect(decideTick(scheduleFactory(), at, undefined, NOW)).toEqual({ kind: 'dispatch' });
    for (const status of ['COMPLETED', 'FAILED', 'CANCELLED', 'STOPPED', 'DONE', 'DEAD_LETTER'] as const) {
      expect(decideTick(afterRun(), at, status, NOW)).toEqual({ kind: 'dispatch' });
    }
  });

  it('skips a tick while the last run is still active, saying when and which run', () => {
    for (const status of ['QUEUED', 'PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL', 'RETRYING'] as const) {
      expect(decideTick(afterRun(), at, status, NOW)).toEqual({
        kind: 'skip',
        skip: {
          scheduledTime: '2026-01-01T10:00:00.000Z',
          at: NOW.toISOString(),
          activeRunId: 'run_PREVIOUS',
          activeRunStatus: status,
        },
      });
    }
  });

  it('counts a claimed run not created yet as being dispatched, until its tick can no longer be retried', () => {
    expect(decideTick(afterRun(), at, undefined, NOW)).toMatchObject({
      kind: 'skip',
      skip: { activeRunId: 'run_PREVIOUS', activeRunStatus: 'QUEUED' },
    });
    const lastRetry = new Date(Date.parse(ran('59').scheduledTime) + SCHEDULE.tickRetry.maxAgeSeconds * 1000);
    expect(decideTick(afterRun(), at, undefined, lastRetry)).toMatchObject({ kind: 'skip' });
    const later = new Date(lastRetry.getTime() + 1);
    expect(decideTick(afterRun(), at, undefined, later)).toEqual({ kind: 'dispatch' });
  });

  it('ignores a tick of a disabled schedule, and one carrying another revision than the stored one', () => {
    expect(decideTick(scheduleFactory({ enabled: false }), at, undefined, NOW)).toEqual({
      kind: 'ignore',
      reason: 'disabled',
    });
    expect(decideTick(scheduleFactory({ revision: 'rev-2' }), at, undefined, NOW)).toEqual({
      kind: 'ignore',
      reason: 'changed',
    });
  });

  it('knows a tick after the latest one acted on from the same one and from an older one', () => {
    const schedule = scheduleFactory({ lastFiredAt: '2026-01-01T10:00:00.000Z' });
    expect(decideTick(schedule, tick('2026-01-01T10:00:01.000Z'), undefined, NOW)).toEqual({
      kind: 'dispatch',
    });
    expect(decideTick(schedule, tick('2026-01-01T10:00:00Z'), undefined, NOW)).toEqual({ kind: 'repeat' });
    expect(decideTick(schedule, tick('2026-01-01T09:59:00.000Z'), undefined, NOW)).toEqual({
      kind: 'ignore',
      reason: 'stale',
    });
  });

  it('finishes the dispatch a tick delivered again had claimed, and repeats nothing else', () => {
    const claimed = scheduleFactory({
      lastFiredAt: at.scheduledTime,
      lastRun: { runId: 'run_CLAIMED', ...at },
    });
    expect(decideTick(claimed, at, undefined, NOW)).toEqual({ kind: 'resume', runId: 'run_CLAIMED' });
    // created, even still active: this tick's own run, not a reason to skip
    expect(decideTick(claimed, at, 'RUNNING', NOW)).toEqual({ kind: 'repeat' });
    // this tick was a skip: the run it found belongs to an older tick
    const skipped = afterRun({ lastFiredAt: at.scheduledTime });
    expect(decideTick(skipped, at, undefined, NOW)).toEqual({ kind: 'repeat' });
  });
});

describe('skipRecord', () => {
  const skip = (minute: number): ScheduleSkip => ({
    scheduledTime: `2026-01-01T10:${String(minute).padStart(2, '0')}:00.000Z`,
    at: '2026-01-01T10:00:01.000Z',
    activeRunId: 'run_A',
    activeRunStatus: 'RUNNING',
  });

  it('keeps the newest skips first, no more than SCHEDULE.recentSkips', () => {
    const full = Array.from({ length: SCHEDULE.recentSkips }, (_, i) => skip(SCHEDULE.recentSkips - i));
    const record = skipRecord({ skips: full }, skip(59));
    expect(record).toMatchObject({ outcome: 'skipped', scheduledTime: skip(59).scheduledTime });
    expect(record.outcome === 'skipped' && record.skips).toEqual([skip(59), ...full.slice(0, -1)]);
  });
});

describe('tickIdempotencyKey', () => {
  it('is the schedule and the tick’s time, in a form no Idempotency-Key header can take', () => {
    const key = tickIdempotencyKey(tick('2026-01-01T10:00:00.000Z'));
    expect(key).toBe('schedule proj-1/nightly 2026-01-01T10:00:00.000Z');
    expect(key).not.toMatch(/^[\x21-\x7e]{1,200}$/);
  });
});
