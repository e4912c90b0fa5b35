import { isTerminal, type RunMode, type RunStatus } from './run.js';
import type { AccountRole } from './tenancy.js';

/**
 * Schedules that start runs: when (an EventBridge Scheduler expression in a time zone) and what (the
 * dispatch each tick makes). Pure domain: the expression grammar, and what a tick does.
 */

export const SCHEDULE = {
  /** the skips a schedule keeps on its record, newest first */
  recentSkips: 20,
  /** EventBridge Scheduler's limit on an expression's length */
  maxExpressionLength: 256,
  /** how often Scheduler invokes a tick again after a failure, and for how long after its time */
  tickRetry: { attempts: 10, maxAgeSeconds: 3600 },
} as const;

export const DEFAULT_TIME_ZONE = 'UTC';

// ---------------------------------------------------------------------------------------------------
// Expressions, as EventBridge Scheduler takes them: rate(value unit), cron(six fields), at(date-time).
// Written by hand: cron libraries parse Unix or Quartz cron, whose fields, ranges and rules differ from
// AWS's (six fields with a year, day-of-week 1-7 from Sunday, exactly one of the two day fields `?`).

export type RateUnit = 'minute' | 'hour' | 'day';

/** A cron expression's six fields as written, checked against AWS's rules; the local Scheduler evaluates them. */
export interface CronFields {
  minutes: string;
  hours: string;
  dayOfMonth: string;
  month: string;
  dayOfWeek: string;
  year: string;
}

export type ScheduleExpression =
  | { kind: 'rate'; value: number; unit: RateUnit; text: string }
  | { kind: 'cron'; fields: CronFields; text: string }
  /** a wall-clock date and time, in the schedule's time zone */
  | { kind: 'at'; dateTime: string; text: string };

/** Why an expression is not one EventBridge Scheduler takes: the message says what is wrong. */
export class ScheduleExpressionError extends Error {
  override readonly name = 'ScheduleExpressionError';
}

const refuse = (message: string): never => {
  throw new ScheduleExpressionError(message);
};

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

interface FieldRule {
  name: string;
  min: number;
  max: number;
  /** names for its values, the first standing for `min` */
  names?: string[];
}

const FIELD_RULES: Record<keyof CronFields, FieldRule> = {
  minutes: { name: 'minutes', min: 0, max: 59 },
  hours: { name: 'hours', min: 0, max: 23 },
  dayOfMonth: { name: 'day-of-month', min: 1, max: 31 },
  month: { name: 'month', min: 1, max: 12, names: MONTHS },
  dayOfWeek: { name: 'day-of-week', min: 1, max: 7, names: DAYS },
  year: { name: 'year', min: 1970, max: 2199 },
};
const FIELD_ORDER: (keyof CronFields)[] = ['minutes', 'hours', 'dayOfMonth', 'month', 'dayOfWeek', 'year'];

const fieldValue = (rule: FieldRule, text: string): number => {
  const named = rule.names?.indexOf(text.toUpperCase()) ?? -1;
  if (named >= 0) return rule.min + named;
  if (/[?LW#]/i.test(text)) {
    return refuse(
      `${rule.name}: "${text}": ? L W and # stand alone in their field, and only day-of-month (? L nW) and day-of-week (? L nL n#k) take them`,
    );
  }
  if (!/^\d{1,4}$/.test(text)) {
    const names = rule.names ? ` or ${rule.names[0]}-${rule.names.at(-1)}` : '';
    return refuse(`${rule.name}: "${text}" is not a value (${rule.min}-${rule.max}${names})`);
  }
  const value = Number(text);
  if (value < rule.min || value > rule.max) {
    return refuse(`${rule.name}: ${value} is out of range (${rule.min}-${rule.max})`);
  }
  return value;
};

/** `*`, `v`, `a-b`, each optionally `/step`: the forms every field takes. */
const checkListItem = (rule: FieldRule, item: string): void => {
  const [base = '', step, extra] = item.split('/');
  if (extra !== undefined) refuse(`${rule.name}: "${item}" has more than one /`);
  if (step !== undefined) {
    const span = rule.max - rule.min + 1;
    if (!/^\d{1,4}$/.test(step) || Number(step) < 1 || Number(step) > span) {
      refuse(`${rule.name}: the increment in "${item}" must be a whole number from 1 to ${span}`);
    }
  }
  if (base === '*') return;
  const [from = '', to, more] = base.split('-');
  if (more !== undefined || from === '' || to === '')
    refuse(`${rule.name}: "${item}" is not a value or a range`);
  const start = fieldValue(rule, from);
  if (to !== undefined && fieldValue(rule, to) < start) {
    refuse(`${rule.name}: the range "${base}" ends before it starts`);
  }
};

/** A field's special forms, each standing alone in its field: true when the field is one. */
const checkSpecial = (key: keyof CronFields, field: string): boolean => {
  if (field === '?') {
    if (key !== 'dayOfMonth' && key !== 'dayOfWeek') {
      refuse(`${FIELD_RULES[key].name}: ? is only for day-of-month or day-of-week`);
    }
    return true;
  }
  if (key === 'dayOfMonth') {
    if (field === 'L') return true;
    const weekday = /^(\d{1,2})W$/i.exec(field);
    if (weekday) {
      fieldValue(FIELD_RULES.dayOfMonth, weekday[1] as string);
      return true;
    }
  }
  if (key === 'dayOfWeek') {
    if (field === 'L') return true;
    const last = /^([1-7])L$/.exec(field);
    if (last) {
      fieldValue(FIELD_RULES.dayOfWeek, last[1] as string);
      return true;
    }
    const nth = /^(\w{1,3})#(\d{1,2})$/.exec(field);
    if (nth) {
      fieldValue(FIELD_RULES.dayOfWeek, nth[1] as string);
      const n = Number(nth[2]);
      if (n < 1 || n > 5) refuse(`day-of-week: in "${field}" the week of the month must be 1-5`);
      return true;
    }
  }
  return false;
};

const parseCron = (text: string, body: string): ScheduleExpression => {
  const parts = body.trim().split(/\s+/);
  if (parts.length !== 6) {
    refuse(
      `a cron expression has six fields (minutes hours day-of-month month day-of-week year), not ${parts.length}`,
    );
  }
  const fields = Object.fromEntries(
    FIELD_ORDER.map((key, i) => [key, parts[i] as string]),
  ) as unknown as CronFields;
  for (const key of FIELD_ORDER) {
    const field = fields[key];
    if (checkSpecial(key, field)) continue;
    for (const item of field.split(',')) checkListItem(FIELD_RULES[key], item);
  }
  if ((fields.dayOfMonth === '?') === (fields.dayOfWeek === '?')) {
    refuse(
      'one of day-of-month and day-of-week must be ? and the other not: e.g. cron(0 9 * * ? *) every day at 9:00, cron(0 9 ? * MON-FRI *) on weekdays',
    );
  }
  return { kind: 'cron', fields, text };
};

const parseRate = (text: string, body: string): ScheduleExpression => {
  const match = /^\s*(\d+)\s+(minutes?|hours?|days?)\s*$/.exec(body);
  if (!match) return refuse('a rate expression is rate(value unit), e.g. rate(1 minute) or rate(5 minutes)');
  const value = Number(match[1]);
  const unit = match[2] as string;
  if (!Number.isSafeInteger(value) || value < 1) refuse('the rate value must be a whole number of 1 or more');
  const singular = unit.replace(/s$/, '') as RateUnit;
  if ((value === 1) !== (unit === singular)) {
    refuse(`write rate(1 ${singular}) for one and rate(${value === 1 ? 2 : value} ${singular}s) for more`);
  }
  return { kind: 'rate', value, unit: singular, text };
};

const parseAt = (text: string, body: string): ScheduleExpression => {
  const dateTime = body.trim();
  const calendar = new Date(`${dateTime}Z`);
  // Written back, it must read the same: another form, or a day the month does not have (02-30, which
  // rolls over into March), does not.
  if (Number.isNaN(calendar.getTime()) || calendar.toISOString().slice(0, 19) !== dateTime) {
    refuse('a one-time expression is at(yyyy-mm-ddThh:mm:ss), a date and time that exists');
  }
  return { kind: 'at', dateTime, text };
};

/**
 * An expression as EventBridge Scheduler takes it, with its fields checked against AWS's rules;
 * whitespace inside it is made single (`text`), as the one form stored and sent. Throws a
 * ScheduleExpressionError that says what is wrong.
 */
export const parseScheduleExpression = (input: string): ScheduleExpression => {
  const trimmed = input.trim();
  if (trimmed.length > SCHEDULE.maxExpressionLength) {
    refuse(`an expression has at most ${SCHEDULE.maxExpressionLength} characters`);
  }
  const match = /^(rate|cron|at)\((.*)\)$/s.exec(trimmed);
  if (!match) {
    return refuse(
      'an expression is rate(value unit), e.g. rate(5 minutes), or cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 9 ? * MON-FRI *)',
    );
  }
  const [, kind, body = ''] = match;
  const text = `${kind}(${body.trim().split(/\s+/).join(' ')})`;
  if (kind === 'rate') return parseRate(text, body);
  if (kind === 'cron') return parseCron(text, body);
  return parseAt(text, body);
};

/** An IANA time zone name the runtime knows (`Europe/Paris`, `UTC`), not an offset. */
export const isTimeZone = (name: string): boolean => {
  // Stryker disable next-line ConditionalExpression,Regex: equivalent on Node 20, whose Intl refuses offsets; Node 22's (Lambda's) takes '+02:00', which Scheduler does not
  if (!/^[A-Za-z][A-Za-z0-9_+/-]{0,63}$/.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
};

// ---------------------------------------------------------------------------------------------------
// The schedule and its ticks

export interface ScheduleKey {
  accountId: string;
  projectId: string;
  scheduleId: string;
}

/** Who saved the schedule last: its runs are theirs (attribution), dispatched with the rights they have. */
export interface ScheduleOwner {
  userId: string;
  email?: string;
  accountRole: AccountRole;
}

/** A tick that dispatched nothing because the schedule's previous run had not ended. */
export interface ScheduleSkip {
  /** the tick's scheduled time */
  scheduledTime: string;
  /** when the skip was recorded */
  at: string;
  /** the run still active, and its status then */
  activeRunId: string;
  activeRunStatus: RunStatus;
}

/** What a schedule is as its admins save it: when, and what each tick dispatches. */
export interface ScheduleSettings extends ScheduleKey {
  /** as EventBridge Scheduler writes it: rate(...) or cron(...) */
  expression: string;
  /** the IANA time zone the expression is evaluated in */
  timezone: string;
  podId: string;
  itemId: string;
  prompt: string;
  mode: RunMode;
  ref?: string;
  enabled: boolean;
  savedBy: ScheduleOwner;
  /**
   * Changes with every save. The Scheduler's copy carries it in each tick, and a tick acts only when
   * it matches: a copy left behind by a save that failed half-way starts nothing.
   */
  revision: string;
  createdAt: string;
  updatedAt: string;
}

/** A schedule as stored: its settings, and what its ticks recorded. */
export interface Schedule extends ScheduleSettings {
  /** the scheduled time of the latest tick acted on (dispatched, skipped or refused) */
  lastFiredAt?: string;
  /**
   * The run the latest dispatching tick started, and that tick's scheduled time. The tick claims it
   * here (its id chosen beforehand) before it creates the run, so another tick finds it even then.
   */
  lastRun?: { runId: string; scheduledTime: string };
  /** the latest skips, newest first, at most SCHEDULE.recentSkips */
  skips: ScheduleSkip[];
  skippedCount: number;
  /** why the latest tick could not dispatch (its owner lost the project, the pod was removed, ...) */
  lastError?: { scheduledTime: string; message: string };
}

/** What a tick carries: the Scheduler's copy of the schedule's key and revision, and its scheduled time. */
export interface Tick extends ScheduleKey {
  revision: string;
  /** ISO 8601, as Date.toISOString writes it */
  scheduledTime: string;
}

export type TickDecision =
  | { kind: 'ignore'; reason: 'changed' | 'disabled' | 'stale' }
  /** this tick was acted on already: Scheduler delivers at least once */
  | { kind: 'repeat' }
  | { kind: 'skip'; skip: ScheduleSkip }
  /** claim a new run for this tick, then dispatch it */
  | { kind: 'dispatch' }
  /** this tick claimed its run, which does not exist yet: an earlier delivery died before creating it */
  | { kind: 'resume'; runId: string };

/**
 * What a tick does, given its schedule as stored and the status of the run its latest dispatching tick
 * claimed (undefined: that run does not exist, or not yet). A tick older than the latest one acted on
 * is late (a retry that lost to the next tick) and does nothing, so the record never moves back; the
 * same tick again is a repeat, or finishes the dispatch it claimed. Otherwise a previous run still
 * active makes the tick a skip, and only then does it dispatch. A claimed run that does not exist yet
 * counts as active (`QUEUED`: it is being dispatched) until the Scheduler can no longer retry the
 * tick that claimed it.
 */
export const decideTick = (
  schedule: Schedule,
  tick: Tick,
  lastRunStatus: RunStatus | undefined,
  now: Date,
): TickDecision => {
  if (schedule.revision !== tick.revision) return { kind: 'ignore', reason: 'changed' };
  if (!schedule.enabled) return { kind: 'ignore', reason: 'disabled' };
  const scheduled = Date.parse(tick.scheduledTime);
  const { lastRun } = schedule;
  // Stryker disable next-line ConditionalExpression: equivalent, without a last tick both comparisons are with NaN and false
  if (schedule.lastFiredAt !== undefined) {
    const last = Date.parse(schedule.lastFiredAt);
    if (scheduled < last) return { kind: 'ignore', reason: 'stale' };
    if (scheduled === last) {
      const claimedHere = lastRun !== undefined && Date.parse(lastRun.scheduledTime) === scheduled;
      return claimedHere && lastRunStatus === undefined
        ? { kind: 'resume', runId: lastRun.runId }
        : { kind: 'repeat' };
    }
  }
  if (lastRun === undefined) return { kind: 'dispatch' };
  const stillClaimed =
    lastRunStatus === undefined &&
    now.getTime() - Date.parse(lastRun.scheduledTime) <= SCHEDULE.tickRetry.maxAgeSeconds * 1000;
  if (stillClaimed || (lastRunStatus !== undefined && !isTerminal(lastRunStatus))) {
    return {
      kind: 'skip',
      skip: {
        scheduledTime: tick.scheduledTime,
        at: now.toISOString(),
        activeRunId: lastRun.runId,
        activeRunStatus: lastRunStatus ?? 'QUEUED',
      },
    };
  }
  return { kind: 'dispatch' };
};

/**
 * What a tick that acted writes on its schedule, only while its latest tick acted on is still the one
 * read: `claimed` before its run is created, `refused` once a claimed dispatch was refused (the claim
 * withdrawn), `skipped` with the skips to keep.
 */
export type TickRecord =
  | { outcome: 'claimed'; scheduledTime: string; runId: string }
  | { outcome: 'skipped'; scheduledTime: string; skips: ScheduleSkip[] }
  | { outcome: 'refused'; scheduledTime: string; message: string };

/** The skip recorded: newest first, the oldest dropped beyond SCHEDULE.recentSkips. */
export const skipRecord = (schedule: Pick<Schedule, 'skips'>, skip: ScheduleSkip): TickRecord => ({
  outcome: 'skipped',
  scheduledTime: skip.scheduledTime,
  skips: [skip, ...schedule.skips].slice(0, SCHEDULE.recentSkips),
});

/**
 * The idempotency key of a tick's dispatch: the same tick delivered again finds the run it started.
 * It holds spaces, which an Idempotency-Key header cannot, so no client's key can take a tick's.
 */
export const tickIdempotencyKey = (tick: Pick<Tick, 'projectId' | 'scheduleId' | 'scheduledTime'>): string =>
  `schedule ${tick.projectId}/${tick.scheduleId} ${tick.scheduledTime}`;
