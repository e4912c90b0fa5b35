import { createHash } from 'node:crypto';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SqsEmulator, startSqsEmulator } from '../../infra/local/emulators/sqs.js';
import {
  type SqsEventSource,
  type SqsEventSourceOptions,
  startSqsEventSource,
} from '../../infra/local/event-sources.js';

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';

describe('startSqsEventSource', () => {
  let emulator: SqsEmulator;
  let sqs: SQSClient;
  let source: SqsEventSource | undefined;
  let queueCount = 0;

  beforeAll(async () => {
    emulator = await startSqsEmulator({ region: REGION, accountId: ACCOUNT });
    sqs = new SQSClient({
      region: REGION,
      endpoint: emulator.url,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  afterAll(async () => {
    sqs.destroy();
    await emulator.close();
  });

  /** A fresh queue; by default its messages come back one second after a failed receive. */
  const newQueue = async (visibilityTimeoutSeconds = 1) => {
    const name = `runs-${++queueCount}`;
    const { QueueUrl } = await sqs.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { VisibilityTimeout: String(visibilityTimeoutSeconds) },
      }),
    );
    return { queueUrl: QueueUrl as string, queueArn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}` };
  };

  const sendAll = async (queueUrl: string, bodies: string[]) => {
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: bodies.map((body, i) => ({ Id: String(i), MessageBody: body })),
      }),
    );
  };

  const inFlightAndVisible = async (queueUrl: string) => {
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    return (
      Number(Attributes?.ApproximateNumberOfMessages) +
      Number(Attributes?.ApproximateNumberOfMessagesNotVisible)
    );
  };

  const visibleCount = async (queueUrl: string) => {
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
    );
    return Number(Attributes?.ApproximateNumberOfMessages);
  };

  /** Starts a mapping whose function is `handle`; resolves the n-th invocation's event when it arrives. */
  const start = (
    queue: { queueUrl: string; queueArn: string },
    handle: (event: SQSEvent, call: number) => Promise<unknown>,
    overrides: Partial<SqsEventSourceOptions> = {},
  ) => {
    const events: SQSEvent[] = [];
    const waiters: Array<{ n: number; resolve: () => void }> = [];
    source = startSqsEventSource({
      sqs,
      ...queue,
      batchSize: 10,
      maxBatchingWindowSeconds: 0,
      reportBatchItemFailures: true,
      pollers: 1,
      logError: () => undefined,
      invoke: async (event) => {
        events.push(event);
        for (const w of waiters.filter((w) => events.length >= w.n)) w.resolve();
        return handle(event, events.length);
      },
      ...overrides,
    });
    const invocation = (n: number) =>
      new Promise<SQSEvent>((resolve) => {
        const done = () => resolve(events[n - 1] as SQSEvent);
        if (events.length >= n) done();
        else waiters.push({ n, resolve: done });
      });
    return { events, invocation };
  };

  it('delivers a batch as a real SQSEvent and deletes it after success', async () => {
    const queue = await newQueue(30);
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.queueUrl,
        MessageBody: '{"runId":"run_1"}',
        MessageAttributes: { kind: { DataType: 'String', StringValue: 'dispatch' } },
      }),
    );
    await sendAll(queue.queueUrl, ['{"runId":"run_2"}', '{"runId":"run_3"}']);
    const { invocation } = start(queue, async () => ({ batchItemFailures: [] }), {
      maxBatchingWindowSeconds: 1,
    });

    const event = await invocation(1);

    expect(event.Records.map((r) => r.body).sort()).toEqual([
      '{"runId":"run_1"}',
      '{"runId":"run_2"}',
      '{"runId":"run_3"}',
    ]);
    const first = event.Records.find((r) => r.body === '{"runId":"run_1"}') as SQSRecord;
    expect(first).toMatchObject({
      eventSource: 'aws:sqs',
      eventSourceARN: queue.queueArn,
      awsRegion: REGION,
      md5OfBody: createHash('md5').update('{"runId":"run_1"}').digest('hex'),
      attributes: { ApproximateReceiveCount: '1' },
      messageAttributes: {
        kind: { stringValue: 'dispatch', stringListValues: [], binaryListValues: [], dataType: 'String' },
      },
    });
    expect(first.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.receiptHandle).not.toBe('');
    expect(Number(first.attributes.SentTimestamp)).toBeGreaterThan(Date.now() - 60_000);
    expect(Number(first.attributes.ApproximateFirstReceiveTimestamp)).toBeGreaterThan(0);
    expect(first.attributes.SenderId).not.toBe('');
    await expect.poll(() => inFlightAndVisible(queue.queueUrl)).toBe(0);
  });

  it('keeps a message received twice within the batching window once, with its newest handle', async () => {
    const queue = await newQueue(1);
    await sendAll(queue.queueUrl, ['a']);
    const { invocation } = start(queue, async () => ({}), { maxBatchingWindowSeconds: 2, batchSize: 5 });

    const event = await invocation(1);

    expect(event.Records.map((r) => r.body)).toEqual(['a']);
    expect(Number(event.Records[0]?.attributes.ApproximateReceiveCount)).toBeGreaterThan(1);
    await expect.poll(() => inFlightAndVisible(queue.queueUrl)).toBe(0);
  });

  it('redelivers only the messages reported in batchItemFailures', async () => {
    const queue = await newQueue();
    await sendAll(queue.queueUrl, ['a', 'b', 'c']);
    const { invocation } = start(queue, async (event, call) => {
      if (call > 1) return {};
      const failed = event.Records.find((r) => r.body === 'b') as SQSRecord;
      return { batchItemFailures: [{ itemIdentifier: failed.messageId }] };
    });

    expect((await invocation(1)).Records).toHaveLength(3);
    const redelivered = await invocation(2);

    expect(redelivered.Records.map((r) => r.body)).toEqual(['b']);
    expect(redelivered.Records[0]?.attributes.ApproximateReceiveCount).toBe('2');
    await expect.poll(() => inFlightAndVisible(queue.queueUrl)).toBe(0);
  });

  it('redelivers the whole batch when the function throws', async () => {
    const queue = await newQueue();
    await sendAll(queue.queueUrl, ['a', 'b']);
    const { invocation } = start(queue, async (_event, call) => {
      if (call === 1) throw new Error('function error');
      return undefined;
    });

    await invocation(1);
    const redelivered = await invocation(2);

    expect(redelivered.Records.map((r) => r.body).sort()).toEqual(['a', 'b']);
    expect(redelivered.Records.map((r) => r.attributes.ApproximateReceiveCount)).toEqual(['2', '2']);
  });

  it('treats a malformed failure report as a failed batch, as Lambda does', async () => {
    const queue = await newQueue();
    await sendAll(queue.queueUrl, ['a']);
    const { invocation } = start(queue, async (_event, call) =>
      call === 1 ? { batchItemFailures: [{ itemIdentifier: 'not-in-this-batch' }] } : {},
    );

    await invocation(1);

    expect((await invocation(2)).Records.map((r) => r.body)).toEqual(['a']);
  });

  it('ignores the response when batch item failures are not reported', async () => {
    const queue = await newQueue();
    await sendAll(queue.queueUrl, ['a']);
    const { invocation } = start(
      queue,
      async (event) => ({ batchItemFailures: [{ itemIdentifier: event.Records[0]?.messageId }] }),
      { reportBatchItemFailures: false },
    );

    await invocation(1);

    await expect.poll(() => inFlightAndVisible(queue.queueUrl)).toBe(0);
  });

  it('on stop, finishes the batch it is gathering and delivers it', async () => {
    const queue = await newQueue(30);
    const { events } = start(queue, async () => undefined, { maxBatchingWindowSeconds: 1, batchSize: 5 });
    await sendAll(queue.queueUrl, ['held']);
    await expect.poll(() => visibleCount(queue.queueUrl)).toBe(0);

    await source?.stop();
    source = undefined;

    expect(events.map((e) => e.Records.map((r) => r.body))).toEqual([['held']]);
    expect(await inFlightAndVisible(queue.queueUrl)).toBe(0);
  });

  it('stops at once while its pollers are in a 20-second long poll', async () => {
    const queue = await newQueue();
    start(queue, async () => undefined, { pollers: 3 });
    await new Promise((resolve) => setTimeout(resolve, 200));

    const started = Date.now();
    await source?.stop();
    source = undefined;

    expect(Date.now() - started).toBeLessThan(1000);
  });
});
