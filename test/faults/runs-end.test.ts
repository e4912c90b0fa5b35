import { SendMessageCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dispatch, endpoints, getRun, waitForRun, waitForTerminal } from '../integration/support/api.js';
import { dynamo, executionsOf, sqs } from '../integration/support/aws.js';
import {
  clearFaults,
  dynamoFault,
  ecsFault,
  expectKeptItsPromises,
  stepFunctionsFault,
  within,
} from './support/faults.js';

/**
 * Defect 1: no run stays non-terminal. Defect 8: a stop during the launch back-off launches nothing.
 * The bounds: a run ends within a minute of the fault clearing (Finalize's own retries last up to a
 * minute); the sweeper gives a run up after three re-queues.
 */

const quick = { steps: 2, stepDelayMs: 10 };

/** StartExecution calls the Step Functions emulator answered with an error, so far. */
const startExecutionErrors = async () => {
  const res = await fetch(`${endpoints().services.stepfunctions}/_local/stats`);
  const { operations } = (await res.json()) as { operations: Record<string, { errors: number }> };
  return operations.StartExecution?.errors ?? 0;
};

beforeAll(async () => {
  // a failed message is received again after a second, not a minute
  await sqs().send(
    new SetQueueAttributesCommand({ QueueUrl: endpoints().queueUrl, Attributes: { VisibilityTimeout: '1' } }),
  );
});
afterEach(clearFaults);

describe('every run ends', () => {
  it('cancels a run whose Checks fail on DynamoDB throttling before it leaves the queue', async () => {
    // every call of Checks' first read is throttled, whatever the SDK and the state machine retry
    await dynamoFault({ function: 'checks', error: 'ProvisionedThroughputExceededException', times: 1000 });
    const { body } = await dispatch({ config: { demo: quick } });
    const run = await expectKeptItsPromises(body.runId, 60_000);
    expect(run).toMatchObject({ status: 'CANCELLED', exitReason: 'error' });
    expect(run.message).toMatch(/QUEUED, so it could not end FAILED/);
    const [execution] = await executionsOf(body.runId);
    expect(execution?.status).toBe('SUCCEEDED');
  });

  it('ends a run whose Finalize is throttled for a while, and settles it once', async () => {
    await dynamoFault({ function: 'finalize', error: 'ThrottlingException', times: 6 });
    const { body } = await dispatch({ config: { demo: quick } });
    const run = await expectKeptItsPromises(body.runId, 90_000);
    expect(run.status).toBe('COMPLETED');
  });

  it('starts a run whose StartExecution failed, once the queue delivers its message again', async () => {
    // more failures than the SDK retries itself: the first message fails, its redelivery starts the run
    await stepFunctionsFault({
      operation: 'StartExecution',
      error: 'ServiceUnavailable',
      times: 8,
      namePrefix: 'run_',
    });
    const before = await startExecutionErrors();
    const { body } = await dispatch({ config: { demo: quick } });
    const run = await expectKeptItsPromises(body.runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    expect(await executionsOf(body.runId)).toHaveLength(1);
    expect((await startExecutionErrors()) - before).toBe(8);
  });

  it('ends an open run whose execution is already over when its message comes again', async () => {
    const { body } = await dispatch({ config: { demo: quick } });
    await waitForTerminal(body.runId);
    await within(
      'the execution over',
      30_000,
      () => executionsOf(body.runId),
      (e) => e[0]?.status === 'SUCCEEDED',
    );
    // what the defect left behind: a run still QUEUED whose execution succeeded
    await dynamo().send(
      new UpdateCommand({
        TableName: endpoints().tableName,
        Key: { pk: `RUN#${body.runId}`, sk: 'RUN' },
        UpdateExpression: 'SET #status = :queued, gQueued = :queued',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':queued': 'QUEUED' },
      }),
    );
    await sqs().send(
      new SendMessageCommand({
        QueueUrl: endpoints().queueUrl,
        MessageBody: JSON.stringify({ runId: body.runId }),
      }),
    );
    const run = await expectKeptItsPromises(body.runId, 30_000);
    expect(run).toMatchObject({
      status: 'CANCELLED',
      message: expect.stringContaining('without ending the run'),
    });
  });

  it('dead-letters, with the reason, a run the sweeper re-queued three times without it ever starting', async () => {
    // start-run is told its execution exists, but there is none: the message is consumed, the run stays queued
    await stepFunctionsFault({
      operation: 'StartExecution',
      error: 'ExecutionAlreadyExists',
      namePrefix: 'run_',
    });
    const { body } = await dispatch({ config: { demo: quick } });
    const run = await expectKeptItsPromises(body.runId, 90_000);
    expect(run).toMatchObject({ status: 'DEAD_LETTER', exitReason: 'dead_letter', requeues: 3 });
    expect(run.message).toMatch(/still QUEUED after 3 re-queues by the sweeper/);
  });
});

describe('a stop during the launch back-off', () => {
  it('launches nothing more: Checks run again before the relaunch', async () => {
    await ecsFault({ failures: { reason: 'Capacity is unavailable at this time', times: 1 } });
    const { body } = await dispatch({ config: { demo: quick } });
    await waitForRun(body.runId, (r) => r.status === 'RETRYING', 30_000);
    const stopped = await fetch(`${endpoints().apiUrl}/v1/runs/${body.runId}/stop`, {
      method: 'POST',
      headers: { authorization: `Bearer ${endpoints().token}` },
    });
    expect(stopped.status).toBe(200);
    const run = await expectKeptItsPromises(body.runId, 30_000);
    expect(run.status).toBe('STOPPED');
    expect(run.taskArn).toBeUndefined();
    expect((await getRun(body.runId)).history.map((h) => h.status)).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RETRYING',
      'STOPPED',
    ]);
  });
});
