import {
  ConflictException,
  CreateScheduleCommand,
  DeleteScheduleCommand,
  ResourceNotFoundException,
  SchedulerClient,
  ThrottlingException,
  UpdateScheduleCommand,
  ValidationException,
} from '@aws-sdk/client-scheduler';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  EventBridgeScheduler,
  schedulerName,
  tickInput,
} from '../../shared/adapters/eventbridge-scheduler.js';
import { ValidationError } from '../../shared/domain/errors.js';
import { SCHEDULE, type ScheduleSettings } from '../../shared/domain/schedule.js';

const meta = { $metadata: {} };
const TARGET = {
  groupName: 'ExecutionRuns-Schedules',
  targetArn: 'arn:aws:lambda:eu-west-1:123456789012:function:scheduled-dispatch',
  roleArn: 'arn:aws:iam::123456789012:role/SchedulerRole',
  deadLetterQueueArn: 'arn:aws:sqs:eu-west-1:123456789012:ScheduleDeadLetterQueue',
};

const settings = (overrides: Partial<ScheduleSettings> = {}): ScheduleSettings => ({
  accountId: 'acct-1',
  projectId: 'proj-1',
  scheduleId: 'nightly',
  expression: 'cron(0 2 * * ? *)',
  timezone: 'Europe/Paris',
  podId: 'pod-1',
  itemId: 'ITEM-1',
  prompt: 'p',
  mode: 'autopilot',
  enabled: true,
  savedBy: { userId: 'ada', accountRole: 'member' },
  revision: 'rev-1',
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

const scheduler = mockClient(SchedulerClient);
const adapter = () => new EventBridgeScheduler(new SchedulerClient({ region: 'eu-west-1' }), TARGET);

describe('EventBridgeScheduler', () => {
  beforeEach(() => scheduler.reset());

  it('replaces the copy with the schedule’s expression, time zone and state, a precise tick, retries and a DLQ', async () => {
    scheduler.on(UpdateScheduleCommand).resolves({ ...meta, ScheduleArn: 'arn:s' });
    await adapter().put(settings({ enabled: false }));
    expect(scheduler).toHaveReceivedCommandTimes(UpdateScheduleCommand, 1);
    expect(scheduler).toHaveReceivedCommandWith(UpdateScheduleCommand, {
      Name: schedulerName(settings()),
      GroupName: TARGET.groupName,
      Description: 'acct-1/proj-1/nightly',
      ScheduleExpression: 'cron(0 2 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'DISABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: TARGET.targetArn,
        RoleArn: TARGET.roleArn,
        Input: tickInput(settings()),
        RetryPolicy: {
          MaximumRetryAttempts: SCHEDULE.tickRetry.attempts,
          MaximumEventAgeInSeconds: SCHEDULE.tickRetry.maxAgeSeconds,
        },
        DeadLetterConfig: { Arn: TARGET.deadLetterQueueArn },
      },
    });
    expect(scheduler).not.toHaveReceivedCommand(CreateScheduleCommand);
  });

  it('hands each tick the schedule’s key, its revision and the scheduled time Scheduler fills in', () => {
    expect(JSON.parse(tickInput(settings()))).toEqual({
      accountId: 'acct-1',
      projectId: 'proj-1',
      scheduleId: 'nightly',
      revision: 'rev-1',
      scheduledTime: '<aws.scheduler.scheduled-time>',
    });
  });

  it('creates the copy a new schedule does not have yet, ENABLED', async () => {
    scheduler.on(UpdateScheduleCommand).rejects(
      new ResourceNotFoundException({
        ...meta,
        message: 'Schedule x does not exist.',
        Message: 'Schedule x does not exist.',
      }),
    );
    scheduler.on(CreateScheduleCommand).resolves({ ...meta, ScheduleArn: 'arn:s' });
    await adapter().put(settings());
    expect(scheduler).toHaveReceivedCommandWith(CreateScheduleCommand, {
      Name: schedulerName(settings()),
      State: 'ENABLED',
    });
  });

  it('replaces a copy another save created in between', async () => {
    scheduler
      .on(UpdateScheduleCommand)
      .rejectsOnce(new ResourceNotFoundException({ ...meta, message: 'gone', Message: 'gone' }))
      .resolves({ ...meta, ScheduleArn: 'arn:s' });
    scheduler
      .on(CreateScheduleCommand)
      .rejects(new ConflictException({ ...meta, message: 'exists', Message: 'exists' }));
    await adapter().put(settings());
    expect(scheduler).toHaveReceivedCommandTimes(UpdateScheduleCommand, 2);
  });

  it('turns what Scheduler refuses into a ValidationError with its reason, and passes other failures on', async () => {
    scheduler
      .on(UpdateScheduleCommand)
      .rejectsOnce(
        new ValidationException({
          ...meta,
          message: 'Invalid Schedule Expression',
          Message: 'Invalid Schedule Expression',
        }),
      )
      .rejects(new ThrottlingException({ ...meta, message: 'Rate exceeded', Message: 'Rate exceeded' }));
    await expect(adapter().put(settings())).rejects.toEqual(
      new ValidationError('EventBridge Scheduler refused the schedule: Invalid Schedule Expression'),
    );
    await expect(adapter().put(settings())).rejects.toBeInstanceOf(ThrottlingException);
  });

  it('removes the copy, and says whether there was one', async () => {
    scheduler
      .on(DeleteScheduleCommand)
      .resolvesOnce(meta)
      .rejects(new ResourceNotFoundException({ ...meta, message: 'gone', Message: 'gone' }));
    expect(await adapter().remove(settings())).toBe(true);
    expect(await adapter().remove(settings())).toBe(false);
    expect(scheduler).toHaveReceivedCommandWith(DeleteScheduleCommand, {
      Name: schedulerName(settings()),
      GroupName: TARGET.groupName,
    });
  });
});

describe('schedulerName', () => {
  it('is a name Scheduler takes, readable, and apart for every account, project and schedule', () => {
    const name = schedulerName(settings());
    expect(name).toMatch(/^proj-1\.nightly-[0-9a-f]{16}$/);
    const long = schedulerName(settings({ projectId: 'p'.repeat(128), scheduleId: 's'.repeat(128) }));
    expect(long).toMatch(/^[0-9a-zA-Z_.-]{1,64}$/);
    expect(long).toHaveLength(64);
    const names = new Set(
      [
        settings(),
        settings({ accountId: 'acct-2' }),
        settings({ projectId: 'proj-1.nightly', scheduleId: 'x' }),
        settings({ projectId: 'p'.repeat(128), scheduleId: 's'.repeat(128) }),
        settings({ projectId: 'p'.repeat(128), scheduleId: `${'s'.repeat(127)}t` }),
      ].map(schedulerName),
    );
    expect(names.size).toBe(5);
  });
});
