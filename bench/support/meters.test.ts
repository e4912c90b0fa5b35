import {
  DynamoDBClient,
  PutItemCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DynamoDbLocal, ensureTable, startDynamoDbLocal } from '../../infra/local/dynamodb.js';
import { startDynamoDbFront } from '../../infra/local/dynamodb-front.js';
import { FUNCTIONS } from '../../shared/manifest.js';
import type { Counters } from './cloud.js';
import { type DynamoMeter, indexWriteUnits, itemSize, startDynamoMeter } from './dynamo-meter.js';
import { priceOf, webSocketMessageUnits } from './prices.js';
import { percentile } from './stats.js';
import { between, reportOf } from './usage.js';

const S = (value: string) => ({ S: value });

/** A run item's list-index attributes, as the repository writes them for a QUEUED run. */
const queuedRun = {
  pk: S('RUN#r1'),
  sk: S('RUN'),
  runId: S('r1'),
  status: S('QUEUED'),
  podId: S('pod'),
  source: S('api'),
  projectId: S('p'),
  gAcct: S('A#a'),
  gAcctStatus: S('A#a#QUEUED'),
  gProj: S('P#a#p'),
  gProjStatus: S('P#a#p#QUEUED'),
  gAcctPod: S('A#a#pod'),
  gAcctSource: S('A#a#api'),
  gQueued: S('QUEUED'),
};

describe('percentile', () => {
  it('takes the nearest rank', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(samples, 50)).toBe(50);
    expect(percentile(samples, 99)).toBe(99);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
  });
});

describe('itemSize', () => {
  it('counts names and values as DynamoDB does', () => {
    expect(itemSize({ ab: S('xyz') })).toBe(5);
    expect(itemSize({ n: { N: '12345' } })).toBe(1 + 4);
    expect(itemSize({ l: { L: [S('a'), { BOOL: true }] } })).toBe(1 + 3 + 2 + 2);
  });
});

describe('indexWriteUnits', () => {
  it('charges one write per index an item enters', () => {
    expect(indexWriteUnits(undefined, queuedRun)).toBe(7);
  });

  it('charges a delete and a put where a key changes, one write where a projected value changes', () => {
    const { gQueued: _left, ...rest } = queuedRun;
    const provisioning = {
      ...rest,
      status: S('PROVISIONING'),
      gAcctStatus: S('A#a#PROVISIONING'),
      gProjStatus: S('P#a#p#PROVISIONING'),
    };
    // two status indexes move (2 + 2), the queue index loses the run (1), four others see the new status
    expect(indexWriteUnits(queuedRun, provisioning)).toBe(9);
  });

  it('charges nothing when no indexed or projected attribute changes', () => {
    expect(indexWriteUnits(queuedRun, { ...queuedRun, lastSeq: { N: '3' } })).toBe(0);
  });
});

describe('priceOf', () => {
  it('prices each service at its list price', () => {
    const cost = priceOf({
      transitions: 1000,
      lambdaRequests: 1_000_000,
      lambdaGbSeconds: 0,
      readUnits: 1_000_000,
      writeUnits: 1_000_000,
      sqsRequests: 1_000_000,
      apiRequests: 0,
      emails: 0,
      logBytes: 0,
    });
    expect(cost).toMatchObject({ stepFunctions: 0.025, lambda: 0.2, dynamodb: 0.75, sqs: 0.4 });
    expect(cost.total).toBeCloseTo(1.375, 10);
  });

  it('prices WebSocket messages and connection-minutes as API Gateway', () => {
    const usage = {
      transitions: 0,
      lambdaRequests: 0,
      lambdaGbSeconds: 0,
      readUnits: 0,
      writeUnits: 0,
      sqsRequests: 0,
      apiRequests: 1_000_000,
      emails: 0,
      logBytes: 0,
      webSocketMessages: 2_000_000,
      connectionMinutes: 4_000_000,
    };
    expect(priceOf(usage).apiGateway).toBeCloseTo(1 + 2 + 1, 10);
  });

  it('counts a WebSocket message in 32 KB increments', () => {
    expect(webSocketMessageUnits(10)).toBe(1);
    expect(webSocketMessageUnits(32 * 1024)).toBe(1);
    expect(webSocketMessageUnits(32 * 1024 + 1)).toBe(2);
  });
});

const counters = (sqs: Record<string, number>): Counters => ({
  lambda: {} as Counters['lambda'],
  services: {
    sqs: Object.fromEntries(Object.entries(sqs).map(([op, calls]) => [op, { calls, errors: 0, bytesIn: 0 }])),
    stepfunctions: {},
    ecs: {},
    logs: {},
  },
  dynamo: {
    readUnits: 0,
    writeUnits: 0,
    indexWriteUnits: 0,
    refusedWrites: 0,
    requests: {},
    units: {},
    byFunction: {},
  },
  agent: { config: 0, eventBatches: 0, heartbeatBatches: 0, control: 0, events: 0 },
  emails: 0,
});

describe('reportOf', () => {
  it('counts the receive that delivers a message, not the event source’s empty long polls', () => {
    const before = counters({ SendMessage: 0, ReceiveMessage: 10, DeleteMessageBatch: 0 });
    const after = counters({ SendMessage: 1, ReceiveMessage: 16, DeleteMessageBatch: 1 });
    expect(reportOf(between(before, after), 7, 1).sqsRequests).toBe(3);
  });
});

describe('the DynamoDB meter', () => {
  let dynamo: DynamoDbLocal;
  let meter: DynamoMeter;
  let client: DynamoDBClient;

  beforeAll(async () => {
    dynamo = await startDynamoDbLocal({});
    const aws = { region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
    await ensureTable(new DynamoDBClient({ ...aws, endpoint: dynamo.endpoint }), 'runs');
    meter = await startDynamoMeter(dynamo.endpoint);
    meter.setMetering(true);
    client = new DynamoDBClient({ ...aws, endpoint: meter.url, maxAttempts: 1 });
  }, 60_000);

  afterAll(async () => {
    client?.destroy();
    await meter?.close();
    await dynamo?.stop();
  });

  it('adds the index writes DynamoDB Local leaves out of ConsumedCapacity', async () => {
    const before = meter.totals();
    await client.send(new PutItemCommand({ TableName: 'runs', Item: queuedRun }));
    const after = meter.totals();
    expect(after.writeUnits - before.writeUnits).toBe(1 + 7);
    expect(after.indexWriteUnits - before.indexWriteUnits).toBe(7);
  });

  it('charges a transaction twice the units of its writes, as AWS does and DynamoDB Local does not', async () => {
    const before = meter.totals();
    const put = (sk: string) => ({ Put: { TableName: 'runs', Item: { pk: S('RUN#r2'), sk: S(sk) } } });
    await client.send(new TransactWriteItemsCommand({ TransactItems: [put('A'), put('B'), put('C')] }));
    expect(meter.totals().writeUnits - before.writeUnits).toBe(6);
  });

  it('charges a write its condition refused', async () => {
    const before = meter.totals();
    await expect(
      client.send(
        new UpdateItemCommand({
          TableName: 'runs',
          Key: { pk: S('RUN#r1'), sk: S('RUN') },
          UpdateExpression: 'SET lastSeq = :one',
          ConditionExpression: 'attribute_not_exists(pk)',
          ExpressionAttributeValues: { ':one': { N: '1' } },
        }),
      ),
    ).rejects.toThrow(/conditional/i);
    const after = meter.totals();
    expect(after.refusedWrites - before.refusedWrites).toBe(1);
    expect(after.writeUnits - before.writeUnits).toBe(1);
  });

  it('counts units per calling function, as the DynamoDB front names it', async () => {
    const front = await startDynamoDbFront({
      port: 0,
      host: '127.0.0.1',
      upstream: meter.url,
      functions: FUNCTIONS,
      tableName: 'runs',
      region: 'us-east-1',
      accountId: '000000000000',
    });
    const stream = new DynamoDBClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      endpoint: front.endpointOf('stream'),
      maxAttempts: 1,
    });
    try {
      const before = meter.totals();
      await stream.send(new PutItemCommand({ TableName: 'runs', Item: { pk: S('CONN#c1'), sk: S('CONN') } }));
      await client.send(new PutItemCommand({ TableName: 'runs', Item: { pk: S('CONN#c2'), sk: S('CONN') } }));
      const after = meter.totals();
      expect(after.byFunction.stream?.writeUnits).toBe((before.byFunction.stream?.writeUnits ?? 0) + 1);
      expect(after.byFunction.stream?.units.PutItem).toBe((before.byFunction.stream?.units.PutItem ?? 0) + 1);
      // a request that did not pass the front is nobody's
      expect(after.byFunction.unknown?.writeUnits).toBe((before.byFunction.unknown?.writeUnits ?? 0) + 1);
    } finally {
      stream.destroy();
      await front.close();
    }
  });
});
