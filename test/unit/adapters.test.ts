import { ECSClient, InvalidParameterException, StopTaskCommand } from '@aws-sdk/client-ecs';
import {
  ExecutionAlreadyExists,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  TaskDoesNotExist,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { EcsSandbox } from '../../shared/adapters/ecs-sandbox.js';
import {
  StepFunctionsOrchestrator,
  StepFunctionsTaskSignals,
} from '../../shared/adapters/sfn-orchestrator.js';
import { SqsRunQueue } from '../../shared/adapters/sqs-run-queue.js';

const SM = 'arn:aws:states:us-east-1:123456789012:stateMachine:runs';
const meta = { $metadata: {} };

describe('StepFunctionsOrchestrator', () => {
  const sfn = mockClient(SFNClient);
  beforeEach(() => sfn.reset());

  it('starts an execution named after the run with the run and its account as input', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: `${SM}:run_1`, startDate: new Date() });
    const out = await new StepFunctionsOrchestrator(new SFNClient({}), SM).start('run_1', {
      runId: 'run_1',
      accountId: 'acct-1',
    });
    expect(out).toEqual({ executionArn: `${SM}:run_1`, alreadyExisted: false });
    expect(sfn).toHaveReceivedCommandWith(StartExecutionCommand, {
      stateMachineArn: SM,
      name: 'run_1',
      input: '{"runId":"run_1","accountId":"acct-1"}',
    });
  });

  it('treats ExecutionAlreadyExists as started, so a redelivered message is harmless', async () => {
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', ...meta }));
    const out = await new StepFunctionsOrchestrator(new SFNClient({}), SM).start('run_1', {
      runId: 'run_1',
      accountId: 'acct-1',
    });
    expect(out).toEqual({
      executionArn: 'arn:aws:states:us-east-1:123456789012:execution:runs:run_1',
      alreadyExisted: true,
    });
  });

  it('lets other start errors through, so the message is retried', async () => {
    sfn.on(StartExecutionCommand).rejects(new Error('throttled'));
    await expect(
      new StepFunctionsOrchestrator(new SFNClient({}), SM).start('run_1', {
        runId: 'run_1',
        accountId: 'acct-1',
      }),
    ).rejects.toThrow('throttled');
  });
});

describe('StepFunctionsTaskSignals', () => {
  const sfn = mockClient(SFNClient);
  beforeEach(() => sfn.reset());

  it('sends success with JSON output, failure with error and cause, and heartbeats', async () => {
    sfn.on(SendTaskSuccessCommand).resolves({});
    sfn.on(SendTaskFailureCommand).resolves({});
    sfn.on(SendTaskHeartbeatCommand).resolves({});
    const signals = new StepFunctionsTaskSignals(new SFNClient({}));
    expect(await signals.succeedTask('t1', { outcome: 'completed' })).toBe('sent');
    expect(await signals.failTask('t2', 'Run.Stopped', 'stopped')).toBe('sent');
    expect(await signals.heartbeat('t3')).toBe('sent');
    expect(sfn).toHaveReceivedCommandWith(SendTaskSuccessCommand, {
      taskToken: 't1',
      output: '{"outcome":"completed"}',
    });
    expect(sfn).toHaveReceivedCommandWith(SendTaskFailureCommand, {
      taskToken: 't2',
      error: 'Run.Stopped',
      cause: 'stopped',
    });
    expect(sfn).toHaveReceivedCommandWith(SendTaskHeartbeatCommand, { taskToken: 't3' });
  });

  it('answers gone for a token that was settled or timed out', async () => {
    sfn.on(SendTaskSuccessCommand).rejects(new TaskDoesNotExist({ message: 'gone', ...meta }));
    sfn.on(SendTaskHeartbeatCommand).rejects(new TaskTimedOut({ message: 'late', ...meta }));
    const signals = new StepFunctionsTaskSignals(new SFNClient({}));
    expect(await signals.succeedTask('t1', {})).toBe('gone');
    expect(await signals.heartbeat('t1')).toBe('gone');
  });
});

describe('SqsRunQueue', () => {
  const sqs = mockClient(SQSClient);
  beforeEach(() => sqs.reset());

  it('sends one message carrying only the run id', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    await new SqsRunQueue(new SQSClient({}), 'https://q').enqueue('run_1');
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: 'https://q',
      MessageBody: '{"runId":"run_1"}',
    });
  });
});

describe('EcsSandbox', () => {
  const ecs = mockClient(ECSClient);
  beforeEach(() => ecs.reset());

  it('stops the task in its cluster with the reason', async () => {
    ecs.on(StopTaskCommand).resolves({});
    await new EcsSandbox(new ECSClient({}), 'arn:cluster').stop('arn:task', 'the run is finalized');
    expect(ecs).toHaveReceivedCommandWith(StopTaskCommand, {
      cluster: 'arn:cluster',
      task: 'arn:task',
      reason: 'the run is finalized',
    });
  });

  it('treats a task ECS no longer knows as stopped', async () => {
    ecs.on(StopTaskCommand).rejects(new InvalidParameterException({ message: 'not found', ...meta }));
    await expect(
      new EcsSandbox(new ECSClient({}), 'arn:cluster').stop('arn:task', 'x'),
    ).resolves.toBeUndefined();
  });
});
