import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConflictException,
  CreateScheduleCommand,
  type CreateScheduleCommandInput,
  CreateScheduleGroupCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  ListSchedulesCommand,
  ResourceNotFoundException,
  SchedulerClient,
  type Target,
  UpdateScheduleCommand,
  ValidationException,
} from '@aws-sdk/client-scheduler';
import { afterEach, describe, expect, it } from 'vitest';
import { type SchedulerEmulator, startSchedulerEmulator } from '../../infra/local/emulators/scheduler.js';
import { EventBridgeScheduler, schedulerName } from '../../shared/adapters/eventbridge-scheduler.js';
import { ValidationError } from '../../shared/domain/errors.js';
import type { ScheduleSettings } from '../../shared/domain/schedule.js';

const region = 'eu-west-1';
const account = '123456789012';
const FUNCTION = `arn:aws:lambda:${region}:${account}:function:ticked`;

interface Invocation {
  arn: string;
  payload: { scheduledTime?: string; attempt?: string; [key: string]: unknown };
  /** the emulator's clock when it came */
  at: number;
}

const running: { emulator: SchedulerEmulator; client: SchedulerClient }[] = [];

const start = async (
  options: { clock?: { start?: Date; speed?: number }; fail?: boolean; persistPath?: string } = {},
) => {
  const invocations: Invocation[] = [];
  const deadLettered: { queueArn: string; body: string; attributes: Record<string, string> }[] = [];
  let emulator: SchedulerEmulator | undefined;
  emulator = await startSchedulerEmulator({
    region,
    accountId: account,
    clock: options.clock,
    persistPath: options.persistPath,
    invoke: async (arn, payload) => {
      invocations.push({ arn, payload: payload as Invocation['payload'], at: emulator?.now() ?? 0 });
      if (options.fail) throw Object.assign(new Error('the function failed'), { errorType: 'Error' });
    },
    deadLetter: async (queueArn, body, attributes) => {
      deadLettered.push({ queueArn, body, attributes });
    },
  });
  const client = new SchedulerClient({
    endpoint: emulator.url,
    region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  running.push({ emulator, client });
  return { emulator, client, invocations, deadLettered };
};

const target = (overrides: Partial<Target> = {}): Target => ({
  Arn: FUNCTION,
  RoleArn: `arn:aws:iam::${account}:role/scheduler`,
  Input: JSON.stringify({
    scheduledTime: '<aws.scheduler.scheduled-time>',
    attempt: '<aws.scheduler.attempt-number>',
  }),
  ...overrides,
});

const schedule = (overrides: Partial<CreateScheduleCommandInput> = {}): CreateScheduleCommandInput => ({
  Name: 'every-minute',
  ScheduleExpression: 'rate(1 minute)',
  FlexibleTimeWindow: { Mode: 'OFF' },
  Target: target(),
  ...overrides,
});

/** A rate's ticks: from its creation, to the second, every `minutes`, as the scheduled time is written. */
const rateTicks = async (client: SchedulerClient, Name: string, count: number, GroupName?: string) => {
  const { CreationDate } = await client.send(new GetScheduleCommand({ Name, GroupName }));
  const first = Math.floor((CreationDate?.getTime() ?? 0) / 1000) * 1000;
  return Array.from(
    { length: count },
    (_, k) => `${new Date(first + k * 60_000).toISOString().slice(0, 19)}Z`,
  );
};

const until = async <T>(read: () => T, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`not there in ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

afterEach(async () => {
  for (const { emulator, client } of running.splice(0)) {
    client.destroy();
    await emulator.close();
  }
});

describe('EventBridge Scheduler emulator', () => {
  it('creates, reads, lists, replaces and deletes schedules in a group, through the SDK', async () => {
    const { client } = await start();
    await client.send(new CreateScheduleGroupCommand({ Name: 'runs' }));
    const created = await client.send(
      new CreateScheduleCommand(
        schedule({
          GroupName: 'runs',
          ScheduleExpression: 'cron(0  9 ? * MON-FRI *)',
          ScheduleExpressionTimezone: 'Europe/Paris',
          State: 'DISABLED',
          Description: 'weekdays',
          Target: target({ RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 600 } }),
        }),
      ),
    );
    expect(created.ScheduleArn).toBe(`arn:aws:scheduler:${region}:${account}:schedule/runs/every-minute`);
    const read = await client.send(new GetScheduleCommand({ Name: 'every-minute', GroupName: 'runs' }));
    expect(read).toMatchObject({
      Arn: created.ScheduleArn,
      GroupName: 'runs',
      ScheduleExpression: 'cron(0 9 ? * MON-FRI *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'DISABLED',
      Description: 'weekdays',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: FUNCTION, RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 600 } },
      ActionAfterCompletion: 'NONE',
    });
    expect(read.CreationDate).toBeInstanceOf(Date);

    // an update replaces the whole schedule
    await client.send(
      new UpdateScheduleCommand(schedule({ GroupName: 'runs', ScheduleExpression: 'rate(5 minutes)' })),
    );
    const updated = await client.send(new GetScheduleCommand({ Name: 'every-minute', GroupName: 'runs' }));
    expect(updated).toMatchObject({
      ScheduleExpression: 'rate(5 minutes)',
      ScheduleExpressionTimezone: 'UTC',
      State: 'ENABLED',
    });
    expect(updated.Description).toBeUndefined();

    const listed = await client.send(new ListSchedulesCommand({ GroupName: 'runs' }));
    expect(listed.Schedules?.map((s) => [s.Name, s.State, s.Target?.Arn])).toEqual([
      ['every-minute', 'ENABLED', FUNCTION],
    ]);
    await client.send(new DeleteScheduleCommand({ Name: 'every-minute', GroupName: 'runs' }));
    await expect(
      client.send(new GetScheduleCommand({ Name: 'every-minute', GroupName: 'runs' })),
    ).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('answers as Scheduler does: a conflict, a missing schedule or group, and an invalid expression with its reason', async () => {
    const { client } = await start();
    await client.send(new CreateScheduleCommand(schedule({ State: 'DISABLED' })));
    await expect(client.send(new CreateScheduleCommand(schedule()))).rejects.toBeInstanceOf(
      ConflictException,
    );
    await expect(client.send(new UpdateScheduleCommand(schedule({ Name: 'nothing' })))).rejects.toThrow(
      'Schedule nothing does not exist.',
    );
    await expect(client.send(new DeleteScheduleCommand({ Name: 'nothing' }))).rejects.toBeInstanceOf(
      ResourceNotFoundException,
    );
    await expect(
      client.send(new CreateScheduleCommand(schedule({ Name: 'x', GroupName: 'nope' }))),
    ).rejects.toThrow('Schedule group nope does not exist.');
    const invalid = client.send(
      new CreateScheduleCommand(schedule({ Name: 'bad', ScheduleExpression: 'cron(0 9 * * * *)' })),
    );
    await expect(invalid).rejects.toBeInstanceOf(ValidationException);
    await expect(invalid).rejects.toThrow(
      /^Invalid Schedule Expression cron\(0 9 \* \* \* \*\): one of day-of-month/,
    );
    await expect(
      client.send(
        new CreateScheduleCommand(schedule({ Name: 'tz', ScheduleExpressionTimezone: 'Mars/Olympus' })),
      ),
    ).rejects.toThrow('Invalid ScheduleExpressionTimezone Mars/Olympus.');
    await expect(
      client.send(
        new CreateScheduleCommand(
          schedule({
            Name: 'retries',
            Target: target({ RetryPolicy: { MaximumRetryAttempts: 186 } }),
          }),
        ),
      ),
    ).rejects.toBeInstanceOf(ValidationException);
  });

  it('ticks a one-minute rate at once and then every minute of its clock, the scheduled time in the Input', async () => {
    const { client, invocations } = await start({
      clock: { start: new Date('2026-06-01T10:00:20Z'), speed: 60 },
    });
    await client.send(new CreateScheduleCommand(schedule()));
    const ticks = await until(
      () => invocations,
      (all) => all.length >= 3,
    );
    const expected = await rateTicks(client, 'every-minute', 3);
    expect(ticks.slice(0, 3).map((t) => t.payload)).toEqual(
      expected.map((scheduledTime) => ({ scheduledTime, attempt: '1' })),
    );
    expect(Date.parse(expected[0] ?? '')).toBeGreaterThanOrEqual(Date.parse('2026-06-01T10:00:20Z'));
    expect(ticks[0]?.arn).toBe(FUNCTION);
    // each came when the emulator's clock showed its time (to the timer's precision)
    expect((ticks[1]?.at ?? 0) - Date.parse(expected[1] ?? '')).toBeLessThan(5_000);
  });

  it('evaluates cron in the schedule’s time zone', async () => {
    const { client, invocations } = await start({
      clock: { start: new Date('2026-06-01T06:59:40Z'), speed: 60 },
    });
    // 09:00 in Paris is 07:00 UTC in June; the same expression in UTC is two hours away
    await client.send(
      new CreateScheduleCommand(
        schedule({
          Name: 'paris',
          ScheduleExpression: 'cron(0 9 * * ? *)',
          ScheduleExpressionTimezone: 'Europe/Paris',
        }),
      ),
    );
    await client.send(
      new CreateScheduleCommand(schedule({ Name: 'utc', ScheduleExpression: 'cron(0 9 * * ? *)' })),
    );
    const [tick] = await until(
      () => invocations,
      (all) => all.length >= 1,
    );
    expect(tick?.payload.scheduledTime).toBe('2026-06-01T07:00:00Z');
    await new Promise((r) => setTimeout(r, 300));
    expect(invocations).toHaveLength(1);
  });

  it('skips a wall-clock time the spring-forward jumps over', async () => {
    // a day a second: 02:30 in Paris does not exist on 29 March 2026
    const { client, invocations } = await start({
      clock: { start: new Date('2026-03-28T01:00:00Z'), speed: 86_400 },
    });
    await client.send(
      new CreateScheduleCommand(
        schedule({ ScheduleExpression: 'cron(30 2 * * ? *)', ScheduleExpressionTimezone: 'Europe/Paris' }),
      ),
    );
    const ticks = await until(
      () => invocations,
      (all) => all.length >= 2,
    );
    expect(ticks.slice(0, 2).map((t) => t.payload.scheduledTime)).toEqual([
      '2026-03-28T01:30:00Z',
      '2026-03-30T00:30:00Z',
    ]);
  });

  it('ticks nothing while disabled, and ticks again once enabled, without making up what it missed', async () => {
    const { client, invocations } = await start({
      clock: { start: new Date('2026-06-01T10:00:20Z'), speed: 600 },
    });
    await client.send(new CreateScheduleCommand(schedule({ State: 'DISABLED' })));
    await new Promise((r) => setTimeout(r, 500));
    expect(invocations).toEqual([]);
    await client.send(new UpdateScheduleCommand(schedule({ State: 'ENABLED' })));
    const [first] = await until(
      () => invocations,
      (all) => all.length >= 1,
    );
    // the first tick after it was enabled, on the rate's minutes since its creation
    const since = await rateTicks(client, 'every-minute', 30);
    expect(Date.parse(first?.payload.scheduledTime ?? '')).toBeGreaterThan(
      Date.parse('2026-06-01T10:04:00Z'),
    );
    expect(since).toContain(first?.payload.scheduledTime);
  });

  it('retries a failing target under its RetryPolicy, then sends the tick to its dead-letter queue', async () => {
    const { client, invocations, deadLettered } = await start({
      clock: { start: new Date('2026-06-01T10:00:20Z'), speed: 600 },
      fail: true,
    });
    const queueArn = `arn:aws:sqs:${region}:${account}:schedules-dlq`;
    await client.send(
      new CreateScheduleCommand(
        schedule({
          Name: 'failing-rate',
          Target: target({
            RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 },
            DeadLetterConfig: { Arn: queueArn },
          }),
        }),
      ),
    );
    const [letter] = await until(
      () => deadLettered,
      (all) => all.length >= 1,
    );
    const [firstTick] = await rateTicks(client, 'failing-rate', 1);
    expect(
      invocations.filter((i) => i.payload.scheduledTime === firstTick).map((i) => i.payload.attempt),
    ).toEqual(['1', '2', '3']);
    expect(letter).toMatchObject({
      queueArn,
      attributes: {
        ERROR_CODE: 'Error',
        ERROR_MESSAGE: 'the function failed',
        EXHAUSTED_RETRY_CONDITION: 'MaximumRetryAttempts',
        RETRY_ATTEMPTS: '2',
        SCHEDULE_ARN: `arn:aws:scheduler:${region}:${account}:schedule/default/failing-rate`,
        TARGET_ARN: FUNCTION,
      },
    });
    expect(JSON.parse(letter?.body ?? '')).toEqual({ scheduledTime: firstTick, attempt: '3' });
  });

  it('serves the project’s adapter unchanged: a copy created, replaced, refused with the reason, removed', async () => {
    const { client, invocations } = await start({
      clock: { start: new Date('2026-06-01T10:00:20Z'), speed: 60 },
    });
    await client.send(new CreateScheduleGroupCommand({ Name: 'runs' }));
    const adapter = new EventBridgeScheduler(client, {
      groupName: 'runs',
      targetArn: FUNCTION,
      roleArn: `arn:aws:iam::${account}:role/scheduler`,
      deadLetterQueueArn: `arn:aws:sqs:${region}:${account}:schedules-dlq`,
    });
    const settings: ScheduleSettings = {
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
      savedBy: { userId: 'ada', accountRole: 'member' },
      revision: 'rev-1',
      createdAt: '2026-06-01T10:00:00.000Z',
      updatedAt: '2026-06-01T10:00:00.000Z',
    };
    await adapter.put(settings);
    const [tick] = await until(
      () => invocations,
      (all) => all.length >= 1,
    );
    const name = schedulerName(settings);
    expect(tick?.payload).toEqual({
      accountId: 'acct-1',
      projectId: 'proj-1',
      scheduleId: 'nightly',
      revision: 'rev-1',
      scheduledTime: (await rateTicks(client, name, 1, 'runs'))[0],
    });
    await adapter.put({ ...settings, enabled: false, revision: 'rev-2' });
    expect(await client.send(new GetScheduleCommand({ Name: name, GroupName: 'runs' }))).toMatchObject({
      State: 'DISABLED',
      Target: { Input: expect.stringContaining('"revision":"rev-2"') },
    });
    await expect(adapter.put({ ...settings, expression: 'rate(1 minutes)' })).rejects.toEqual(
      new ValidationError(
        'EventBridge Scheduler refused the schedule: Invalid Schedule Expression rate(1 minutes): write rate(1 minute) for one and rate(2 minutes) for more',
      ),
    );
    expect(await adapter.remove(settings)).toBe(true);
    expect(await adapter.remove(settings)).toBe(false);
  });

  it('keeps every schedule ticking, at the new pace, when the clock’s speed changes', async () => {
    const { emulator, client, invocations } = await start({
      clock: { start: new Date('2026-06-01T10:00:20Z'), speed: 1 },
    });
    await client.send(new CreateScheduleCommand(schedule()));
    await client.send(
      new CreateScheduleCommand(schedule({ Name: 'hourly', ScheduleExpression: 'cron(0 * * * ? *)' })),
    );
    await until(
      () => invocations,
      (all) => all.length >= 1,
    );
    const set = await fetch(`${emulator.url}/_local/clock`, {
      method: 'POST',
      body: JSON.stringify({ speed: 120 }),
    });
    expect(set.status).toBe(200);
    const ticks = await until(
      () => invocations,
      (all) => all.length >= 3,
    );
    expect(ticks.slice(0, 3).map((t) => t.payload.scheduledTime)).toEqual(
      await rateTicks(client, 'every-minute', 3),
    );
  });

  it('runs its clock at the speed `POST /_local/clock` sets', async () => {
    const { emulator } = await start();
    const set = await fetch(`${emulator.url}/_local/clock`, {
      method: 'POST',
      body: JSON.stringify({ speed: 60 }),
    });
    expect(set.status).toBe(200);
    const before = emulator.now();
    await new Promise((r) => setTimeout(r, 500));
    const read = (await (await fetch(`${emulator.url}/_local/clock`)).json()) as {
      now: string;
      speed: number;
    };
    expect(read.speed).toBe(60);
    // half a second at 60 times: about 30 s
    expect(Date.parse(read.now) - before).toBeGreaterThan(20_000);
    for (const speed of [0, -1, 'fast', 1e9]) {
      const refused = await fetch(`${emulator.url}/_local/clock`, {
        method: 'POST',
        body: JSON.stringify({ speed }),
      });
      expect(refused.status).toBe(400);
    }
  });

  it('keeps its groups and schedules across a restart with a persist path', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'scheduler-'));
    const persistPath = path.join(dir, 'scheduler.json');
    try {
      const first = await start({ persistPath });
      await first.client.send(new CreateScheduleGroupCommand({ Name: 'runs' }));
      await first.client.send(new CreateScheduleCommand(schedule({ GroupName: 'runs', State: 'DISABLED' })));
      const one = running.pop();
      one?.client.destroy();
      await one?.emulator.close();
      const second = await start({ persistPath });
      const read = await second.client.send(
        new GetScheduleCommand({ Name: 'every-minute', GroupName: 'runs' }),
      );
      expect(read).toMatchObject({ ScheduleExpression: 'rate(1 minute)', State: 'DISABLED' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
