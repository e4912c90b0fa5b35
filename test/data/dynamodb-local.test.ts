import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  ListTablesCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from '@aws-sdk/client-dynamodb-streams';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createTableInput, ensureTable, startDynamoDbLocal } from '../../infra/local/dynamodb.js';
import { TABLE } from '../../shared/manifest.js';
import { localClient, useTestTable } from '../support/dynamodb-local.js';

describe('createTableInput', () => {
  it('describes the table CDK deploys: keys, every index with the projected attributes, on demand, its stream', () => {
    const input = createTableInput('runs');

    expect(input.TableName).toBe('runs');
    expect(input.BillingMode).toBe('PAY_PER_REQUEST');
    expect(input.StreamSpecification).toEqual({ StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' });
    expect(input.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(input.GlobalSecondaryIndexes?.map((i) => i.IndexName)).toEqual(
      TABLE.globalSecondaryIndexes.map((i) => i.indexName),
    );
    for (const index of input.GlobalSecondaryIndexes ?? []) {
      const definition = TABLE.globalSecondaryIndexes.find((i) => i.indexName === index.IndexName);
      expect(index.KeySchema).toEqual([
        { AttributeName: definition?.partitionKey, KeyType: 'HASH' },
        { AttributeName: 'runId', KeyType: 'RANGE' },
      ]);
      expect(index.Projection).toEqual({
        ProjectionType: 'INCLUDE',
        NonKeyAttributes: [...TABLE.projectedAttributes],
      });
    }
    const defined = input.AttributeDefinitions?.map((a) => a.AttributeName).sort();
    expect(defined).toEqual([
      'gAcct',
      'gAcctPod',
      'gAcctSource',
      'gAcctStatus',
      'gActive',
      'gOpenPr',
      'gPaused',
      'gProj',
      'gProjStatus',
      'gQueued',
      'pk',
      'runId',
      'sk',
    ]);
  });
});

describe('ensureTable', () => {
  const table = useTestTable();

  const streamOf = async (tableName: string) =>
    (await table.client.send(new DescribeTableCommand({ TableName: tableName }))).Table;

  it('creates the table with its stream, which DynamoDB Local serves through the Streams API', async () => {
    const streams = new DynamoDBStreamsClient({
      endpoint: table.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      const created = await streamOf(table.tableName);
      expect(created?.StreamSpecification).toEqual({
        StreamEnabled: true,
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      });
      const streamArn = created?.LatestStreamArn;
      expect(streamArn).toMatch(new RegExp(`:table/${table.tableName}/stream/`));
      await table.client.send(
        new PutItemCommand({ TableName: table.tableName, Item: { pk: { S: 'RUN#1' }, sk: { S: 'RUN' } } }),
      );

      const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }));
      const { ShardIterator } = await streams.send(
        new GetShardIteratorCommand({
          StreamArn: streamArn,
          ShardId: StreamDescription?.Shards?.[0]?.ShardId,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      );
      const { Records } = await streams.send(new GetRecordsCommand({ ShardIterator }));

      expect(StreamDescription).toMatchObject({
        StreamStatus: 'ENABLED',
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      });
      expect(Records).toEqual([
        expect.objectContaining({
          eventName: 'INSERT',
          dynamodb: expect.objectContaining({
            Keys: { pk: { S: 'RUN#1' }, sk: { S: 'RUN' } },
            NewImage: { pk: { S: 'RUN#1' }, sk: { S: 'RUN' } },
            StreamViewType: 'NEW_AND_OLD_IMAGES',
          }),
        }),
      ]);
    } finally {
      streams.destroy();
    }
  });

  it('turns the stream on for a table persisted without one, or with another view type', async () => {
    const { StreamSpecification: _, ...withoutStream } = createTableInput('runs-without-stream');
    await table.client.send(new CreateTableCommand(withoutStream));
    await table.client.send(
      new CreateTableCommand({
        ...createTableInput('runs-keys-only'),
        StreamSpecification: { StreamEnabled: true, StreamViewType: 'KEYS_ONLY' },
      }),
    );
    const keysOnlyArn = (await streamOf('runs-keys-only'))?.LatestStreamArn;

    await ensureTable(table.client, 'runs-without-stream');
    await ensureTable(table.client, 'runs-keys-only');

    for (const tableName of ['runs-without-stream', 'runs-keys-only']) {
      const described = await streamOf(tableName);
      expect(described?.StreamSpecification).toEqual({
        StreamEnabled: true,
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      });
      expect(described?.LatestStreamArn).toBeDefined();
    }
    // a new stream: the view type of an enabled one cannot change
    expect((await streamOf('runs-keys-only'))?.LatestStreamArn).not.toBe(keysOnlyArn);
  });

  it('adds the indexes a table persisted by an earlier start lacks', async () => {
    const full = createTableInput('runs-fewer-indexes');
    const [first, ...added] = full.GlobalSecondaryIndexes ?? [];
    const keyNames = new Set(
      [...(full.KeySchema ?? []), ...(first?.KeySchema ?? [])].map((k) => k.AttributeName),
    );
    await table.client.send(
      new CreateTableCommand({
        ...full,
        AttributeDefinitions: full.AttributeDefinitions?.filter((a) => keyNames.has(a.AttributeName)),
        GlobalSecondaryIndexes: first ? [first] : [],
      }),
    );

    await ensureTable(table.client, 'runs-fewer-indexes');

    const described = await table.client.send(new DescribeTableCommand({ TableName: 'runs-fewer-indexes' }));
    expect(described.Table?.GlobalSecondaryIndexes?.map((i) => i.IndexName).sort()).toEqual(
      [first, ...added].map((i) => i?.IndexName).sort(),
    );
    expect(added.length).toBeGreaterThan(0);
  });
});

describe('startDynamoDbLocal', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dynamodb-local-'));
  const binDir = mkdtempSync(join(tmpdir(), 'fake-java-'));
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(binDir, { recursive: true, force: true });
  });

  /** A fresh copy of the module (it remembers a good Java) started with only `binDir` on PATH. */
  const startWithPath = async () => {
    vi.resetModules();
    const fresh = await import('../../infra/local/dynamodb.js');
    const path = process.env.PATH;
    process.env.PATH = binDir;
    try {
      return await fresh.startDynamoDbLocal({ port: 0 });
    } finally {
      process.env.PATH = path;
    }
  };

  it('says that Java 17 or newer is needed when `java` cannot be run', async () => {
    await expect(startWithPath()).rejects.toThrow(/needs Java 17 or newer.*could not be run/s);
  });

  it('says that Java 17 or newer is needed when `java` is older', async () => {
    const fake = join(binDir, 'java');
    writeFileSync(fake, '#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n');
    chmodSync(fake, 0o755);
    await expect(startWithPath()).rejects.toThrow(/needs Java 17 or newer.*"11\.0\.22"/s);
  });

  it('keeps tables in dataDir across restarts, with TTL on, owns its port, and frees it on stop', async () => {
    const first = await startDynamoDbLocal({ port: 0, dataDir });
    const client = localClient(first.endpoint);
    try {
      expect(first.port).toBeGreaterThan(0);
      await expect(startDynamoDbLocal({ port: first.port })).rejects.toThrow(`cannot use port ${first.port}`);
      await ensureTable(client, 'persisted');
      // a second call finds the table and changes nothing
      await ensureTable(client, 'persisted');
      const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: 'persisted' }));
      expect(ttl.TimeToLiveDescription).toMatchObject({
        TimeToLiveStatus: 'ENABLED',
        AttributeName: TABLE.timeToLiveAttribute,
      });
      const table = await client.send(new DescribeTableCommand({ TableName: 'persisted' }));
      expect(table.Table?.TableStatus).toBe('ACTIVE');
      expect(table.Table?.GlobalSecondaryIndexes).toHaveLength(TABLE.globalSecondaryIndexes.length);
    } finally {
      client.destroy();
      await first.stop();
    }
    const refused = localClient(first.endpoint, { maxAttempts: 1 });
    await expect(refused.send(new ListTablesCommand({}))).rejects.toThrow();
    refused.destroy();

    const second = await startDynamoDbLocal({ port: first.port, dataDir });
    const again = localClient(second.endpoint);
    try {
      expect(second.port).toBe(first.port);
      expect((await again.send(new ListTablesCommand({}))).TableNames).toEqual(['persisted']);
      const persisted = await again.send(new DescribeTableCommand({ TableName: 'persisted' }));
      expect(persisted.Table?.StreamSpecification?.StreamEnabled).toBe(true);
    } finally {
      again.destroy();
      await second.stop();
    }
  });
});
