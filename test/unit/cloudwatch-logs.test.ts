import {
  CloudWatchLogsClient,
  CreateLogStreamCommand,
  GetLogEventsCommand,
  InvalidParameterException,
  PutLogEventsCommand,
  ResourceAlreadyExistsException,
  ResourceNotFoundException,
  ThrottlingException,
} from '@aws-sdk/client-cloudwatch-logs';
import { mockClient } from 'aws-sdk-client-mock';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  CloudWatchLogReader,
  CloudWatchStepContentStore,
  splitForLogEvents,
} from '../../shared/adapters/cloudwatch-logs.js';
import { ServiceUnavailableError, ValidationError } from '../../shared/domain/errors.js';

const meta = { $metadata: {} };
const GROUP = '/execution-runs/pods';
const STEPS = '/execution-runs/steps';

describe('CloudWatchLogReader', () => {
  const logs = mockClient(CloudWatchLogsClient);
  beforeEach(() => logs.reset());
  const reader = () => new CloudWatchLogReader(new CloudWatchLogsClient({}), GROUP);

  it('asks for a backward page with startFromHead false and the token, and maps the events', async () => {
    logs.on(GetLogEventsCommand).resolves({
      events: [{ timestamp: 5, message: 'a', ingestionTime: 6 }, { timestamp: 7 }],
      nextForwardToken: 'f/2',
      nextBackwardToken: 'b/0',
    });
    const page = await reader().getEvents({
      logStream: 'pod/pod/1',
      limit: 50,
      forward: false,
      token: 'b/2',
    });
    expect(logs).toHaveReceivedCommandWith(GetLogEventsCommand, {
      logGroupName: GROUP,
      logStreamName: 'pod/pod/1',
      limit: 50,
      startFromHead: false,
      nextToken: 'b/2',
    });
    expect(page).toEqual({
      events: [
        { timestamp: 5, message: 'a' },
        { timestamp: 7, message: '' },
      ],
      nextForwardToken: 'f/2',
      nextBackwardToken: 'b/0',
    });
  });

  it('sends a forward token with startFromHead true, as CloudWatch requires, and no token when there is none', async () => {
    logs.on(GetLogEventsCommand).resolves({ events: [] });
    await reader().getEvents({ logStream: 's', limit: 10, forward: true, token: 'f/9' });
    await reader().getEvents({ logStream: 's', limit: 10, forward: true });
    const inputs = logs.commandCalls(GetLogEventsCommand).map((call) => call.args[0].input);
    expect(inputs[0]).toMatchObject({ startFromHead: true, nextToken: 'f/9' });
    expect(inputs[1]).toMatchObject({ startFromHead: true });
    expect(inputs[1]).not.toHaveProperty('nextToken');
  });

  it('answers undefined for a stream that does not exist', async () => {
    logs.on(GetLogEventsCommand).rejects(new ResourceNotFoundException({ message: 'no stream', ...meta }));
    expect(await reader().getEvents({ logStream: 's', limit: 10, forward: false })).toBeUndefined();
  });

  it('turns throttling that outlasted the retries into a 503 the caller can retry', async () => {
    logs.on(GetLogEventsCommand).rejects(new ThrottlingException({ message: 'Rate exceeded', ...meta }));
    await expect(reader().getEvents({ logStream: 's', limit: 10, forward: false })).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    );
  });

  it('turns a position CloudWatch refuses (an expired or made-up token) into a 400', async () => {
    logs
      .on(GetLogEventsCommand)
      .rejects(new InvalidParameterException({ message: 'The specified nextToken is invalid.', ...meta }));
    await expect(
      reader().getEvents({ logStream: 's', limit: 10, forward: false, token: 'b/old' }),
    ).rejects.toBeInstanceOf(ValidationError);
    // without a token the request is the backend's own: a refusal is a fault, not the caller's
    await expect(reader().getEvents({ logStream: 's', limit: 10, forward: false })).rejects.toBeInstanceOf(
      InvalidParameterException,
    );
  });

  it('lets other errors through', async () => {
    logs.on(GetLogEventsCommand).rejects(new Error('AccessDenied'));
    await expect(reader().getEvents({ logStream: 's', limit: 10, forward: false })).rejects.toThrow(
      'AccessDenied',
    );
  });
});

describe('splitForLogEvents', () => {
  it('cuts text into parts that join back to it, each within the size as JSON', () => {
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.oneof(
            fc.constantFrom('"', '\\', '\u0001', '😀', 'é'),
            fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
          ),
          maxLength: 400,
        }),
        fc.integer({ min: 16, max: 64 }),
        (text, maxBytes) => {
          const parts = splitForLogEvents(text, maxBytes);
          expect(parts.join('')).toBe(text);
          for (const part of parts) {
            expect(part.length).toBeGreaterThan(0);
            expect(Buffer.byteLength(JSON.stringify(part))).toBeLessThanOrEqual(maxBytes);
          }
        },
      ),
    );
  });

  it('never splits a surrogate pair', () => {
    const parts = splitForLogEvents('😀'.repeat(50), 20);
    for (const part of parts) expect(part).toMatch(/^(?:😀)+$/u);
  });
});

describe('CloudWatchStepContentStore', () => {
  const logs = mockClient(CloudWatchLogsClient);
  beforeEach(() => logs.reset());
  const store = () => new CloudWatchStepContentStore(new CloudWatchLogsClient({}), STEPS);

  it('writes the content to a stream of its own, in parts of under 256 KB, at most 1 MB a call', async () => {
    logs.on(CreateLogStreamCommand).resolves({});
    logs.on(PutLogEventsCommand).resolves({});
    const content = 'x'.repeat(1_500_000);
    const ref = await store().put('run_1', 42, content);
    expect(ref).toEqual({
      logGroup: STEPS,
      logStream: 'steps/run_1/0000000042',
      parts: Math.ceil(1_500_000 / (200 * 1024 - 2)),
      bytes: 1_500_000,
    });
    expect(logs).toHaveReceivedCommandWith(CreateLogStreamCommand, {
      logGroupName: STEPS,
      logStreamName: 'steps/run_1/0000000042',
    });
    const puts = logs.commandCalls(PutLogEventsCommand).map((call) => call.args[0].input);
    const events = puts.flatMap((input) => input.logEvents ?? []);
    expect(events).toHaveLength(ref.parts);
    for (const input of puts) {
      const bytes = (input.logEvents ?? []).reduce(
        (sum, e) => sum + Buffer.byteLength(e.message ?? '') + 26,
        0,
      );
      expect(bytes).toBeLessThanOrEqual(1_048_576);
    }
    for (const event of events) expect(Buffer.byteLength(event.message ?? '')).toBeLessThan(256 * 1024 - 26);
    const parts = events.map(
      (e) => JSON.parse(e.message ?? '') as { part: number; parts: number; text: string },
    );
    expect(parts.map((p) => p.part)).toEqual([...Array(ref.parts).keys()]);
    expect(parts.map((p) => p.text).join('')).toBe(content);
  });

  it('writes a repeated step again into its existing stream', async () => {
    logs
      .on(CreateLogStreamCommand)
      .rejects(new ResourceAlreadyExistsException({ message: 'exists', ...meta }));
    logs.on(PutLogEventsCommand).resolves({});
    await store().put('run_1', 7, 'y'.repeat(40_000));
    expect(logs).toHaveReceivedCommandTimes(PutLogEventsCommand, 1);
  });

  it('reads the parts back in order across pages, keeping the first copy of each, until the token repeats', async () => {
    const part = (n: number, text: string) => ({
      timestamp: 1,
      message: JSON.stringify({ part: n, parts: 3, text }),
    });
    logs
      .on(GetLogEventsCommand, { startFromHead: true, nextToken: undefined })
      .resolves({ events: [part(1, 'B'), { timestamp: 1, message: 'not json' }], nextForwardToken: 'f/2' })
      .on(GetLogEventsCommand, { nextToken: 'f/2' })
      .resolves({ events: [], nextForwardToken: 'f/2b' })
      .on(GetLogEventsCommand, { nextToken: 'f/2b' })
      .resolves({ events: [part(1, 'stale'), part(2, 'C'), part(0, 'A')], nextForwardToken: 'f/5' });
    const ref = { logGroup: STEPS, logStream: 'steps/run_1/0000000001', parts: 3, bytes: 3 };
    expect(await store().get(ref)).toBe('ABC');
    expect(logs).toHaveReceivedCommandTimes(GetLogEventsCommand, 3);
  });

  it('answers undefined when a part is missing at the end of the stream, or the stream is gone', async () => {
    const ref = { logGroup: STEPS, logStream: 'steps/run_1/0000000001', parts: 2, bytes: 2 };
    logs
      .on(GetLogEventsCommand, { nextToken: undefined })
      .resolves({
        events: [{ message: JSON.stringify({ part: 0, parts: 2, text: 'A' }) }],
        nextForwardToken: 'f/1',
      })
      .on(GetLogEventsCommand, { nextToken: 'f/1' })
      .resolves({ events: [], nextForwardToken: 'f/1' });
    expect(await store().get(ref)).toBeUndefined();
    logs.reset();
    logs.on(GetLogEventsCommand).rejects(new ResourceNotFoundException({ message: 'gone', ...meta }));
    expect(await store().get(ref)).toBeUndefined();
  });
});
