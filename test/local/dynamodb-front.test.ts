import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BatchWriteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  ScanCommand,
  TransactGetItemsCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DynamoDbFront, type FrontStats, startDynamoDbFront } from '../../infra/local/dynamodb-front.js';
import { FUNCTIONS, type FunctionName } from '../../shared/manifest.js';

const TABLE = 'execution-runs';
const KEY = { pk: { S: 'RUN#run_1' }, sk: { S: 'RUN' } };

interface Received {
  url: string;
  target: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Stands in for DynamoDB Local: records what reaches it and answers `{}`. */
const startUpstream = async (name: string) => {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      received.push({
        url: req.url ?? '',
        target: String(req.headers['x-amz-target']),
        headers: req.headers,
        body,
      });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'x-upstream': name });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

describe('the DynamoDB front', () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let front: DynamoDbFront;
  const clients: DynamoDBClient[] = [];

  /** A function's SDK client, as its sandbox makes it; one attempt, so each request shows. */
  const client = (fn: FunctionName, maxAttempts = 1) => {
    const made = new DynamoDBClient({
      endpoint: front.endpointOf(fn),
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      maxAttempts,
    });
    clients.push(made);
    return made;
  };
  const local = (path: string, init?: RequestInit) => fetch(`${front.url}/_local/${path}`, init);
  const addFault = (fault: Record<string, unknown>) =>
    local('faults', { method: 'POST', body: JSON.stringify(fault) });
  const stats = async () =>
    ((await (await local('stats')).json()) as { functions: Record<string, Record<string, FrontStats>> })
      .functions;

  beforeAll(async () => {
    upstream = await startUpstream('dynamodb-local');
    front = await startDynamoDbFront({
      port: 0,
      host: '127.0.0.1',
      upstream: upstream.url,
      functions: FUNCTIONS,
      tableName: TABLE,
      region: 'us-east-1',
      accountId: '000000000000',
    });
  });

  afterEach(async () => {
    await local('faults', { method: 'DELETE' });
    upstream.received.length = 0;
  });

  afterAll(async () => {
    for (const made of clients) made.destroy();
    await front.close();
    await upstream.close();
  });

  it('passes what the function is granted on to DynamoDB unchanged', async () => {
    await client('checks').send(new GetItemCommand({ TableName: TABLE, Key: KEY }));

    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]).toMatchObject({ url: '/', target: 'DynamoDB_20120810.GetItem' });
    expect(JSON.parse(upstream.received[0]?.body ?? '')).toEqual({ TableName: TABLE, Key: KEY });
    expect(upstream.received[0]?.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=local\//);
  });

  it('refuses an action the function is not granted, as IAM does, without reaching DynamoDB', async () => {
    const error = await client('checks')
      .send(new ScanCommand({ TableName: TABLE }))
      .catch((err: unknown) => err);

    expect(error).toMatchObject({ name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } });
    expect((error as Error).message).toBe(
      'User: arn:aws:sts::000000000000:assumed-role/execution-runs-checks/execution-runs-checks is not ' +
        'authorized to perform: dynamodb:Scan on resource: arn:aws:dynamodb:us-east-1:000000000000:table/execution-runs ' +
        'because no identity-based policy allows the dynamodb:Scan action (the function checks is not granted it in shared/manifest.ts)',
    );
    expect(upstream.received).toEqual([]);
  });

  it('lets a function query only the indexes it is granted', async () => {
    const query = (index: string) =>
      new QueryCommand({
        TableName: TABLE,
        IndexName: index,
        KeyConditionExpression: 'g = :g',
        ExpressionAttributeValues: { ':g': { S: 'x' } },
      });

    await client('sweeper').send(query('queued'));
    await client('api').send(query('byAccount'));
    await expect(client('sweeper').send(query('byAccount'))).rejects.toThrow(
      /dynamodb:Query on resource: arn:aws:dynamodb:us-east-1:000000000000:table\/execution-runs\/index\/byAccount/,
    );
    expect(upstream.received).toHaveLength(2);
  });

  it('authorizes each part of a transaction as its own action, and a batch write as BatchWriteItem', async () => {
    const put = { Put: { TableName: TABLE, Item: KEY } };
    const update = {
      Update: {
        TableName: TABLE,
        Key: KEY,
        UpdateExpression: 'SET #n = :n',
        ExpressionAttributeNames: { '#n': 'note' },
        ExpressionAttributeValues: { ':n': { S: 'x' } },
      },
    };
    const check = {
      ConditionCheck: { TableName: TABLE, Key: KEY, ConditionExpression: 'attribute_exists(pk)' },
    };
    const batch = new BatchWriteItemCommand({ RequestItems: { [TABLE]: [{ PutRequest: { Item: KEY } }] } });

    await client('api').send(new TransactWriteItemsCommand({ TransactItems: [put, update] }));
    await client('checks').send(
      new TransactGetItemsCommand({ TransactItems: [{ Get: { TableName: TABLE, Key: KEY } }] }),
    );
    await client('agentApi').send(batch);
    await expect(
      client('api').send(new TransactWriteItemsCommand({ TransactItems: [put, check] })),
    ).rejects.toThrow(/dynamodb:ConditionCheckItem/);
    await expect(client('finalize').send(batch)).rejects.toThrow(
      /execution-runs-finalize is not authorized to perform: dynamodb:BatchWriteItem/,
    );
    expect(upstream.received.map((r) => r.target)).toEqual([
      'DynamoDB_20120810.TransactWriteItems',
      'DynamoDB_20120810.TransactGetItems',
      'DynamoDB_20120810.BatchWriteItem',
    ]);
  });

  it('grants nothing on another table', async () => {
    await expect(
      client('checks').send(new GetItemCommand({ TableName: 'other-table', Key: KEY })),
    ).rejects.toThrow(
      /dynamodb:GetItem on resource: arn:aws:dynamodb:us-east-1:000000000000:table\/other-table /,
    );
  });

  it('throttles the chosen function and operation the given number of times, as DynamoDB answers it', async () => {
    const response = await addFault({
      function: 'checks',
      operation: 'GetItem',
      error: 'ProvisionedThroughputExceededException',
      times: 2,
    });
    expect(response.status).toBe(200);
    const before = (await stats()).checks?.GetItem ?? { requests: 0, denied: 0, faults: 0 };
    const checks = client('checks');
    const get = new GetItemCommand({ TableName: TABLE, Key: KEY });

    await expect(checks.send(get)).rejects.toMatchObject({
      name: 'ProvisionedThroughputExceededException',
      $metadata: { httpStatusCode: 400 },
      message: 'injected fault: ProvisionedThroughputExceededException',
    });
    // other operations and functions are not throttled
    await checks.send(new UpdateItemCommand({ TableName: TABLE, Key: KEY }));
    await client('finalize').send(get);
    await expect(checks.send(get)).rejects.toMatchObject({ name: 'ProvisionedThroughputExceededException' });
    await checks.send(get);

    expect((await stats()).checks?.GetItem).toEqual({
      requests: before.requests + 3,
      denied: before.denied,
      faults: before.faults + 2,
    });
  });

  it('lets the SDK retry through a short burst of throttling, as it would on AWS', async () => {
    await addFault({ function: 'finalize', error: 'ThrottlingException', times: 2 });

    const answer = await client('finalize', 3).send(new GetItemCommand({ TableName: TABLE, Key: KEY }));

    expect(answer.$metadata.attempts).toBe(3);
  });

  it('answers server errors with 500, for any function, for a while', async () => {
    await addFault({ error: 'InternalServerError', durationMs: 300 });

    await expect(
      client('parkPod').send(new GetItemCommand({ TableName: TABLE, Key: KEY })),
    ).rejects.toMatchObject({ name: 'InternalServerError', $metadata: { httpStatusCode: 500 } });
    await new Promise((resolve) => setTimeout(resolve, 350));
    await client('parkPod').send(new GetItemCommand({ TableName: TABLE, Key: KEY }));
  });

  it('clears its faults on DELETE and refuses a fault it cannot inject', async () => {
    await addFault({ error: 'RequestLimitExceeded' });
    await local('faults', { method: 'DELETE' });

    await client('reconcile').send(new GetItemCommand({ TableName: TABLE, Key: KEY }));
    expect((await addFault({ error: 'NoSuchError' })).status).toBe(400);
    expect((await addFault({ function: 'nobody', error: 'ThrottlingException' })).status).toBe(400);
    expect((await addFault({ error: 'ThrottlingException', times: 1, durationMs: 5 })).status).toBe(400);
  });

  it('sends what it allows to another upstream once told to, as the benchmark meters it', async () => {
    const meter = await startUpstream('meter');
    try {
      front.setUpstream(meter.url);
      await client('api').send(new GetItemCommand({ TableName: TABLE, Key: KEY }));

      expect(meter.received).toHaveLength(1);
      // so the meter can tell whose units they are
      expect(meter.received[0]?.headers['x-local-function']).toBe('api');
      expect(upstream.received).toEqual([]);
    } finally {
      front.setUpstream(upstream.url);
      await meter.close();
    }
  });
});
