import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cron } from 'croner';
import {
  type CronFields,
  isTimeZone,
  parseScheduleExpression,
  type RateUnit,
  type ScheduleExpression,
  ScheduleExpressionError,
} from '../../../shared/domain/schedule.js';
import { AwsError, readBody } from './json-protocol.js';
import { loadState, saveState } from './persistence.js';

/**
 * The local cloud's EventBridge Scheduler, over the REST-JSON protocol the SDK speaks to it:
 * CreateSchedule, UpdateSchedule, GetSchedule, DeleteSchedule, ListSchedules and the schedule groups.
 * It ticks the schedules itself: rate expressions from their creation (or StartDate), cron and at()
 * expressions in their time zone, skipping a wall-clock time the clock jumps over (spring forward) as
 * Scheduler does; each tick invokes the target with its Input, the context attributes filled in,
 * retried under the RetryPolicy and then sent to the DeadLetterConfig queue.
 *
 * Its clock can run faster than time (`POST /_local/clock {"speed": 60}`: a minute a second), so a
 * test sees a one-minute rate tick every second; the times ticks carry are the clock's.
 */

export interface SchedulerEmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** a JSON file: groups and schedules are loaded from it on start and saved to it on close */
  persistPath?: string;
  /** invokes a tick's target (a function ARN); rejects when the invocation failed */
  invoke: (targetArn: string, payload: unknown) => Promise<unknown>;
  /** a tick whose retries are spent, with Scheduler's message attributes, to its dead-letter queue */
  deadLetter?: (queueArn: string, body: string, attributes: Record<string, string>) => Promise<void>;
  /** where the clock starts (default now) and how fast it runs (default 1) */
  clock?: { start?: Date; speed?: number };
  logError?: (message: string, err?: unknown) => void;
}

export interface SchedulerEmulator {
  url: string;
  port: number;
  /** the emulator's clock, epoch ms */
  now(): number;
  setSpeed(speed: number): void;
  close(): Promise<void>;
}

interface Target {
  Arn: string;
  RoleArn: string;
  Input?: string;
  RetryPolicy?: { MaximumEventAgeInSeconds?: number; MaximumRetryAttempts?: number };
  DeadLetterConfig?: { Arn?: string };
  [other: string]: unknown;
}

interface StoredSchedule {
  name: string;
  groupName: string;
  arn: string;
  expression: string;
  timezone: string;
  state: 'ENABLED' | 'DISABLED';
  description?: string;
  /** epoch ms */
  startDate?: number;
  endDate?: number;
  flexibleTimeWindow: { Mode: 'OFF' | 'FLEXIBLE'; MaximumWindowInMinutes?: number };
  target: Target;
  actionAfterCompletion: 'NONE' | 'DELETE';
  kmsKeyArn?: string;
  creationDate: number;
  lastModificationDate: number;
  /** a rate counts from here: its creation, or the latest update of its expression */
  anchor: number;
}

interface StoredGroup {
  name: string;
  arn: string;
  creationDate: number;
}

interface PersistedState {
  groups: StoredGroup[];
  schedules: StoredSchedule[];
}

/** Scheduler's defaults for a target without a RetryPolicy. */
const DEFAULT_RETRY = { MaximumEventAgeInSeconds: 86_400, MaximumRetryAttempts: 185 };
const NAME = /^[0-9a-zA-Z-_.]{1,64}$/;
const RATE_UNIT_MS: Record<RateUnit, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const MAX_SPEED = 86_400;

const validation = (message: string) => new AwsError('ValidationException', message);
const notFound = (message: string) => new AwsError('ResourceNotFoundException', message, 404);
const conflict = (message: string) => new AwsError('ConflictException', message, 409);

/** A clock that may run faster than time; moving its speed keeps the time it shows. */
class VirtualClock {
  private anchorReal = Date.now();
  private anchorVirtual: number;

  constructor(
    start: number,
    public speed: number,
  ) {
    this.anchorVirtual = start;
  }

  now(): number {
    return this.anchorVirtual + (Date.now() - this.anchorReal) * this.speed;
  }

  setSpeed(speed: number): void {
    this.anchorVirtual = this.now();
    this.anchorReal = Date.now();
    this.speed = speed;
  }

  /** real milliseconds until the clock shows `at` */
  delayUntil(at: number): number {
    return Math.max(0, (at - this.now()) / this.speed);
  }
}

/**
 * The emulator evaluates cron with croner, which reads Quartz's fields: seconds first, day-of-week 1-7
 * from Sunday (alternativeWeekdays); `a/n` is written `a-max/n` and a lone `L` in day-of-week (the
 * week's last day) `7`.
 */
const cronerPattern = (fields: CronFields): string => {
  const stepsFrom = (field: string, max: number) =>
    field
      .split(',')
      .map((item) =>
        item.replace(/^(\w+)\/(\d+)$/, (_, from: string, step: string) => `${from}-${max}/${step}`),
      )
      .join(',');
  const dayOfWeek = fields.dayOfWeek === 'L' ? '7' : stepsFrom(fields.dayOfWeek, 7);
  return [
    '0',
    stepsFrom(fields.minutes, 59),
    stepsFrom(fields.hours, 23),
    stepsFrom(fields.dayOfMonth, 31),
    stepsFrom(fields.month, 12),
    dayOfWeek,
    stepsFrom(fields.year, 2199),
  ].join(' ');
};

/** When a schedule ticks: the first tick strictly after a time, or undefined when it ticks no more. */
type Occurrences = (after: number) => number | undefined;

const occurrencesOf = (expression: ScheduleExpression, schedule: StoredSchedule): Occurrences => {
  if (expression.kind === 'rate') {
    const interval = expression.value * RATE_UNIT_MS[expression.unit];
    // to the second, as the scheduled time a tick carries is written
    const base = schedule.startDate ?? Math.floor(schedule.anchor / 1000) * 1000;
    return (after) => (after < base ? base : base + (Math.floor((after - base) / interval) + 1) * interval);
  }
  const job =
    expression.kind === 'at'
      ? new Cron(expression.dateTime, { timezone: schedule.timezone })
      : new Cron(cronerPattern(expression.fields), {
          timezone: schedule.timezone,
          alternativeWeekdays: true,
          mode: '7-part',
        });
  return (after) => {
    const from = schedule.startDate === undefined ? after : Math.max(after, schedule.startDate - 1);
    let next = job.nextRun(new Date(from));
    // a wall-clock time the time zone skips (spring forward) is skipped, not moved to the next hour
    while (next && expression.kind === 'cron' && !job.match(next)) next = job.nextRun(next);
    return next?.getTime();
  };
};

const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body ?? {}));
};

/** REST-JSON errors: the code in `x-amzn-errortype`, the message in the body. */
const sendError = (res: ServerResponse, err: AwsError) =>
  send(res, err.statusCode, { Message: err.message, message: err.message }, { 'x-amzn-errortype': err.code });

const seconds = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);

const optionalString = (input: Record<string, unknown>, name: string, max = 2048): string | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length > max) {
    throw validation(`${name} must be a string of at most ${max} characters.`);
  }
  return value;
};

const optionalDate = (input: Record<string, unknown>, name: string): number | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw validation(`${name} must be a timestamp.`);
  return value * 1000;
};

const intIn = (value: unknown, name: string, min: number, max: number): number | undefined => {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw validation(`${name} must be a whole number from ${min} to ${max}.`);
  }
  return value;
};

class SchedulerService {
  readonly groups = new Map<string, StoredGroup>();
  /** by `group/name` */
  readonly schedules = new Map<string, StoredSchedule>();
  readonly ticking = new Map<string, { next: number; timer: NodeJS.Timeout }>();
  readonly stats = { invocations: 0, failedAttempts: 0, deadLettered: 0 };
  closed = false;

  constructor(
    readonly clock: VirtualClock,
    private readonly options: SchedulerEmulatorOptions,
    private readonly region: string,
    private readonly accountId: string,
  ) {
    this.groups.set('default', { name: 'default', arn: this.groupArn('default'), creationDate: clock.now() });
  }

  private groupArn(name: string) {
    return `arn:aws:scheduler:${this.region}:${this.accountId}:schedule-group/${name}`;
  }

  private existingGroup(name: string): StoredGroup {
    const group = this.groups.get(name);
    if (!group) throw notFound(`Schedule group ${name} does not exist.`);
    return group;
  }

  private existing(name: string, groupName: string): StoredSchedule {
    this.existingGroup(groupName);
    const schedule = this.schedules.get(`${groupName}/${name}`);
    if (!schedule) throw notFound(`Schedule ${name} does not exist.`);
    return schedule;
  }

  /** A CreateSchedule or UpdateSchedule input, checked as Scheduler checks it. */
  private scheduleFrom(
    name: string,
    input: Record<string, unknown>,
    previous?: StoredSchedule,
  ): StoredSchedule {
    if (!NAME.test(name)) throw validation(`Name ${name} must be 1-64 letters, digits, -, _ or .`);
    const groupName = optionalString(input, 'GroupName', 64) ?? 'default';
    this.existingGroup(groupName);
    const text = optionalString(input, 'ScheduleExpression', 256);
    if (text === undefined) throw validation('ScheduleExpression is required.');
    let expression: ScheduleExpression;
    try {
      expression = parseScheduleExpression(text);
    } catch (err) {
      if (!(err instanceof ScheduleExpressionError)) throw err;
      throw validation(`Invalid Schedule Expression ${text}: ${err.message}`);
    }
    const timezone = optionalString(input, 'ScheduleExpressionTimezone', 50) ?? 'UTC';
    if (!isTimeZone(timezone)) throw validation(`Invalid ScheduleExpressionTimezone ${timezone}.`);
    const window = input.FlexibleTimeWindow as StoredSchedule['flexibleTimeWindow'] | undefined;
    if (!window || (window.Mode !== 'OFF' && window.Mode !== 'FLEXIBLE')) {
      throw validation('FlexibleTimeWindow with a Mode of OFF or FLEXIBLE is required.');
    }
    const maxWindow = intIn(window.MaximumWindowInMinutes, 'MaximumWindowInMinutes', 1, 1440);
    if ((window.Mode === 'FLEXIBLE') !== (maxWindow !== undefined)) {
      throw validation('MaximumWindowInMinutes is required with a FLEXIBLE window, and only then.');
    }
    const target = input.Target as Target | undefined;
    if (!target || typeof target.Arn !== 'string' || typeof target.RoleArn !== 'string') {
      throw validation('Target with an Arn and a RoleArn is required.');
    }
    intIn(target.RetryPolicy?.MaximumEventAgeInSeconds, 'MaximumEventAgeInSeconds', 60, 86_400);
    intIn(target.RetryPolicy?.MaximumRetryAttempts, 'MaximumRetryAttempts', 0, 185);
    const state = optionalString(input, 'State') ?? 'ENABLED';
    if (state !== 'ENABLED' && state !== 'DISABLED') throw validation('State must be ENABLED or DISABLED.');
    const actionAfterCompletion = optionalString(input, 'ActionAfterCompletion') ?? 'NONE';
    if (actionAfterCompletion !== 'NONE' && actionAfterCompletion !== 'DELETE') {
      throw validation('ActionAfterCompletion must be NONE or DELETE.');
    }
    const startDate = optionalDate(input, 'StartDate');
    const endDate = optionalDate(input, 'EndDate');
    if (startDate !== undefined && endDate !== undefined && endDate <= startDate) {
      throw validation('EndDate must be after StartDate.');
    }
    const now = this.clock.now();
    const timingChanged =
      previous?.expression !== expression.text ||
      previous.timezone !== timezone ||
      previous.startDate !== startDate;
    return {
      name,
      groupName,
      arn: `arn:aws:scheduler:${this.region}:${this.accountId}:schedule/${groupName}/${name}`,
      expression: expression.text,
      timezone,
      state,
      description: optionalString(input, 'Description', 512),
      startDate,
      endDate,
      flexibleTimeWindow: {
        Mode: window.Mode,
        ...(maxWindow === undefined ? {} : { MaximumWindowInMinutes: maxWindow }),
      },
      target: structuredClone(target),
      actionAfterCompletion,
      kmsKeyArn: optionalString(input, 'KmsKeyArn'),
      creationDate: previous?.creationDate ?? now,
      lastModificationDate: now,
      anchor: previous && !timingChanged ? previous.anchor : now,
    };
  }

  // -------------------------------------------------------------------------------------------------
  // ticking

  /**
   * Sets the schedule's next tick, the first after `after`; without it, a new timing's first: a rate's
   * at once (its start), a cron's or at()'s next.
   */
  arm(schedule: StoredSchedule, after?: number): void {
    const key = `${schedule.groupName}/${schedule.name}`;
    clearTimeout(this.ticking.get(key)?.timer);
    this.ticking.delete(key);
    if (this.closed || schedule.state === 'DISABLED') return;
    const expression = parseScheduleExpression(schedule.expression);
    const occurrences = occurrencesOf(expression, schedule);
    const from = after ?? (expression.kind === 'rate' ? Number.NEGATIVE_INFINITY : this.clock.now());
    const next = occurrences(from);
    if (next === undefined || (schedule.endDate !== undefined && next > schedule.endDate)) {
      if (expression.kind === 'at' && schedule.actionAfterCompletion === 'DELETE' && after !== undefined) {
        this.schedules.delete(key);
      }
      return;
    }
    const window = (schedule.flexibleTimeWindow.MaximumWindowInMinutes ?? 0) * 60_000;
    const invokeAt = next + Math.random() * window;
    const timer = setTimeout(() => {
      this.ticking.delete(key);
      void this.deliver(schedule, next);
      this.arm(schedule, next);
    }, this.clock.delayUntil(invokeAt));
    this.ticking.set(key, { next, timer });
  }

  /** Every schedule's next tick again, after the clock's speed changed. */
  rearmAll(): void {
    // a copy: arming a schedule puts it back in the map this would go on walking
    for (const [key, { next }] of [...this.ticking]) {
      const schedule = this.schedules.get(key);
      if (schedule) this.arm(schedule, next - 1);
    }
  }

  /** One tick: the target invoked with its Input, retried, then dead-lettered. */
  private async deliver(schedule: StoredSchedule, scheduledTime: number): Promise<void> {
    const { target } = schedule;
    const retry = { ...DEFAULT_RETRY, ...target.RetryPolicy };
    const executionId = randomUUID();
    const inputFor = (attempt: number) =>
      (target.Input ?? '{}')
        .replaceAll('<aws.scheduler.schedule-arn>', schedule.arn)
        .replaceAll(
          '<aws.scheduler.scheduled-time>',
          `${new Date(scheduledTime).toISOString().slice(0, 19)}Z`,
        )
        .replaceAll('<aws.scheduler.execution-id>', executionId)
        .replaceAll('<aws.scheduler.attempt-number>', String(attempt));
    let lastError: unknown;
    for (let attempt = 1; !this.closed; attempt++) {
      const input = inputFor(attempt);
      let payload: unknown = input;
      try {
        payload = JSON.parse(input);
      } catch {
        // a target gets an Input that is not JSON as it is
      }
      try {
        this.stats.invocations += 1;
        await this.options.invoke(target.Arn, payload);
        return;
      } catch (err) {
        lastError = err;
        this.stats.failedAttempts += 1;
        this.options.logError?.(
          `scheduler: ${schedule.name} failed to invoke ${target.Arn} (attempt ${attempt})`,
          err,
        );
      }
      // Exponential back-off on the emulator's clock, from a second to a minute between attempts.
      const backOff = Math.min(60_000, 1000 * 2 ** (attempt - 1));
      const tooOld = this.clock.now() + backOff - scheduledTime > retry.MaximumEventAgeInSeconds * 1000;
      if (attempt > retry.MaximumRetryAttempts || tooOld) {
        await this.deadLetter(schedule, inputFor(attempt), attempt, lastError, tooOld);
        return;
      }
      await sleep(backOff / this.clock.speed);
    }
  }

  private async deadLetter(
    schedule: StoredSchedule,
    body: string,
    attempts: number,
    err: unknown,
    tooOld: boolean,
  ): Promise<void> {
    const queueArn = schedule.target.DeadLetterConfig?.Arn;
    if (!queueArn || !this.options.deadLetter) return;
    this.stats.deadLettered += 1;
    const error = err as { name?: string; errorType?: string; message?: string };
    try {
      await this.options.deadLetter(queueArn, body, {
        ERROR_CODE: error.errorType ?? error.name ?? 'Error',
        ERROR_MESSAGE: String(error.message ?? err).slice(0, 256),
        EXHAUSTED_RETRY_CONDITION: tooOld ? 'MaximumEventAgeInSeconds' : 'MaximumRetryAttempts',
        RETRY_ATTEMPTS: String(attempts - 1),
        SCHEDULE_ARN: schedule.arn,
        TARGET_ARN: schedule.target.Arn,
      });
    } catch (dlqErr) {
      this.options.logError?.(`scheduler: ${schedule.name}: the dead-letter queue refused the tick`, dlqErr);
    }
  }

  // -------------------------------------------------------------------------------------------------
  // operations

  createSchedule(name: string, input: Record<string, unknown>) {
    const schedule = this.scheduleFrom(name, input);
    const key = `${schedule.groupName}/${name}`;
    if (this.schedules.has(key)) throw conflict(`Schedule ${name} already exists.`);
    this.schedules.set(key, schedule);
    this.arm(schedule);
    return { ScheduleArn: schedule.arn };
  }

  updateSchedule(name: string, input: Record<string, unknown>) {
    const previous = this.existing(name, optionalString(input, 'GroupName', 64) ?? 'default');
    const schedule = this.scheduleFrom(name, input, previous);
    const key = `${schedule.groupName}/${name}`;
    this.schedules.set(key, schedule);
    // The same timing keeps its next tick, or (enabled again) ticks next after now: ticks missed while
    // it was disabled are not made up. A new timing starts afresh.
    const next = this.ticking.get(key)?.next;
    const sameTiming = schedule.anchor === previous.anchor;
    this.arm(schedule, sameTiming ? (next === undefined ? this.clock.now() : next - 1) : undefined);
    return { ScheduleArn: schedule.arn };
  }

  getSchedule(name: string, groupName: string) {
    const s = this.existing(name, groupName);
    return {
      Arn: s.arn,
      GroupName: s.groupName,
      Name: s.name,
      ScheduleExpression: s.expression,
      ScheduleExpressionTimezone: s.timezone,
      StartDate: seconds(s.startDate),
      EndDate: seconds(s.endDate),
      Description: s.description,
      State: s.state,
      CreationDate: seconds(s.creationDate),
      LastModificationDate: seconds(s.lastModificationDate),
      KmsKeyArn: s.kmsKeyArn,
      Target: s.target,
      FlexibleTimeWindow: s.flexibleTimeWindow,
      ActionAfterCompletion: s.actionAfterCompletion,
    };
  }

  deleteSchedule(name: string, groupName: string) {
    const schedule = this.existing(name, groupName);
    const key = `${schedule.groupName}/${name}`;
    clearTimeout(this.ticking.get(key)?.timer);
    this.ticking.delete(key);
    this.schedules.delete(key);
    return {};
  }

  listSchedules(query: URLSearchParams) {
    const group = query.get('ScheduleGroup');
    const prefix = query.get('NamePrefix') ?? '';
    const state = query.get('State');
    const max =
      intIn(query.has('MaxResults') ? Number(query.get('MaxResults')) : undefined, 'MaxResults', 1, 100) ??
      100;
    const all = [...this.schedules.values()]
      .filter((s) => (group === null || s.groupName === group) && s.name.startsWith(prefix))
      .filter((s) => state === null || s.state === state)
      .sort((a, b) => (a.arn < b.arn ? -1 : 1));
    const start = Number(query.get('NextToken') ?? 0);
    const page = all.slice(start, start + max);
    return {
      Schedules: page.map((s) => ({
        Arn: s.arn,
        Name: s.name,
        GroupName: s.groupName,
        State: s.state,
        CreationDate: seconds(s.creationDate),
        LastModificationDate: seconds(s.lastModificationDate),
        Target: { Arn: s.target.Arn },
      })),
      ...(start + max < all.length ? { NextToken: String(start + max) } : {}),
    };
  }

  createScheduleGroup(name: string) {
    if (!NAME.test(name)) throw validation(`Name ${name} must be 1-64 letters, digits, -, _ or .`);
    if (this.groups.has(name)) throw conflict(`Schedule group ${name} already exists.`);
    const group = { name, arn: this.groupArn(name), creationDate: this.clock.now() };
    this.groups.set(name, group);
    return { ScheduleGroupArn: group.arn };
  }

  getScheduleGroup(name: string) {
    const g = this.existingGroup(name);
    return {
      Arn: g.arn,
      Name: g.name,
      State: 'ACTIVE',
      CreationDate: seconds(g.creationDate),
      LastModificationDate: seconds(g.creationDate),
    };
  }

  /** Deleting a group deletes its schedules, as on AWS. */
  deleteScheduleGroup(name: string) {
    if (name === 'default') throw validation('The default schedule group cannot be deleted.');
    this.existingGroup(name);
    for (const schedule of [...this.schedules.values()].filter((s) => s.groupName === name)) {
      this.deleteSchedule(schedule.name, name);
    }
    this.groups.delete(name);
    return {};
  }

  snapshot(): PersistedState {
    return { groups: [...this.groups.values()], schedules: [...this.schedules.values()] };
  }

  /** Ticks missed while the local cloud was stopped are not made up. */
  restore(state: PersistedState): void {
    for (const group of state.groups) this.groups.set(group.name, group);
    for (const schedule of state.schedules) {
      this.schedules.set(`${schedule.groupName}/${schedule.name}`, schedule);
      this.arm(schedule, this.clock.now());
    }
  }

  close(): void {
    this.closed = true;
    for (const { timer } of this.ticking.values()) clearTimeout(timer);
    this.ticking.clear();
  }
}

export async function startSchedulerEmulator(opts: SchedulerEmulatorOptions): Promise<SchedulerEmulator> {
  const clock = new VirtualClock(opts.clock?.start?.getTime() ?? Date.now(), opts.clock?.speed ?? 1);
  const service = new SchedulerService(
    clock,
    opts,
    opts.region ?? 'us-east-1',
    opts.accountId ?? '000000000000',
  );
  const saved = opts.persistPath ? await loadState<PersistedState>(opts.persistPath) : undefined;
  if (saved) service.restore(saved);
  const operations: Record<string, { calls: number; errors: number }> = {};
  const setSpeed = (speed: number) => {
    clock.setSpeed(speed);
    service.rearmAll();
  };
  const clockState = () => ({ now: new Date(clock.now()).toISOString(), speed: clock.speed });

  const route = (method: string, path: string, query: URLSearchParams, input: Record<string, unknown>) => {
    const [, collection, encoded, extra] = path.split('/');
    const name = encoded === undefined ? undefined : decodeURIComponent(encoded);
    const group = query.get('groupName') ?? 'default';
    if (extra === undefined && collection === 'schedules') {
      if (name === undefined && method === 'GET')
        return ['ListSchedules', () => service.listSchedules(query)] as const;
      if (name !== undefined && method === 'POST')
        return ['CreateSchedule', () => service.createSchedule(name, input)] as const;
      if (name !== undefined && method === 'PUT')
        return ['UpdateSchedule', () => service.updateSchedule(name, input)] as const;
      if (name !== undefined && method === 'GET')
        return ['GetSchedule', () => service.getSchedule(name, group)] as const;
      if (name !== undefined && method === 'DELETE')
        return ['DeleteSchedule', () => service.deleteSchedule(name, group)] as const;
    }
    if (extra === undefined && collection === 'schedule-groups' && name !== undefined) {
      if (method === 'POST') return ['CreateScheduleGroup', () => service.createScheduleGroup(name)] as const;
      if (method === 'GET') return ['GetScheduleGroup', () => service.getScheduleGroup(name)] as const;
      if (method === 'DELETE')
        return ['DeleteScheduleGroup', () => service.deleteScheduleGroup(name)] as const;
    }
    return undefined;
  };

  const server = createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const url = new URL(req.url ?? '/', 'http://scheduler');
      const method = req.method ?? 'GET';
      if (url.pathname === '/_local/clock') {
        if (method === 'POST') {
          const { speed } = JSON.parse(body || '{}') as { speed?: unknown };
          if (typeof speed !== 'number' || !(speed > 0) || speed > MAX_SPEED) {
            return send(res, 400, { message: `speed: a number above 0 and at most ${MAX_SPEED}` });
          }
          setSpeed(speed);
        }
        return send(res, 200, clockState());
      }
      if (url.pathname === '/_local/stats') return send(res, 200, { operations, ticks: service.stats });
      let input: Record<string, unknown> = {};
      try {
        input = body ? (JSON.parse(body) as Record<string, unknown>) : {};
      } catch (err) {
        throw new AwsError('SerializationException', (err as Error).message);
      }
      const operation = route(method, url.pathname, url.searchParams, input);
      if (!operation)
        throw new AwsError('UnknownOperationException', `${method} ${url.pathname} is not emulated`, 404);
      const [name, handle] = operation;
      const counted = operations[name] ?? { calls: 0, errors: 0 };
      operations[name] = counted;
      counted.calls += 1;
      try {
        send(res, 200, handle());
      } catch (err) {
        counted.errors += 1;
        throw err;
      }
    } catch (err) {
      if (err instanceof AwsError) return sendError(res, err);
      sendError(res, new AwsError('InternalServerException', String(err), 500));
    }
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    now: () => clock.now(),
    setSpeed,
    close: async () => {
      service.close();
      if (opts.persistPath) await saveState(opts.persistPath, service.snapshot());
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
