import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  DeleteLogGroupCommand,
  DeleteSubscriptionFilterCommand,
  DescribeLogGroupsCommand,
  DescribeLogStreamsCommand,
  DescribeSubscriptionFiltersCommand,
  FilterLogEventsCommand,
  GetLogEventsCommand,
  type GetLogEventsCommandInput,
  type OutputLogEvent,
  PutLogEventsCommand,
  PutRetentionPolicyCommand,
  PutSubscriptionFilterCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LogsEmulator, startLogsEmulator } from '../../infra/local/emulators/logs.js';

const clientFor = (emulator: LogsEmulator) =>
  new CloudWatchLogsClient({
    endpoint: emulator.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });

const errorOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
};

const messages = (events: OutputLogEvent[] | undefined) => (events ?? []).map((e) => e.message ?? '');

let unique = 0;
const groupName = (label: string) => `/test/${label}-${Date.now().toString(36)}-${++unique}`;

describe('CloudWatch Logs emulator (real SDK client)', () => {
  let emulator: LogsEmulator;
  let logs: CloudWatchLogsClient;

  beforeAll(async () => {
    emulator = await startLogsEmulator({ port: 0 });
    logs = clientFor(emulator);
  });

  afterAll(async () => {
    logs.destroy();
    await emulator.close();
  });

  const createStream = async (label: string, streams: string[] = ['main']) => {
    const logGroupName = groupName(label);
    await logs.send(new CreateLogGroupCommand({ logGroupName }));
    for (const logStreamName of streams) {
      await logs.send(new CreateLogStreamCommand({ logGroupName, logStreamName }));
    }
    return logGroupName;
  };

  /** `count` events one millisecond apart, ending a minute ago, messages `line 0`... */
  const putLines = async (logGroupName: string, logStreamName: string, count: number, from = 0) => {
    const base = Date.now() - 60_000 - count;
    return logs.send(
      new PutLogEventsCommand({
        logGroupName,
        logStreamName,
        logEvents: Array.from({ length: count }, (_, i) => ({
          timestamp: base + i,
          message: `line ${from + i}`,
        })),
      }),
    );
  };

  it('creates groups and streams once, refusing duplicates with ResourceAlreadyExistsException', async () => {
    const logGroupName = await createStream('create', ['a']);
    const group = await errorOf(logs.send(new CreateLogGroupCommand({ logGroupName })));
    expect(group.name).toBe('ResourceAlreadyExistsException');
    const stream = await errorOf(logs.send(new CreateLogStreamCommand({ logGroupName, logStreamName: 'a' })));
    expect(stream.name).toBe('ResourceAlreadyExistsException');
  });

  it('describes groups by prefix with their retention, and deletes them', async () => {
    const prefix = groupName('describe');
    for (const suffix of ['b', 'a'])
      await logs.send(new CreateLogGroupCommand({ logGroupName: `${prefix}/${suffix}` }));
    await logs.send(new PutRetentionPolicyCommand({ logGroupName: `${prefix}/a`, retentionInDays: 14 }));

    const { logGroups } = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: prefix }));
    expect(logGroups?.map((g) => [g.logGroupName, g.retentionInDays])).toEqual([
      [`${prefix}/a`, 14],
      [`${prefix}/b`, undefined],
    ]);
    expect(logGroups?.[0]?.arn).toBe(`arn:aws:logs:us-east-1:000000000000:log-group:${prefix}/a:*`);

    const badRetention = await errorOf(
      logs.send(new PutRetentionPolicyCommand({ logGroupName: `${prefix}/a`, retentionInDays: 2 })),
    );
    expect(badRetention.name).toBe('InvalidParameterException');

    await logs.send(new DeleteLogGroupCommand({ logGroupName: `${prefix}/b` }));
    const after = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: prefix }));
    expect(after.logGroups?.map((g) => g.logGroupName)).toEqual([`${prefix}/a`]);
    const again = await errorOf(logs.send(new DeleteLogGroupCommand({ logGroupName: `${prefix}/b` })));
    expect(again.name).toBe('ResourceNotFoundException');
  });

  it('throws ResourceNotFoundException for a missing group or stream', async () => {
    const logGroupName = await createStream('missing');
    const noGroup = await errorOf(
      logs.send(
        new PutLogEventsCommand({
          logGroupName: '/no/such/group',
          logStreamName: 'main',
          logEvents: [{ timestamp: Date.now(), message: 'x' }],
        }),
      ),
    );
    expect(noGroup.name).toBe('ResourceNotFoundException');
    const noStream = await errorOf(
      logs.send(
        new PutLogEventsCommand({
          logGroupName,
          logStreamName: 'nope',
          logEvents: [{ timestamp: Date.now(), message: 'x' }],
        }),
      ),
    );
    expect(noStream.name).toBe('ResourceNotFoundException');
    const getMissing = await errorOf(
      logs.send(new GetLogEventsCommand({ logGroupName, logStreamName: 'nope' })),
    );
    expect(getMissing.name).toBe('ResourceNotFoundException');
    const streamsOfMissing = await errorOf(
      logs.send(new DescribeLogStreamsCommand({ logGroupName: '/no/such/group' })),
    );
    expect(streamsOfMissing.name).toBe('ResourceNotFoundException');
  });

  it('stores events in arrival order and returns them with their ingestion time', async () => {
    const logGroupName = await createStream('put');
    const now = Date.now();
    const first = await logs.send(
      new PutLogEventsCommand({
        logGroupName,
        logStreamName: 'main',
        logEvents: [
          { timestamp: now - 10, message: 'first' },
          { timestamp: now - 5, message: 'second' },
        ],
      }),
    );
    expect(first.nextSequenceToken).toEqual(expect.any(String));
    // a later batch with an earlier timestamp still comes after it
    const second = await logs.send(
      new PutLogEventsCommand({
        logGroupName,
        logStreamName: 'main',
        logEvents: [{ timestamp: now - 20, message: 'third' }],
      }),
    );
    expect(second.nextSequenceToken).not.toBe(first.nextSequenceToken);

    const { events } = await logs.send(
      new GetLogEventsCommand({
        logGroupIdentifier: `arn:aws:logs:us-east-1:000000000000:log-group:${logGroupName}`,
        logStreamName: 'main',
        startFromHead: true,
      }),
    );
    expect(messages(events)).toEqual(['first', 'second', 'third']);
    expect(events?.[0]?.timestamp).toBe(now - 10);
    expect(events?.[0]?.ingestionTime).toBeGreaterThanOrEqual(now);
  });

  it('pages 5,000 events backward from the newest, each exactly once, ending on the token it was given', async () => {
    const logGroupName = await createStream('backward');
    await putLines(logGroupName, 'main', 5000);
    const request: GetLogEventsCommandInput = { logGroupName, logStreamName: 'main', limit: 100 };

    const seen: string[] = [];
    let page = await logs.send(new GetLogEventsCommand(request));
    let pages = 0;
    while ((page.events ?? []).length > 0) {
      pages++;
      const batch = messages(page.events);
      expect(batch).toHaveLength(100);
      // each page is in order, and older than everything seen so far
      seen.unshift(...batch);
      const token = page.nextBackwardToken;
      page = await logs.send(new GetLogEventsCommand({ ...request, nextToken: token }));
      if ((page.events ?? []).length === 0) expect(page.nextBackwardToken).toBe(token);
    }
    expect(pages).toBe(50);
    expect(seen).toEqual(Array.from({ length: 5000 }, (_, i) => `line ${i}`));
  });

  it('pages forward from the head to the end, then picks up events written later', async () => {
    const logGroupName = await createStream('forward');
    await putLines(logGroupName, 'main', 250);
    const request: GetLogEventsCommandInput = {
      logGroupName,
      logStreamName: 'main',
      startFromHead: true,
      limit: 100,
    };

    const sizes: number[] = [];
    const seen: string[] = [];
    let page = await logs.send(new GetLogEventsCommand(request));
    let token: string | undefined;
    while ((page.events ?? []).length > 0) {
      sizes.push(page.events?.length ?? 0);
      seen.push(...messages(page.events));
      token = page.nextForwardToken;
      page = await logs.send(new GetLogEventsCommand({ ...request, nextToken: token }));
    }
    expect(sizes).toEqual([100, 100, 50]);
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => `line ${i}`));
    expect(page.nextForwardToken).toBe(token);

    await putLines(logGroupName, 'main', 3, 250);
    const tail = await logs.send(new GetLogEventsCommand({ ...request, nextToken: token }));
    expect(messages(tail.events)).toEqual(['line 250', 'line 251', 'line 252']);
  });

  it('returns the newest events by default, or the oldest from the head, up to the limit', async () => {
    const logGroupName = await createStream('limits');
    await putLines(logGroupName, 'main', 30);
    const newest = await logs.send(
      new GetLogEventsCommand({ logGroupName, logStreamName: 'main', limit: 3 }),
    );
    expect(messages(newest.events)).toEqual(['line 27', 'line 28', 'line 29']);
    const oldest = await logs.send(
      new GetLogEventsCommand({ logGroupName, logStreamName: 'main', limit: 3, startFromHead: true }),
    );
    expect(messages(oldest.events)).toEqual(['line 0', 'line 1', 'line 2']);
    const all = await logs.send(new GetLogEventsCommand({ logGroupName, logStreamName: 'main' }));
    expect(all.events).toHaveLength(30);
    const tooMany = await errorOf(
      logs.send(new GetLogEventsCommand({ logGroupName, logStreamName: 'main', limit: 10_001 })),
    );
    expect(tooMany.name).toBe('InvalidParameterException');
  });

  it('limits GetLogEvents to a time window, end exclusive', async () => {
    const logGroupName = await createStream('window');
    const base = Date.now() - 10_000;
    await logs.send(
      new PutLogEventsCommand({
        logGroupName,
        logStreamName: 'main',
        logEvents: [0, 1, 2, 3].map((i) => ({ timestamp: base + i * 1000, message: `at ${i}` })),
      }),
    );
    const { events } = await logs.send(
      new GetLogEventsCommand({
        logGroupName,
        logStreamName: 'main',
        startTime: base + 1000,
        endTime: base + 3000,
        startFromHead: true,
      }),
    );
    expect(messages(events)).toEqual(['at 1', 'at 2']);
  });

  it('describes streams by prefix, by last event time, and in pages', async () => {
    const logGroupName = await createStream('streams', ['pod/c', 'pod/a', 'pod/b', 'other']);
    await putLines(logGroupName, 'pod/c', 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await putLines(logGroupName, 'pod/a', 2);

    const byPrefix = await logs.send(
      new DescribeLogStreamsCommand({ logGroupName, logStreamNamePrefix: 'pod/' }),
    );
    expect(byPrefix.logStreams?.map((s) => s.logStreamName)).toEqual(['pod/a', 'pod/b', 'pod/c']);
    const written = byPrefix.logStreams?.[0];
    expect(written?.firstEventTimestamp).toBeLessThan(written?.lastEventTimestamp as number);
    expect(written?.lastIngestionTime).toBeGreaterThan(Date.now() - 5000);
    expect(byPrefix.logStreams?.[1]?.lastEventTimestamp).toBeUndefined();

    const recent = await logs.send(
      new DescribeLogStreamsCommand({ logGroupName, orderBy: 'LastEventTime', descending: true, limit: 2 }),
    );
    expect(recent.logStreams?.map((s) => s.logStreamName)).toEqual(['pod/a', 'pod/c']);
    const rest = await logs.send(
      new DescribeLogStreamsCommand({
        logGroupName,
        orderBy: 'LastEventTime',
        descending: true,
        limit: 2,
        nextToken: recent.nextToken,
      }),
    );
    expect(rest.logStreams?.map((s) => s.logStreamName)).toEqual(['pod/b', 'other']);
    expect(rest.nextToken).toBeUndefined();

    const conflicting = await errorOf(
      logs.send(
        new DescribeLogStreamsCommand({
          logGroupName,
          orderBy: 'LastEventTime',
          logStreamNamePrefix: 'pod/',
        }),
      ),
    );
    expect(conflicting.name).toBe('InvalidParameterException');
  });

  it('filters events across streams by term, phrase, stream and time, interleaved by timestamp', async () => {
    const logGroupName = await createStream('filter', ['pod/1', 'pod/2', 'other']);
    const base = Date.now() - 10_000;
    const put = (logStreamName: string, lines: [number, string][]) =>
      logs.send(
        new PutLogEventsCommand({
          logGroupName,
          logStreamName,
          logEvents: lines.map(([offset, message]) => ({ timestamp: base + offset, message })),
        }),
      );
    await put('pod/1', [
      [0, 'INFO starting'],
      [20, 'ERROR disk full'],
      [40, 'INFO done'],
    ]);
    await put('pod/2', [
      [10, 'ERROR network down'],
      [30, 'WARN retrying soon'],
    ]);
    await put('other', [[15, 'ERROR elsewhere']]);

    const errors = await logs.send(
      new FilterLogEventsCommand({ logGroupName, logStreamNamePrefix: 'pod/', filterPattern: 'ERROR' }),
    );
    expect(errors.events?.map((e) => [e.logStreamName, e.message])).toEqual([
      ['pod/2', 'ERROR network down'],
      ['pod/1', 'ERROR disk full'],
    ]);
    expect(errors.events?.[0]?.eventId).toEqual(expect.any(String));

    const phrase = await logs.send(
      new FilterLogEventsCommand({ logGroupName, filterPattern: '"retrying soon"' }),
    );
    expect(messages(phrase.events)).toEqual(['WARN retrying soon']);
    const either = await logs.send(
      new FilterLogEventsCommand({ logGroupName, filterPattern: '?disk ?network' }),
    );
    expect(messages(either.events)).toEqual(['ERROR network down', 'ERROR disk full']);
    const excluding = await logs.send(
      new FilterLogEventsCommand({ logGroupName, filterPattern: 'ERROR -disk' }),
    );
    expect(messages(excluding.events)).toEqual(['ERROR network down', 'ERROR elsewhere']);
    const regex = await logs.send(
      new FilterLogEventsCommand({ logGroupName, filterPattern: '%^INFO (starting|done)$%' }),
    );
    expect(messages(regex.events)).toEqual(['INFO starting', 'INFO done']);
    const caseSensitive = await logs.send(
      new FilterLogEventsCommand({ logGroupName, filterPattern: 'error' }),
    );
    expect(caseSensitive.events).toEqual([]);

    const named = await logs.send(
      new FilterLogEventsCommand({
        logGroupName,
        logStreamNames: ['other', 'pod/2'],
        startTime: base + 12,
        endTime: base + 30,
      }),
    );
    expect(messages(named.events)).toEqual(['ERROR elsewhere', 'WARN retrying soon']);

    const missingStream = await errorOf(
      logs.send(new FilterLogEventsCommand({ logGroupName, logStreamNames: ['nope'] })),
    );
    expect(missingStream.name).toBe('ResourceNotFoundException');
  });

  it('pages FilterLogEvents with nextToken', async () => {
    const logGroupName = await createStream('filterpages');
    await putLines(logGroupName, 'main', 25);
    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await logs.send(
        new FilterLogEventsCommand({
          logGroupName,
          filterPattern: 'line',
          limit: 10,
          nextToken,
          interleaved: true,
        }),
      );
      seen.push(...messages(page.events));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `line ${i}`));
  });

  it('rejects events too old or too far ahead, keeping the rest', async () => {
    const logGroupName = await createStream('rejects');
    const now = Date.now();
    const put = (logEvents: { timestamp: number; message: string }[]) =>
      logs.send(new PutLogEventsCommand({ logGroupName, logStreamName: 'main', logEvents }));

    const old = await put([
      { timestamp: now - 14 * 86_400_000 - 7_200_000, message: 'ancient' },
      { timestamp: now - 14 * 86_400_000 - 60_000, message: 'old' },
      { timestamp: now - 14 * 86_400_000 + 60_000, message: 'just in time' },
    ]);
    expect(old.rejectedLogEventsInfo).toEqual({ tooOldLogEventEndIndex: 2 });
    const ahead = await put([
      { timestamp: now, message: 'current' },
      { timestamp: now + 3 * 3_600_000, message: 'future' },
    ]);
    expect(ahead.rejectedLogEventsInfo).toEqual({ tooNewLogEventStartIndex: 1 });

    const { events } = await logs.send(new GetLogEventsCommand({ logGroupName, logStreamName: 'main' }));
    expect(messages(events)).toEqual(['just in time', 'current']);
    const span = await errorOf(
      put([
        { timestamp: now - 25 * 3_600_000, message: 'a' },
        { timestamp: now, message: 'b' },
      ]),
    );
    expect(span.name).toBe('InvalidParameterException');
  });
});

describe('CloudWatch Logs emulator subscription filters', () => {
  const FUNCTION_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:follower';
  interface Delivery {
    messageType: string;
    logGroup: string;
    logStream: string;
    subscriptionFilters: string[];
    logEvents: { id: string; timestamp: number; message: string }[];
  }
  const decode = (event: { awslogs: { data: string } }) =>
    JSON.parse(gunzipSync(Buffer.from(event.awslogs.data, 'base64')).toString()) as Delivery;

  it('delivers the matching events of each PutLogEvents to the destination, as CloudWatch Logs does', async () => {
    const deliveries: Delivery[] = [];
    const emulator = await startLogsEmulator({
      port: 0,
      deliver: async (arn, event) => {
        expect(arn).toBe(FUNCTION_ARN);
        deliveries.push(decode(event));
      },
    });
    const logs = clientFor(emulator);
    const logGroupName = groupName('subscribed');
    await logs.send(new CreateLogGroupCommand({ logGroupName }));
    await logs.send(new CreateLogStreamCommand({ logGroupName, logStreamName: 's1' }));
    await logs.send(
      new PutSubscriptionFilterCommand({
        logGroupName,
        filterName: 'errors',
        filterPattern: 'ERROR',
        destinationArn: FUNCTION_ARN,
      }),
    );
    const now = Date.now();
    const put = (texts: string[]) =>
      logs.send(
        new PutLogEventsCommand({
          logGroupName,
          logStreamName: 's1',
          logEvents: texts.map((message, i) => ({ timestamp: now + i, message })),
        }),
      );
    await put(['ERROR one', 'fine', 'ERROR two']);
    await put(['fine again']);
    await put(['ERROR three']);
    await expect.poll(() => deliveries.length).toBe(2);
    expect(deliveries.map((d) => d.logEvents.map((e) => e.message))).toEqual([
      ['ERROR one', 'ERROR two'],
      ['ERROR three'],
    ]);
    expect(deliveries[0]).toMatchObject({
      messageType: 'DATA_MESSAGE',
      logGroup: logGroupName,
      logStream: 's1',
      subscriptionFilters: ['errors'],
    });
    const ids = deliveries.flatMap((d) => d.logEvents.map((e) => e.id));
    expect(ids.every((id) => /^\d{56}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(3);

    const described = await logs.send(new DescribeSubscriptionFiltersCommand({ logGroupName }));
    expect(described.subscriptionFilters).toEqual([
      expect.objectContaining({ filterName: 'errors', filterPattern: 'ERROR', destinationArn: FUNCTION_ARN }),
    ]);
    await logs.send(new DeleteSubscriptionFilterCommand({ logGroupName, filterName: 'errors' }));
    await put(['ERROR after']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(deliveries).toHaveLength(2);
    expect(
      (await errorOf(logs.send(new DeleteSubscriptionFilterCommand({ logGroupName, filterName: 'errors' }))))
        .name,
    ).toBe('ResourceNotFoundException');
    await emulator.close();
  });

  it('delivers again after a failed delivery', async () => {
    let calls = 0;
    const delivered: Delivery[] = [];
    const emulator = await startLogsEmulator({
      port: 0,
      deliver: async (_arn, event) => {
        if (++calls === 1) throw new Error('function failed');
        delivered.push(decode(event));
      },
    });
    const logs = clientFor(emulator);
    const logGroupName = groupName('retried');
    await logs.send(new CreateLogGroupCommand({ logGroupName }));
    await logs.send(new CreateLogStreamCommand({ logGroupName, logStreamName: 's1' }));
    await logs.send(
      new PutSubscriptionFilterCommand({
        logGroupName,
        filterName: 'all',
        filterPattern: '',
        destinationArn: FUNCTION_ARN,
      }),
    );
    await logs.send(
      new PutLogEventsCommand({
        logGroupName,
        logStreamName: 's1',
        logEvents: [{ timestamp: Date.now(), message: 'x' }],
      }),
    );
    await expect.poll(() => delivered.length, { timeout: 5000 }).toBe(1);
    expect(calls).toBe(2);
    await emulator.close();
  });

  it('refuses a destination it cannot deliver to, and a third filter on a group', async () => {
    const emulator = await startLogsEmulator({ port: 0, deliver: async () => {} });
    const logs = clientFor(emulator);
    const logGroupName = groupName('limits');
    await logs.send(new CreateLogGroupCommand({ logGroupName }));
    const filter = (filterName: string, destinationArn = FUNCTION_ARN) =>
      logs.send(
        new PutSubscriptionFilterCommand({ logGroupName, filterName, filterPattern: '', destinationArn }),
      );
    expect((await errorOf(filter('f0', 'arn:aws:sns:us-east-1:000000000000:topic'))).name).toBe(
      'InvalidParameterException',
    );
    await filter('f1');
    await filter('f2');
    await filter('f2');
    expect((await errorOf(filter('f3'))).name).toBe('LimitExceededException');
    await emulator.close();
  });
});

describe('CloudWatch Logs emulator persistence', () => {
  it('keeps groups, streams, events and their tokens across a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'logs-emulator-'));
    const persistPath = join(dir, 'logs.json');
    try {
      const first = await startLogsEmulator({ port: 0, persistPath });
      const before = clientFor(first);
      await before.send(new CreateLogGroupCommand({ logGroupName: '/pods' }));
      await before.send(new PutRetentionPolicyCommand({ logGroupName: '/pods', retentionInDays: 7 }));
      await before.send(new CreateLogStreamCommand({ logGroupName: '/pods', logStreamName: 'run-1' }));
      await before.send(
        new PutLogEventsCommand({
          logGroupName: '/pods',
          logStreamName: 'run-1',
          logEvents: [
            { timestamp: Date.now(), message: 'one' },
            { timestamp: Date.now(), message: 'two' },
          ],
        }),
      );
      const head = await before.send(
        new GetLogEventsCommand({
          logGroupName: '/pods',
          logStreamName: 'run-1',
          startFromHead: true,
          limit: 1,
        }),
      );
      before.destroy();
      await first.close();

      const second = await startLogsEmulator({ port: 0, persistPath });
      const after = clientFor(second);
      try {
        const groups = await after.send(new DescribeLogGroupsCommand({}));
        expect(groups.logGroups?.map((g) => [g.logGroupName, g.retentionInDays])).toEqual([['/pods', 7]]);
        const rest = await after.send(
          new GetLogEventsCommand({
            logGroupName: '/pods',
            logStreamName: 'run-1',
            nextToken: head.nextForwardToken,
          }),
        );
        expect(messages(rest.events)).toEqual(['two']);
        await after.send(
          new PutLogEventsCommand({
            logGroupName: '/pods',
            logStreamName: 'run-1',
            logEvents: [{ timestamp: Date.now(), message: 'three' }],
          }),
        );
        const filtered = await after.send(new FilterLogEventsCommand({ logGroupName: '/pods' }));
        const ids = filtered.events?.map((e) => e.eventId);
        expect(new Set(ids).size).toBe(3);
      } finally {
        after.destroy();
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
