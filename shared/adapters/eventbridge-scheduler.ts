import { createHash } from 'node:crypto';
import {
  CreateScheduleCommand,
  type CreateScheduleCommandInput,
  DeleteScheduleCommand,
  type SchedulerClient,
  UpdateScheduleCommand,
} from '@aws-sdk/client-scheduler';
import { ValidationError } from '../domain/errors.js';
import { SCHEDULE, type ScheduleKey, type ScheduleSettings } from '../domain/schedule.js';
import type { Scheduler } from '../ports.js';
import { errorName } from './dynamo-keys.js';

/** EventBridge Scheduler takes a name of up to 64 letters, digits, `-`, `_` and `.`. */
const NAME_MAX_LENGTH = 64;
const HASH_LENGTH = 16;

/**
 * The name of a schedule's copy in the group: the project and schedule ids as far as they fit, then a
 * hash of the account, project and schedule ids, which keeps two schedules apart (of two accounts, or
 * cut alike). The ids take only characters a name takes.
 */
export const schedulerName = (key: ScheduleKey): string => {
  const hash = createHash('sha256')
    .update(`${key.accountId}/${key.projectId}/${key.scheduleId}`)
    .digest('hex')
    .slice(0, HASH_LENGTH);
  return `${`${key.projectId}.${key.scheduleId}`.slice(0, NAME_MAX_LENGTH - HASH_LENGTH - 1)}-${hash}`;
};

/**
 * What every tick hands the target: the schedule's key and revision, and the time it was scheduled
 * for, which Scheduler fills in (a context attribute) as it invokes.
 */
export const tickInput = (settings: ScheduleSettings): string =>
  JSON.stringify({
    accountId: settings.accountId,
    projectId: settings.projectId,
    scheduleId: settings.scheduleId,
    revision: settings.revision,
    scheduledTime: '<aws.scheduler.scheduled-time>',
  });

export interface SchedulerTargetSettings {
  /** the schedule group every copy is in */
  groupName: string;
  /** the function each tick invokes */
  targetArn: string;
  /** the role Scheduler invokes it with */
  roleArn: string;
  /** where a tick goes once its retries are spent */
  deadLetterQueueArn: string;
}

/**
 * The schedules' copies on EventBridge Scheduler, one per schedule in the stack's group, each invoking
 * the scheduled-dispatch function at the precise time (no flexible window), retried, then dead-lettered.
 */
export class EventBridgeScheduler implements Scheduler {
  constructor(
    private readonly client: SchedulerClient,
    private readonly settings: SchedulerTargetSettings,
  ) {}

  async put(settings: ScheduleSettings): Promise<void> {
    const input: CreateScheduleCommandInput = {
      Name: schedulerName(settings),
      GroupName: this.settings.groupName,
      Description: `${settings.accountId}/${settings.projectId}/${settings.scheduleId}`,
      ScheduleExpression: settings.expression,
      ScheduleExpressionTimezone: settings.timezone,
      State: settings.enabled ? 'ENABLED' : 'DISABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: this.settings.targetArn,
        RoleArn: this.settings.roleArn,
        Input: tickInput(settings),
        RetryPolicy: {
          MaximumRetryAttempts: SCHEDULE.tickRetry.attempts,
          MaximumEventAgeInSeconds: SCHEDULE.tickRetry.maxAgeSeconds,
        },
        DeadLetterConfig: { Arn: this.settings.deadLetterQueueArn },
      },
    };
    try {
      await this.upsert(input);
    } catch (err) {
      // a schedule Scheduler refuses is the caller's to fix
      if (errorName(err) !== 'ValidationException') throw err;
      throw new ValidationError(`EventBridge Scheduler refused the schedule: ${(err as Error).message}`);
    }
  }

  async remove(key: ScheduleKey): Promise<boolean> {
    try {
      await this.client.send(
        new DeleteScheduleCommand({ Name: schedulerName(key), GroupName: this.settings.groupName }),
      );
      return true;
    } catch (err) {
      if (errorName(err) === 'ResourceNotFoundException') return false;
      throw err;
    }
  }

  /** An update replaces the copy whole; most saves change a schedule that has one. */
  private async upsert(input: CreateScheduleCommandInput): Promise<void> {
    try {
      await this.client.send(new UpdateScheduleCommand(input));
    } catch (err) {
      if (errorName(err) !== 'ResourceNotFoundException') throw err;
      try {
        await this.client.send(new CreateScheduleCommand(input));
      } catch (createErr) {
        // another save created it meanwhile: this one replaces it
        if (errorName(createErr) !== 'ConflictException') throw createErr;
        await this.client.send(new UpdateScheduleCommand(input));
      }
    }
  }
}
