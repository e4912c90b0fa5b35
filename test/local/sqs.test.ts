import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type SqsEmulator, startSqsEmulator } from '../../infra/local/emulators/sqs.js';

const clientFor = (emulator: SqsEmulator) =>
  new SQSClient({
    endpoint: emulator.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });

let unique = 0;
const queueName = (label: string) => `${label}-${Date.now().toString(36)}-${++unique}`;

const errorOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (err) {
    return err as Error & { Code?: string; $metadata?: { httpStatusCode?: number } };
  }
  throw new Error('expected the call to fail');
};

describe('SQS emulator (JSON protocol, real SDK client)', () => {
  let emulator: SqsEmulator;
  let sqs: SQSClient;

  beforeAll(async () => {
    emulator = await startSqsEmulator({ port: 0 });
    sqs = clientFor(emulator);
  });

  afterAll(async () => {
    sqs.destroy();
    await emulator.close();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  const createQueue = async (label: string, Attributes?: Record<string, string>) => {
    const name = queueName(label);
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes }));
    return { name, url: QueueUrl as string };
  };

  const attributesOf = async (QueueUrl: string) =>
    (await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['All'] }))).Attributes ?? {};

  it('creates a queue at the account-scoped URL, idempotently for the same attributes', async () => {
    const name = queueName('create');
    const first = await sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '45' } }),
    );
    expect(first.QueueUrl).toBe(`http://127.0.0.1:${emulator.port}/000000000000/${name}`);

    const again = await sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '45' } }),
    );
    expect(again.QueueUrl).toBe(first.QueueUrl);

    const conflict = await errorOf(
      sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '10' } })),
    );
    expect(conflict.name).toBe('QueueNameExists');
  });

  it('lists queues by name prefix and resolves a name to its URL', async () => {
    const prefix = queueName('list');
    const urls = await Promise.all(
      ['a', 'b'].map(
        async (suffix) =>
          (await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}-${suffix}` }))).QueueUrl as string,
      ),
    );
    await createQueue('other');

    const listed = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: prefix }));
    expect(listed.QueueUrls).toEqual(urls);
    const none = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'no-such-prefix' }));
    expect(none.QueueUrls ?? []).toEqual([]);

    const resolved = await sqs.send(new GetQueueUrlCommand({ QueueName: `${prefix}-b` }));
    expect(resolved.QueueUrl).toBe(urls[1]);
  });

  it('throws QueueDoesNotExist for a missing or deleted queue', async () => {
    const missing = await errorOf(sqs.send(new GetQueueUrlCommand({ QueueName: 'never-created' })));
    expect(missing.name).toBe('QueueDoesNotExist');
    expect(missing.Code).toBe('AWS.SimpleQueueService.NonExistentQueue');

    const { url } = await createQueue('deleted');
    await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
    const gone = await errorOf(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x' })));
    expect(gone.name).toBe('QueueDoesNotExist');
  });

  it('sends, receives and deletes a message with attributes the SDK digests check', async () => {
    const { url } = await createQueue('roundtrip');
    const sent = await sqs.send(
      new SendMessageCommand({
        QueueUrl: url,
        MessageBody: 'héllo ✓',
        MessageAttributes: {
          RiderID: { DataType: 'String', StringValue: '1' },
          id: { DataType: 'Number', StringValue: '7110437108' },
        },
      }),
    );
    // the digest real SQS reported for these attributes
    expect(sent.MD5OfMessageAttributes).toBe('ab4045fac17001608f5b6e227ef83df9');

    const before = Date.now();
    const { Messages } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
    );
    expect(Messages).toHaveLength(1);
    const [message] = Messages ?? [];
    expect(message?.MessageId).toBe(sent.MessageId);
    expect(message?.Body).toBe('héllo ✓');
    expect(message?.MD5OfMessageAttributes).toBe('ab4045fac17001608f5b6e227ef83df9');
    expect(message?.MessageAttributes?.id).toEqual({ DataType: 'Number', StringValue: '7110437108' });
    expect(message?.Attributes?.ApproximateReceiveCount).toBe('1');
    expect(Number(message?.Attributes?.SentTimestamp)).toBeLessThanOrEqual(before);
    expect(Number(message?.Attributes?.ApproximateFirstReceiveTimestamp)).toBeGreaterThanOrEqual(before);

    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: message?.ReceiptHandle }));
    const attributes = await attributesOf(url);
    expect(attributes.ApproximateNumberOfMessages).toBe('0');
    expect(attributes.ApproximateNumberOfMessagesNotVisible).toBe('0');
  });

  it('returns only the requested message attributes, binary ones as bytes', async () => {
    const { url } = await createQueue('attributes');
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: url,
        MessageBody: 'b',
        MessageAttributes: {
          'trace.id': { DataType: 'String', StringValue: 't-1' },
          blob: { DataType: 'Binary', BinaryValue: Uint8Array.from([0, 1, 254, 255]) },
        },
      }),
    );
    const { Messages } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MessageAttributeNames: ['blob'], VisibilityTimeout: 0 }),
    );
    expect(Object.keys(Messages?.[0]?.MessageAttributes ?? {})).toEqual(['blob']);
    expect([...(Messages?.[0]?.MessageAttributes?.blob?.BinaryValue ?? [])]).toEqual([0, 1, 254, 255]);

    const prefixed = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MessageAttributeNames: ['trace.*'] }),
    );
    expect(Object.keys(prefixed.Messages?.[0]?.MessageAttributes ?? {})).toEqual(['trace.id']);
  });

  it('refuses an unknown or superseded receipt handle with ReceiptHandleIsInvalid', async () => {
    const { url } = await createQueue('handles');
    const unknown = await errorOf(
      sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: 'nope' })),
    );
    expect(unknown.name).toBe('ReceiptHandleIsInvalid');

    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'm' }));
    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 0 }));
    const second = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    const stale = await errorOf(
      sqs.send(
        new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: first.Messages?.[0]?.ReceiptHandle }),
      ),
    );
    expect(stale.name).toBe('ReceiptHandleIsInvalid');
    await sqs.send(
      new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: second.Messages?.[0]?.ReceiptHandle }),
    );
    const deletedTwice = await errorOf(
      sqs.send(
        new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: second.Messages?.[0]?.ReceiptHandle }),
      ),
    );
    expect(deletedTwice.name).toBe('ReceiptHandleIsInvalid');
  });

  it('wakes a long poll as soon as a message is sent', async () => {
    const { url } = await createQueue('longpoll');
    const started = Date.now();
    const polling = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 10 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'wake up' }));

    const { Messages } = await polling;
    expect(Messages?.[0]?.Body).toBe('wake up');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('leaves messages alone for a long poll whose client has gone', async () => {
    const { url } = await createQueue('abandoned');
    const aborter = new AbortController();
    const abandoned = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 10 }), {
      abortSignal: aborter.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    aborter.abort();
    await expect(abandoned).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 100));

    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'for the next poll' }));
    const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    expect(Messages?.[0]?.Body).toBe('for the next poll');
  });

  it('returns an empty answer when a long poll times out', async () => {
    const { url } = await createQueue('timeout');
    const started = Date.now();
    const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 1 }));
    expect(result.Messages ?? []).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('redelivers a message when its visibility timeout lapses', async () => {
    const { url } = await createQueue('visibility');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'again' }));
    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 1 }));
    expect(first.Messages).toHaveLength(1);

    const hidden = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    expect(hidden.Messages ?? []).toEqual([]);
    expect((await attributesOf(url)).ApproximateNumberOfMessagesNotVisible).toBe('1');

    // the long poll picks the message up when it becomes visible again, not at the end of the wait
    const started = Date.now();
    const second = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        WaitTimeSeconds: 5,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
    );
    expect(second.Messages?.[0]?.MessageId).toBe(first.Messages?.[0]?.MessageId);
    expect(second.Messages?.[0]?.Attributes).toEqual({ ApproximateReceiveCount: '2' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('does not count ChangeMessageVisibility as a receive', async () => {
    const dlq = await createQueue('cmv-dlq');
    const dlqArn = (await attributesOf(dlq.url)).QueueArn;
    const { url } = await createQueue('cmv', {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }),
    });
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'extended' }));

    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    const handle = first.Messages?.[0]?.ReceiptHandle;
    await sqs.send(
      new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: handle, VisibilityTimeout: 60 }),
    );
    await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: url,
        Entries: [{ Id: 'e1', ReceiptHandle: handle, VisibilityTimeout: 30 }],
      }),
    );
    await sqs.send(
      new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: handle, VisibilityTimeout: 0 }),
    );

    const second = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }),
    );
    expect(second.Messages?.[0]?.Body).toBe('extended');
    expect(second.Messages?.[0]?.Attributes?.ApproximateReceiveCount).toBe('2');
    expect((await attributesOf(dlq.url)).ApproximateNumberOfMessages).toBe('0');
  });

  it('refuses to change the visibility of a message that is not in flight', async () => {
    const { url } = await createQueue('notinflight');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'm' }));
    const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 0 }));
    const err = await errorOf(
      sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: url,
          ReceiptHandle: Messages?.[0]?.ReceiptHandle,
          VisibilityTimeout: 30,
        }),
      ),
    );
    expect(err.name).toBe('MessageNotInflight');
  });

  it('moves a message to the dead-letter queue once it has been received maxReceiveCount times', async () => {
    const dlq = await createQueue('dlq');
    const dlqArn = (await attributesOf(dlq.url)).QueueArn;
    expect(dlqArn).toBe(`arn:aws:sqs:us-east-1:000000000000:${dlq.name}`);
    const { url } = await createQueue('redrive', {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 3 }),
    });
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'poison' }));

    for (let receive = 1; receive <= 3; receive++) {
      const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 0 }));
      expect(Messages?.[0]?.MessageId).toBe(sent.MessageId);
    }
    const fourth = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    expect(fourth.Messages ?? []).toEqual([]);
    expect((await attributesOf(url)).ApproximateNumberOfMessages).toBe('0');

    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq.url }));
    expect(dead.Messages?.[0]?.MessageId).toBe(sent.MessageId);
    expect(dead.Messages?.[0]?.Body).toBe('poison');
  });

  it('refuses a redrive policy whose dead-letter queue does not exist', async () => {
    const err = await errorOf(
      createQueue('baddlq', {
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: 'arn:aws:sqs:us-east-1:000000000000:missing',
          maxReceiveCount: 3,
        }),
      }),
    );
    expect(err.name).toBe('InvalidAttributeValue');
  });

  it('holds delayed messages back and counts them as delayed', async () => {
    const { url } = await createQueue('delay');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'later', DelaySeconds: 1 }));
    const attributes = await attributesOf(url);
    expect(attributes.ApproximateNumberOfMessagesDelayed).toBe('1');
    expect(attributes.ApproximateNumberOfMessages).toBe('0');
    expect((await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }))).Messages ?? []).toEqual([]);

    const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 3 }));
    expect(Messages?.[0]?.Body).toBe('later');
  });

  it('receives up to MaxNumberOfMessages in send order and rejects values outside 1-10', async () => {
    const { url } = await createQueue('many');
    const sent = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: Array.from({ length: 10 }, (_, i) => ({ Id: `m${i}`, MessageBody: `body ${i}` })),
      }),
    );
    expect(sent.Successful).toHaveLength(10);
    expect(sent.Failed ?? []).toEqual([]);

    const page = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 4 }));
    expect(page.Messages?.map((m) => m.Body)).toEqual(['body 0', 'body 1', 'body 2', 'body 3']);
    const tooMany = await errorOf(
      sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 11 })),
    );
    expect(tooMany.name).toBe('InvalidParameterValue');
  });

  it('deletes in batches, reporting a bad handle as a failed entry', async () => {
    const { url } = await createQueue('batchdelete');
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: [
          { Id: 'a', MessageBody: 'a' },
          { Id: 'b', MessageBody: 'b' },
        ],
      }),
    );
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }),
    );
    const result = await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: url,
        Entries: [
          ...Messages.map((m, i) => ({ Id: `ok${i}`, ReceiptHandle: m.ReceiptHandle })),
          { Id: 'bad', ReceiptHandle: 'garbage' },
        ],
      }),
    );
    expect(result.Successful?.map((s) => s.Id)).toEqual(['ok0', 'ok1']);
    expect(result.Failed).toEqual([
      expect.objectContaining({ Id: 'bad', Code: 'ReceiptHandleIsInvalid', SenderFault: true }),
    ]);
    expect((await attributesOf(url)).ApproximateNumberOfMessagesNotVisible).toBe('0');

    const duplicate = await errorOf(
      sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: [
            { Id: 'x', MessageBody: '1' },
            { Id: 'x', MessageBody: '2' },
          ],
        }),
      ),
    );
    expect(duplicate.name).toBe('BatchEntryIdsNotDistinct');
  });

  it('purges every message', async () => {
    const { url } = await createQueue('purge');
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: '1' }));
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: '2', DelaySeconds: 60 }));
    await sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
    const attributes = await attributesOf(url);
    expect([attributes.ApproximateNumberOfMessages, attributes.ApproximateNumberOfMessagesDelayed]).toEqual([
      '0',
      '0',
    ]);
  });

  it('reads and changes queue attributes', async () => {
    const dlq = await createQueue('attrs-dlq');
    const dlqArn = (await attributesOf(dlq.url)).QueueArn as string;
    const { url, name } = await createQueue('attrs', {
      VisibilityTimeout: '60',
      MessageRetentionPeriod: '1209600',
    });

    const created = await attributesOf(url);
    expect(created).toMatchObject({
      QueueArn: `arn:aws:sqs:us-east-1:000000000000:${name}`,
      VisibilityTimeout: '60',
      MessageRetentionPeriod: '1209600',
      DelaySeconds: '0',
      ReceiveMessageWaitTimeSeconds: '0',
    });
    expect(created.RedrivePolicy).toBeUndefined();
    expect(Math.abs(Number(created.CreatedTimestamp) - Date.now() / 1000)).toBeLessThan(5);

    await sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: url,
        Attributes: {
          ReceiveMessageWaitTimeSeconds: '20',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: '5' }),
        },
      }),
    );
    const named = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ['RedrivePolicy', 'ReceiveMessageWaitTimeSeconds'],
      }),
    );
    expect(named.Attributes).toEqual({
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }),
      ReceiveMessageWaitTimeSeconds: '20',
    });

    const bad = await errorOf(
      sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { VisibilityTimeout: '-1' } })),
    );
    expect(bad.name).toBe('InvalidAttributeValue');
  });

  it('drops messages older than the retention period', async () => {
    const { url } = await createQueue('retention', { MessageRetentionPeriod: '60' });
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'old' }));
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);

    expect((await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }))).Messages ?? []).toEqual([]);
    expect((await attributesOf(url)).ApproximateNumberOfMessages).toBe('0');
  });
});

describe('SQS emulator lifecycle', () => {
  it('ends a pending long poll with an empty answer when it closes', async () => {
    const emulator = await startSqsEmulator({ port: 0 });
    const sqs = clientFor(emulator);
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'closing' }));
    const started = Date.now();
    const polling = sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 20 }));
    await new Promise((resolve) => setTimeout(resolve, 100));

    await emulator.close();
    const result = await polling;
    sqs.destroy();
    expect(result.Messages ?? []).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('keeps queues and messages across a restart, making in-flight messages visible again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sqs-emulator-'));
    const persistPath = join(dir, 'state', 'sqs.json');
    try {
      const first = await startSqsEmulator({ port: 0, persistPath });
      const before = clientFor(first);
      const dlq = await before.send(new CreateQueueCommand({ QueueName: 'persisted-dlq' }));
      const { QueueUrl } = await before.send(
        new CreateQueueCommand({
          QueueName: 'persisted',
          Attributes: {
            RedrivePolicy: JSON.stringify({
              deadLetterTargetArn: 'arn:aws:sqs:us-east-1:000000000000:persisted-dlq',
              maxReceiveCount: 2,
            }),
          },
        }),
      );
      await before.send(new SendMessageCommand({ QueueUrl, MessageBody: 'in flight' }));
      await before.send(new SendMessageCommand({ QueueUrl, MessageBody: 'waiting' }));
      await before.send(new ReceiveMessageCommand({ QueueUrl, VisibilityTimeout: 300 }));
      before.destroy();
      await first.close();

      const second = await startSqsEmulator({ port: 0, persistPath });
      const after = clientFor(second);
      try {
        const url = (await after.send(new GetQueueUrlCommand({ QueueName: 'persisted' }))).QueueUrl as string;
        expect(url).toBe(`${second.url}/000000000000/persisted`);
        const { Messages = [] } = await after.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: 10,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          }),
        );
        expect(Messages.map((m) => [m.Body, m.Attributes?.ApproximateReceiveCount])).toEqual([
          ['in flight', '2'],
          ['waiting', '1'],
        ]);
        const policy = await after.send(
          new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['RedrivePolicy'] }),
        );
        expect(policy.Attributes?.RedrivePolicy).toContain('persisted-dlq');
        expect(dlq.QueueUrl).toBe(`${first.url}/000000000000/persisted-dlq`);
      } finally {
        after.destroy();
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SQS emulator (query protocol, as older AWS CLIs speak it)', () => {
  let emulator: SqsEmulator;
  let queueUrl: string;

  const query = async (params: Record<string, string>, path = '/') => {
    const response = await fetch(`${emulator.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
      body: new URLSearchParams({ Version: '2012-11-05', ...params }),
    });
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      xml: await response.text(),
    };
  };
  const tag = (xml: string, name: string) =>
    [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, 'g'))].map((m) => m[1]);

  beforeAll(async () => {
    emulator = await startSqsEmulator({ port: 0 });
    const created = await query({
      Action: 'CreateQueue',
      QueueName: 'cli-queue',
      'Attribute.1.Name': 'VisibilityTimeout',
      'Attribute.1.Value': '40',
    });
    queueUrl = tag(created.xml, 'QueueUrl')[0] as string;
  });

  afterAll(async () => {
    await emulator.close();
  });

  it('lists queues and resolves a queue URL', async () => {
    const listed = await query({ Action: 'ListQueues' });
    expect(listed.status).toBe(200);
    expect(listed.type).toBe('text/xml');
    expect(listed.xml).toContain(
      '<ListQueuesResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><ListQueuesResult>',
    );
    expect(tag(listed.xml, 'QueueUrl')).toEqual([`${emulator.url}/000000000000/cli-queue`]);

    const resolved = await query({ Action: 'GetQueueUrl', QueueName: 'cli-queue' });
    expect(tag(resolved.xml, 'QueueUrl')).toEqual([queueUrl]);
  });

  it('answers a missing queue with the legacy error code in an XML error', async () => {
    const missing = await query({ Action: 'GetQueueUrl', QueueName: 'nope' });
    expect(missing.status).toBe(400);
    expect(tag(missing.xml, 'Code')).toEqual(['AWS.SimpleQueueService.NonExistentQueue']);
    expect(tag(missing.xml, 'Type')).toEqual(['Sender']);
  });

  it('sends, reads attributes, receives, deletes and purges', async () => {
    const sent = await query({
      Action: 'SendMessage',
      QueueUrl: queueUrl,
      MessageBody: 'a <tagged> & "quoted" body',
      'MessageAttribute.1.Name': 'kind',
      'MessageAttribute.1.Value.DataType': 'String',
      'MessageAttribute.1.Value.StringValue': 'demo',
    });
    expect(sent.status).toBe(200);
    expect(tag(sent.xml, 'MD5OfMessageBody')).toHaveLength(1);
    expect(tag(sent.xml, 'MD5OfMessageAttributes')).toHaveLength(1);

    const attributes = await query({
      Action: 'GetQueueAttributes',
      QueueUrl: queueUrl,
      'AttributeName.1': 'All',
    });
    expect(attributes.xml).toContain(
      '<Attribute><Name>ApproximateNumberOfMessages</Name><Value>1</Value></Attribute>',
    );
    expect(attributes.xml).toContain(
      '<Attribute><Name>VisibilityTimeout</Name><Value>40</Value></Attribute>',
    );

    // posted to the queue's own URL, without a QueueUrl parameter
    const received = await query(
      {
        Action: 'ReceiveMessage',
        'AttributeName.1': 'ApproximateReceiveCount',
        'MessageAttributeName.1': 'All',
      },
      '/000000000000/cli-queue',
    );
    expect(tag(received.xml, 'Body')).toEqual(['a &lt;tagged&gt; &amp; &quot;quoted&quot; body']);
    expect(received.xml).toContain(
      '<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>',
    );
    expect(received.xml).toContain(
      '<MessageAttribute><Name>kind</Name><Value><DataType>String</DataType><StringValue>demo</StringValue></Value></MessageAttribute>',
    );
    const [handle] = tag(received.xml, 'ReceiptHandle');

    const deleted = await query({
      Action: 'DeleteMessage',
      QueueUrl: queueUrl,
      ReceiptHandle: handle as string,
    });
    expect(deleted.status).toBe(200);
    expect(deleted.xml).toContain('<DeleteMessageResponse');
    const again = await query({
      Action: 'DeleteMessage',
      QueueUrl: queueUrl,
      ReceiptHandle: handle as string,
    });
    expect(tag(again.xml, 'Code')).toEqual(['ReceiptHandleIsInvalid']);

    await query({ Action: 'SendMessage', QueueUrl: queueUrl, MessageBody: 'to purge' });
    expect((await query({ Action: 'PurgeQueue', QueueUrl: queueUrl })).status).toBe(200);
    const empty = await query({ Action: 'ReceiveMessage', QueueUrl: queueUrl });
    expect(empty.xml).toContain('<ReceiveMessageResult></ReceiveMessageResult>');
  });

  it('rejects an action it does not speak', async () => {
    const unknown = await query({ Action: 'TagQueue', QueueUrl: queueUrl });
    expect(unknown.status).toBe(400);
    expect(tag(unknown.xml, 'Code')).toEqual(['InvalidAction']);
  });
});
