import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record as StreamRecord,
} from '@aws-sdk/client-dynamodb-streams';
import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ensureTable } from '../../infra/local/dynamodb.js';
import {
  type DynamoDbStreamSource,
  type DynamoDbStreamSourceOptions,
  startDynamoDbStreamSource,
} from '../../infra/local/dynamodb-stream-source.js';
import { useTestTable } from '../support/dynamodb-local.js';

type Failure = Parameters<NonNullable<DynamoDbStreamSourceOptions['onFailure']>>[0];

/** The item's sort key, which names each record in these tests. */
const skOf = (record: DynamoDBRecord) => record.dynamodb?.Keys?.sk?.S;
const sksOf = (event: DynamoDBStreamEvent) => event.Records.map(skOf);

describe('startDynamoDbStreamSource on DynamoDB Local', () => {
  const table = useTestTable();
  let streams: DynamoDBStreamsClient;
  let source: DynamoDbStreamSource | undefined;
  let tableCount = 0;

  beforeAll(() => {
    streams = new DynamoDBStreamsClient({
      endpoint: table.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  afterAll(() => streams?.destroy());

  /** A fresh table of the runs table's shape, with its stream, so each test reads only its own records. */
  const newTable = async () => {
    const tableName = `streams-${++tableCount}`;
    await ensureTable(table.client, tableName);
    return tableName;
  };

  const put = (tableName: string, sk: string, attributes: Record<string, unknown> = {}) =>
    table.doc.send(new PutCommand({ TableName: tableName, Item: { pk: 'RUN#r1', sk, ...attributes } }));

  /** Starts a mapping whose function is `handle`, recording its events and the on-failure deliveries. */
  const start = async (
    tableName: string,
    handle: (event: DynamoDBStreamEvent, call: number) => Promise<unknown> = async () => undefined,
    overrides: Partial<DynamoDbStreamSourceOptions> = {},
  ) => {
    const events: DynamoDBStreamEvent[] = [];
    const failures: Failure[] = [];
    source = await startDynamoDbStreamSource({
      dynamodb: table.client,
      streams,
      tableName,
      batchSize: 100,
      startingPosition: 'TRIM_HORIZON',
      reportBatchItemFailures: true,
      maximumRetryAttempts: 2,
      logError: () => undefined,
      invoke: async (event) => {
        events.push(event);
        return handle(event, events.length);
      },
      onFailure: async (failure) => {
        failures.push(failure);
      },
      ...overrides,
    });
    return { events, failures, source };
  };

  it('delivers inserts, modifications and removals as Lambda builds them, with both images, in order', async () => {
    const tableName = await newTable();
    const { events, source } = await start(tableName);
    const startedAt = Date.now() / 1000;

    await put(tableName, 'RUN', { status: 'QUEUED', attempt: 1, blob: Uint8Array.from([104, 105]) });
    await put(tableName, 'STEPS#0001', { text: 'cloned' });
    await table.doc.send(
      new UpdateCommand({
        TableName: tableName,
        Key: { pk: 'RUN#r1', sk: 'RUN' },
        UpdateExpression: 'SET #status = :status',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':status': 'RUNNING' },
      }),
    );
    await table.doc.send(
      new DeleteCommand({ TableName: tableName, Key: { pk: 'RUN#r1', sk: 'STEPS#0001' } }),
    );
    await table.doc.send(new DeleteCommand({ TableName: tableName, Key: { pk: 'RUN#r1', sk: 'RUN' } }));
    await source.drained();

    const records = events.flatMap((event) => event.Records);
    const run = records.filter((record) => skOf(record) === 'RUN');
    const { Table } = await table.client.send(new DescribeTableCommand({ TableName: tableName }));
    const keys = { pk: { S: 'RUN#r1' }, sk: { S: 'RUN' } };
    const queued = { ...keys, status: { S: 'QUEUED' }, attempt: { N: '1' }, blob: { B: 'aGk=' } };
    const running = { ...queued, status: { S: 'RUNNING' } };
    const envelope = {
      eventID: expect.any(String),
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: expect.any(String),
      eventSourceARN: Table?.LatestStreamArn,
    };
    const change = {
      ApproximateCreationDateTime: expect.any(Number),
      Keys: keys,
      SequenceNumber: expect.any(String),
      SizeBytes: expect.any(Number),
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    };
    expect(run).toEqual([
      { ...envelope, eventName: 'INSERT', dynamodb: { ...change, NewImage: queued } },
      { ...envelope, eventName: 'MODIFY', dynamodb: { ...change, OldImage: queued, NewImage: running } },
      { ...envelope, eventName: 'REMOVE', dynamodb: { ...change, OldImage: running } },
    ]);
    expect(records.map((record) => `${record.eventName} ${skOf(record)}`)).toEqual([
      'INSERT RUN',
      'INSERT STEPS#0001',
      'MODIFY RUN',
      'REMOVE STEPS#0001',
      'REMOVE RUN',
    ]);
    const sequenceNumbers = records.map((record) => BigInt(record.dynamodb?.SequenceNumber ?? 0));
    expect(sequenceNumbers).toEqual([...sequenceNumbers].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(new Set(records.map((record) => record.eventID)).size).toBe(records.length);
    // epoch seconds, as Lambda gives them (DynamoDB Local rounds them down to the minute)
    const created = run[0]?.dynamodb?.ApproximateCreationDateTime ?? 0;
    expect(created).toBeGreaterThan(startedAt - 61);
    expect(created).toBeLessThanOrEqual(startedAt + 1);
  });

  it('starts at the oldest record with TRIM_HORIZON, and only after the records already written with LATEST', async () => {
    const tableName = await newTable();
    await put(tableName, 'RUN');

    const latestEvents: DynamoDBStreamEvent[] = [];
    const fromOldest = await start(tableName);
    const fromLatest = await startDynamoDbStreamSource({
      dynamodb: table.client,
      streams,
      tableName,
      startingPosition: 'LATEST',
      reportBatchItemFailures: false,
      maximumRetryAttempts: 0,
      invoke: async (event) => {
        latestEvents.push(event);
      },
    });
    try {
      await put(tableName, 'STEPS#0001');
      await Promise.all([fromOldest.source.drained(), fromLatest.drained()]);
    } finally {
      await fromLatest.stop();
    }

    expect(fromOldest.events.flatMap(sksOf)).toEqual(['RUN', 'STEPS#0001']);
    expect(latestEvents.flatMap(sksOf)).toEqual(['STEPS#0001']);
  });

  it('drops the records no filter matches before invoking, and refuses an invalid pattern', async () => {
    const tableName = await newTable();
    const { events, source } = await start(tableName, async () => undefined, {
      filters: [
        { dynamodb: { Keys: { sk: { S: ['RUN', { prefix: 'STEPS#' }] } } } },
        { eventName: ['REMOVE'], dynamodb: { OldImage: { kind: { S: ['control'] } } } },
      ],
    });

    for (const sk of ['RUN', 'SNAPSHOT', 'STEPS#0001', 'CONTROL', 'STEPS#0002']) {
      await put(tableName, sk, { kind: sk === 'CONTROL' ? 'control' : 'other' });
    }
    await table.doc.send(new DeleteCommand({ TableName: tableName, Key: { pk: 'RUN#r1', sk: 'CONTROL' } }));
    await source.drained();

    expect(events.flatMap((event) => event.Records.map((r) => `${r.eventName} ${skOf(r)}`))).toEqual([
      'INSERT RUN',
      'INSERT STEPS#0001',
      'INSERT STEPS#0002',
      'REMOVE CONTROL',
    ]);
    await expect(
      start(tableName, async () => undefined, { filters: [{ eventName: 'INSERT' }] }),
    ).rejects.toThrow(/Invalid event pattern/);
  });

  it('invokes with at most batchSize records, one batch at a time, in order', async () => {
    const tableName = await newTable();
    for (let i = 1; i <= 7; i++) await put(tableName, `STEPS#000${i}`);
    let running = 0;
    let mostAtOnce = 0;

    const { events, source } = await start(
      tableName,
      async () => {
        mostAtOnce = Math.max(mostAtOnce, ++running);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running--;
      },
      { batchSize: 3 },
    );
    await source.drained();

    expect(events.map(sksOf)).toEqual([
      ['STEPS#0001', 'STEPS#0002', 'STEPS#0003'],
      ['STEPS#0004', 'STEPS#0005', 'STEPS#0006'],
      ['STEPS#0007'],
    ]);
    expect(mostAtOnce).toBe(1);
  });

  it('gathers the records written within the batching window into one invocation', async () => {
    const tableName = await newTable();
    const { events, source } = await start(tableName, async () => undefined, {
      maximumBatchingWindowMs: 1500,
    });

    for (let i = 1; i <= 4; i++) await put(tableName, `STEPS#000${i}`);
    await source.drained();

    expect(events.map(sksOf)).toEqual([['STEPS#0001', 'STEPS#0002', 'STEPS#0003', 'STEPS#0004']]);
  });

  it('restarts the batch from the first record the function reports failed', async () => {
    const tableName = await newTable();
    for (let i = 1; i <= 5; i++) await put(tableName, `STEPS#000${i}`);

    const { events, failures, source } = await start(tableName, async (event, call) =>
      call === 1
        ? {
            // the lowest sequence number counts, whatever the order
            batchItemFailures: [
              { itemIdentifier: event.Records[4]?.dynamodb?.SequenceNumber },
              { itemIdentifier: event.Records[2]?.dynamodb?.SequenceNumber },
            ],
          }
        : { batchItemFailures: [] },
    );
    await source.drained();

    expect(events.map(sksOf)).toEqual([
      ['STEPS#0001', 'STEPS#0002', 'STEPS#0003', 'STEPS#0004', 'STEPS#0005'],
      ['STEPS#0003', 'STEPS#0004', 'STEPS#0005'],
    ]);
    expect(failures).toEqual([]);
  });

  it('retries the whole batch on a malformed response, and ignores the response without ReportBatchItemFailures', async () => {
    const tableName = await newTable();
    await put(tableName, 'RUN');
    const malformed = { batchItemFailures: [{ itemIdentifier: '' }] };

    const reporting = await start(tableName, async (_event, call) => (call === 1 ? malformed : undefined));
    await reporting.source.drained();
    await reporting.source.stop();
    const ignoring = await start(tableName, async () => malformed, { reportBatchItemFailures: false });
    await ignoring.source.drained();

    expect(reporting.events.map(sksOf)).toEqual([['RUN'], ['RUN']]);
    expect(ignoring.events.map(sksOf)).toEqual([['RUN']]);
  });

  it('retries a batch whose function throws, then sends it to onFailure and goes on with later records', async () => {
    const tableName = await newTable();
    const logError = vi.fn();
    const { events, failures, source } = await start(
      tableName,
      async (event) => {
        if (sksOf(event).includes('POISON')) throw new Error('cannot read the step');
      },
      { batchSize: 1, maximumRetryAttempts: 2, logError },
    );

    await put(tableName, 'STEPS#0001');
    await put(tableName, 'POISON');
    await put(tableName, 'STEPS#0002');
    await source.drained();

    expect(events.map(sksOf)).toEqual([['STEPS#0001'], ['POISON'], ['POISON'], ['POISON'], ['STEPS#0002']]);
    expect(failures).toEqual([
      { records: [expect.objectContaining({ eventName: 'INSERT' })], error: 'Error: cannot read the step' },
    ]);
    expect(failures[0]?.records.map(skOf)).toEqual(['POISON']);
    expect(logError).toHaveBeenCalledWith(expect.stringContaining('the function failed'), expect.any(Error));
  });

  it('sends only the failed part of a partially failed batch to onFailure once its retries are spent', async () => {
    const tableName = await newTable();
    for (const sk of ['STEPS#0001', 'POISON', 'STEPS#0002']) await put(tableName, sk);

    const { events, failures, source } = await start(
      tableName,
      async (event) => ({
        batchItemFailures: event.Records.filter((record) => skOf(record) === 'POISON').map((record) => ({
          itemIdentifier: record.dynamodb?.SequenceNumber,
        })),
      }),
      { maximumRetryAttempts: 1 },
    );
    await source.drained();

    expect(events.map(sksOf)).toEqual([
      ['STEPS#0001', 'POISON', 'STEPS#0002'],
      ['POISON', 'STEPS#0002'],
    ]);
    expect(failures.map((failure) => failure.records.map(skOf))).toEqual([['POISON', 'STEPS#0002']]);
    expect(failures[0]?.error).toMatch(/reported record \d+ failed/);
  });

  it('halves a failing batch with bisectBatchOnError until the bad record is alone', async () => {
    const tableName = await newTable();
    for (const sk of ['STEPS#0001', 'STEPS#0002', 'POISON', 'STEPS#0003']) await put(tableName, sk);

    const { events, failures, source } = await start(
      tableName,
      async (event) => {
        if (sksOf(event).includes('POISON')) throw new Error('bad step');
      },
      { bisectBatchOnError: true, maximumRetryAttempts: 1 },
    );
    await source.drained();

    expect(events.map(sksOf)).toEqual([
      ['STEPS#0001', 'STEPS#0002', 'POISON', 'STEPS#0003'],
      ['STEPS#0001', 'STEPS#0002'],
      ['POISON', 'STEPS#0003'],
      ['POISON'],
      // a split is not a retry: the record alone has its one retry
      ['POISON'],
      ['STEPS#0003'],
    ]);
    expect(failures.map((failure) => failure.records.map(skOf))).toEqual([['POISON']]);
  });

  it('stops polling on stop(), at once and with nothing left running', async () => {
    const tableName = await newTable();
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    const timersBefore = timers();
    const send = vi.spyOn(streams, 'send');
    const { events, source } = await start(tableName);
    await put(tableName, 'RUN');
    await source.drained();
    const pending = source.drained().catch((err: Error) => err);
    const stopping = Date.now();

    await source.stop();
    const stoppedIn = Date.now() - stopping;
    const callsAtStop = send.mock.calls.length;
    await put(tableName, 'STEPS#0001');
    await new Promise((resolve) => setTimeout(resolve, 400));

    expect(stoppedIn).toBeLessThan(500);
    expect(send.mock.calls.length).toBe(callsAtStop);
    expect(events.flatMap(sksOf)).toEqual(['RUN']);
    expect(await pending).toEqual(new Error(`${source.streamArn}: stopped before it drained`));
    await expect(source.drained()).rejects.toThrow(/stopped/);
    // its polling and discovery timers are gone (counted in the whole process, where another test's
    // timer may still be running out: it is given a moment)
    await expect.poll(timers, { timeout: 2000 }).toBeLessThanOrEqual(timersBefore);
    send.mockRestore();
  });

  it('refuses a table without a stream', async () => {
    const tableName = `no-stream-${++tableCount}`;
    await table.client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );

    await expect(start(tableName)).rejects.toThrow(`table ${tableName} has no stream`);
  });
});

describe('startDynamoDbStreamSource across shards', () => {
  const streamArn = 'arn:aws:dynamodb:us-east-1:000000000000:table/runs/stream/2026-01-01T00:00:00.000';
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
  const dynamodb = new DynamoDBClient({ region: 'us-east-1', credentials });
  const streams = new DynamoDBStreamsClient({ region: 'us-east-1', credentials });
  const dynamodbMock = mockClient(dynamodb);
  const streamsMock = mockClient(streams);

  afterAll(() => {
    dynamodbMock.restore();
    streamsMock.restore();
  });

  const record = (sequenceNumber: string, sk: string): StreamRecord => ({
    eventID: `event-${sequenceNumber}`,
    eventName: 'INSERT',
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    dynamodb: {
      ApproximateCreationDateTime: new Date('2026-01-01T00:00:05Z'),
      Keys: { pk: { S: 'RUN#r1' }, sk: { S: sk } },
      NewImage: { pk: { S: 'RUN#r1' }, sk: { S: sk } },
      SequenceNumber: sequenceNumber,
      SizeBytes: 20,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  });

  /**
   * A stream split once: the parent, closed, holds two pages of records; its child one record so far.
   * Every GetRecords is logged by the iterator it was given.
   */
  const splitStream = () => {
    dynamodbMock.reset();
    streamsMock.reset();
    dynamodbMock.on(DescribeTableCommand).resolves({
      Table: {
        LatestStreamArn: streamArn,
        StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' },
      },
    });
    streamsMock.on(DescribeStreamCommand).resolves({
      StreamDescription: {
        StreamArn: streamArn,
        Shards: [
          {
            ShardId: 'child',
            ParentShardId: 'parent',
            SequenceNumberRange: { StartingSequenceNumber: '300' },
          },
          {
            ShardId: 'parent',
            SequenceNumberRange: { StartingSequenceNumber: '100', EndingSequenceNumber: '200' },
          },
        ],
      },
    });
    streamsMock
      .on(GetShardIteratorCommand)
      .callsFake(({ ShardId, ShardIteratorType }) => ({ ShardIterator: `${ShardId}:${ShardIteratorType}` }));
    const pages: Record<string, { Records: StreamRecord[]; NextShardIterator?: string }> = {
      'parent:TRIM_HORIZON': { Records: [record('100', 'STEPS#0001')], NextShardIterator: 'parent:2' },
      // the end of a closed shard: no next iterator
      'parent:2': { Records: [record('200', 'STEPS#0002')] },
      'child:TRIM_HORIZON': { Records: [record('300', 'STEPS#0003')], NextShardIterator: 'child:tip' },
    };
    const reads: string[] = [];
    streamsMock.on(GetRecordsCommand).callsFake(async ({ ShardIterator }) => {
      reads.push(ShardIterator);
      // the parent is slow to answer: its child must wait all the same
      if (ShardIterator.startsWith('parent')) await new Promise((resolve) => setTimeout(resolve, 50));
      return pages[ShardIterator] ?? { Records: [], NextShardIterator: ShardIterator };
    });
    return reads;
  };

  const follow = async (startingPosition: 'TRIM_HORIZON' | 'LATEST') => {
    const events: DynamoDBStreamEvent[] = [];
    const source = await startDynamoDbStreamSource({
      dynamodb,
      streams,
      tableName: 'runs',
      startingPosition,
      reportBatchItemFailures: true,
      maximumRetryAttempts: 0,
      pollIntervalMs: 10,
      invoke: async (event) => {
        events.push(event);
      },
    });
    try {
      await source.drained();
    } finally {
      await source.stop();
    }
    return events;
  };

  it('reads a child shard from its start once its parent is read to its end', async () => {
    const reads = splitStream();

    const events = await follow('TRIM_HORIZON');

    expect(events.map(sksOf)).toEqual([['STEPS#0001'], ['STEPS#0002'], ['STEPS#0003']]);
    expect(events[0]?.Records[0]).toMatchObject({
      eventSourceARN: streamArn,
      dynamodb: { ApproximateCreationDateTime: Date.parse('2026-01-01T00:00:05Z') / 1000 },
    });
    expect(reads.slice(0, 3)).toEqual(['parent:TRIM_HORIZON', 'parent:2', 'child:TRIM_HORIZON']);
  });

  it('starts LATEST at the tip of the open shards, skipping closed ones', async () => {
    const reads = splitStream();

    const events = await follow('LATEST');

    expect(events).toEqual([]);
    expect(streamsMock.commandCalls(GetShardIteratorCommand).map((call) => call.args[0].input)).toEqual([
      { StreamArn: streamArn, ShardId: 'child', ShardIteratorType: 'LATEST' },
    ]);
    expect(new Set(reads)).toEqual(new Set(['child:LATEST']));
  });
});
