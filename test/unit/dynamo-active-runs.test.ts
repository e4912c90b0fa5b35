import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { DynamoActiveRuns } from '../../shared/adapters/dynamo-active-runs.js';

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const dynamo = mockClient(DynamoDBDocumentClient);
const slots = new DynamoActiveRuns(doc, 'runs');
const KEY = { pk: 'ACCT#acct-1', sk: 'ACTIVE' };
const RUN = { runId: 'run_1', since: '2026-01-01T00:00:00.000Z', cpu: 1024, memoryMiB: 2048 };

const conditionFailed = (item?: Record<string, unknown>) =>
  new ConditionalCheckFailedException({
    message: 'The conditional request failed',
    $metadata: {},
    Item: item as never,
  });

const sent = () => dynamo.commandCalls(UpdateCommand).map((call) => call.args[0].input);

describe('DynamoActiveRuns', () => {
  beforeEach(() => dynamo.reset());

  it('takes a slot with one conditional update on the count, under the limit', async () => {
    dynamo.on(UpdateCommand).resolves({});
    expect(await slots.take('acct-1', RUN, 10)).toBe(true);
    const [input] = sent();
    expect(input).toMatchObject({
      TableName: 'runs',
      Key: KEY,
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    });
    const names = input?.ExpressionAttributeNames ?? {};
    const values = Object.values(input?.ExpressionAttributeValues ?? {});
    expect(Object.values(names)).toEqual(expect.arrayContaining(['run:run_1', 'wait:run_1', 'count']));
    expect(values).toEqual(expect.arrayContaining([{ since: RUN.since, cpu: 1024, memoryMiB: 2048 }, 10]));
    expect(input?.ConditionExpression).toMatch(
      /attribute_not_exists\(#n\d+\) AND \(attribute_not_exists\(#n\d+\) OR #n\d+ < :v\d+\)/,
    );
  });

  it('has no limit on the count at 0', async () => {
    dynamo.on(UpdateCommand).resolves({});
    await slots.take('acct-1', RUN, 0);
    expect(sent()[0]?.ConditionExpression).toMatch(/^attribute_not_exists\(#n\d+\)$/);
  });

  it('finds a slot the run holds already (a retried take) in what the failed condition saw', async () => {
    dynamo.on(UpdateCommand).rejects(conditionFailed({ 'run:run_1': { M: {} }, count: { N: '10' } }));
    expect(await slots.take('acct-1', RUN, 10)).toBe(true);
    expect(sent()).toHaveLength(1);
  });

  it('records a refused run as waiting, then tries once more', async () => {
    dynamo
      .on(UpdateCommand)
      .rejectsOnce(conditionFailed({ count: { N: '10' } }))
      .resolvesOnce({})
      .rejectsOnce(conditionFailed({ count: { N: '10' } }));
    expect(await slots.take('acct-1', RUN, 10)).toBe(false);
    const [, wait] = sent();
    expect(wait?.UpdateExpression).toMatch(/^SET #n0 = if_not_exists\(#n0, :v0\)$/);
    expect(wait?.ExpressionAttributeNames).toEqual({ '#n0': 'wait:run_1' });
    expect(sent()).toHaveLength(3);
  });

  it('gives a slot back once and answers the run waiting longest', async () => {
    dynamo.on(UpdateCommand).resolvesOnce({
      Attributes: { count: 1, 'wait:run_9': '2026-01-01T00:00:05Z', 'wait:run_8': '2026-01-01T00:00:02Z' },
    });
    expect(await slots.release('acct-1', 'run_1')).toBe('run_8');
    expect(sent()[0]?.ConditionExpression).toMatch(/^attribute_exists\(#n\d+\)$/);
    dynamo.on(UpdateCommand).rejects(conditionFailed());
    expect(await slots.release('acct-1', 'run_1')).toBeUndefined();
  });

  it('lists the runs holding a slot from one consistent read', async () => {
    dynamo.on(GetCommand).resolves({
      Item: {
        ...KEY,
        count: 1,
        'run:run_1': { since: RUN.since, cpu: 1024, memoryMiB: 2048 },
        'wait:run_2': 't',
      },
    });
    expect(await slots.active('acct-1')).toEqual([RUN]);
    expect(dynamo).toHaveReceivedCommandWith(GetCommand, { Key: KEY, ConsistentRead: true });
  });

  it('passes errors other than a failed condition on', async () => {
    dynamo.on(UpdateCommand).rejects(new Error('ProvisionedThroughputExceededException'));
    await expect(slots.take('acct-1', RUN, 1)).rejects.toThrow('ProvisionedThroughputExceeded');
  });
});
