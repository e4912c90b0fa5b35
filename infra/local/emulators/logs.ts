import { gzipSync } from 'node:zlib';
import { AwsError, type OperationHandler, startJsonProtocolServer } from './json-protocol.js';
import { loadState, saveState } from './persistence.js';

/**
 * The local cloud's CloudWatch Logs: groups, streams, PutLogEvents, GetLogEvents with AWS's forward and
 * backward tokens, FilterLogEvents with term patterns, and subscription filters that deliver the
 * matching events of each PutLogEvents to a destination, as CloudWatch Logs delivers to a Lambda
 * function (gzipped JSON, base64, under `awslogs.data`), over the JSON protocol.
 */

export interface LogsEmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** a JSON file: state is loaded from it on start and saved to it on close */
  persistPath?: string;
  /**
   * Invokes a subscription's destination (a Lambda function's ARN) with a delivery; without it, no
   * subscription filter can be put. A rejected delivery is tried again, as CloudWatch Logs does.
   */
  deliver?: (destinationArn: string, event: { awslogs: { data: string } }) => Promise<unknown>;
}

export interface LogsEmulator {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface StoredEvent {
  timestamp: number;
  message: string;
  ingestionTime: number;
  /** emulator-wide arrival order: the tie-break and page key of FilterLogEvents */
  seq: number;
}

interface LogStream {
  name: string;
  creationTime: number;
  /** in arrival order; GetLogEvents tokens are positions in this list */
  events: StoredEvent[];
  firstEventTimestamp?: number;
  lastEventTimestamp?: number;
  lastIngestionTime?: number;
  uploadSequence: number;
}

interface SubscriptionFilter {
  filterName: string;
  filterPattern: string;
  destinationArn: string;
  creationTime: number;
}

interface LogGroup {
  name: string;
  creationTime: number;
  retentionInDays?: number;
  storedBytes: number;
  streams: Map<string, LogStream>;
  subscriptions?: SubscriptionFilter[];
}

interface PersistedState {
  nextSeq: number;
  groups: (Omit<LogGroup, 'streams'> & { streams: LogStream[] })[];
}

const DAY_MS = 86_400_000;
/** PutLogEvents accepts events at most this old, and at most two hours ahead */
const MAX_EVENT_AGE_MS = 14 * DAY_MS;
const MAX_EVENT_LEAD_MS = 2 * 3_600_000;
const MAX_BATCH_SPAN_MS = DAY_MS;
const EVENT_OVERHEAD_BYTES = 26;
const MAX_BATCH_BYTES = 1_048_576;
const MAX_BATCH_EVENTS = 10_000;
/** GetLogEvents and FilterLogEvents answer with at most this many events, and at most 1 MB of them */
const MAX_EVENTS_PER_PAGE = 10_000;
const MAX_PAGE_BYTES = 1_048_576;
const MAX_DESCRIBE_LIMIT = 50;
const RETENTION_DAYS = new Set([
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
]);
const LOG_GROUP_NAME = /^[.\-_/#A-Za-z0-9]{1,512}$/;
const LOG_STREAM_NAME = /^[^:*]{1,512}$/;
const POSITION_TOKEN = /^([fb])\/(\d{1,15})$/;
/** CloudWatch Logs allows two subscription filters per log group. */
const MAX_SUBSCRIPTIONS = 2;
/** A failed delivery is tried again after each of these waits, then dropped. */
const DELIVERY_RETRY_MS = [500, 2000, 5000];

const invalidParameter = (message: string) => new AwsError('InvalidParameterException', message);
const groupNotFound = () =>
  new AwsError('ResourceNotFoundException', 'The specified log group does not exist.');
const streamNotFound = () =>
  new AwsError('ResourceNotFoundException', 'The specified log stream does not exist.');
const alreadyExists = (what: string) =>
  new AwsError('ResourceAlreadyExistsException', `The specified ${what} already exists`);

const optionalString = (input: Record<string, unknown>, name: string): string | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidParameter(`${name} must be a string.`);
  return value;
};

const requiredString = (input: Record<string, unknown>, name: string): string => {
  const value = optionalString(input, name);
  if (value === undefined || value === '') throw invalidParameter(`Missing required parameter ${name}.`);
  return value;
};

const optionalInt = (
  input: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidParameter(`${name} must be an integer from ${min} to ${max}.`);
  }
  return value;
};

const eventSize = (event: { message: string }) => Buffer.byteLength(event.message) + EVENT_OVERHEAD_BYTES;

/** Opaque page tokens for the Describe* calls: an offset into the sorted list. */
const offsetToken = (offset: number) => Buffer.from(`o:${offset}`).toString('base64url');
const offsetFrom = (token: unknown): number => {
  if (token === undefined || token === null) return 0;
  const match =
    typeof token === 'string' ? /^o:(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8')) : null;
  if (!match) throw invalidParameter('The specified nextToken is invalid.');
  return Number(match[1]);
};

/**
 * Term filter patterns: every plain term must occur, at least one `?term` if any are given, no `-term`;
 * `"quoted phrases"` are single terms and `%regex%` matches a regular expression. Matching is case
 * sensitive, as in CloudWatch Logs.
 */
const compileFilterPattern = (pattern: string | undefined): ((message: string) => boolean) => {
  const text = (pattern ?? '').trim();
  if (text === '') return () => true;
  const regex = /^%(.+)%$/.exec(text);
  if (regex) {
    let expression: RegExp;
    try {
      expression = new RegExp(regex[1] as string);
    } catch {
      throw invalidParameter(`Invalid regular expression in filter pattern: ${text}`);
    }
    return (message) => expression.test(message);
  }
  if (text.startsWith('{') || text.startsWith('[')) {
    throw invalidParameter('This emulator matches term, phrase and %regex% filter patterns only.');
  }
  const required: string[] = [];
  const anyOf: string[] = [];
  const excluded: string[] = [];
  for (const match of text.matchAll(/([?-]?)("(?:[^"\\]|\\.)*"|\S+)/g)) {
    const [, prefix, raw = ''] = match;
    const term = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    (prefix === '?' ? anyOf : prefix === '-' ? excluded : required).push(term);
  }
  return (message) =>
    required.every((t) => message.includes(t)) &&
    (anyOf.length === 0 || anyOf.some((t) => message.includes(t))) &&
    !excluded.some((t) => message.includes(t));
};

class LogsService {
  readonly groups = new Map<string, LogGroup>();
  nextSeq = 1;

  constructor(
    private readonly region: string,
    private readonly accountId: string,
    private readonly deliver?: LogsEmulatorOptions['deliver'],
  ) {}

  private groupArn(name: string) {
    return `arn:aws:logs:${this.region}:${this.accountId}:log-group:${name}`;
  }

  /** `logGroupName`, or `logGroupIdentifier` (a name or an ARN), as the newer calls accept */
  private group(input: Record<string, unknown>): LogGroup {
    const name = optionalString(input, 'logGroupName');
    const identifier = optionalString(input, 'logGroupIdentifier');
    if (name !== undefined && identifier !== undefined) {
      throw invalidParameter('LogGroup name and LogGroup ARN are mutually exclusive parameters.');
    }
    const resolved =
      name ?? identifier?.replace(/^arn:[^:]+:logs:[^:]*:[^:]*:log-group:/, '').replace(/:\*$/, '');
    if (resolved === undefined || resolved === '') {
      throw invalidParameter('Either logGroupName or logGroupIdentifier must be specified.');
    }
    const group = this.groups.get(resolved);
    if (!group) throw groupNotFound();
    return group;
  }

  private stream(group: LogGroup, input: Record<string, unknown>): LogStream {
    const stream = group.streams.get(requiredString(input, 'logStreamName'));
    if (!stream) throw streamNotFound();
    return stream;
  }

  /** events the retention policy has not yet removed */
  private retained(group: LogGroup, now: number): (event: StoredEvent) => boolean {
    if (group.retentionInDays === undefined) return () => true;
    const cutoff = now - group.retentionInDays * DAY_MS;
    return (event) => event.timestamp >= cutoff;
  }

  private describeGroup(group: LogGroup) {
    return {
      logGroupName: group.name,
      creationTime: group.creationTime,
      ...(group.retentionInDays !== undefined && { retentionInDays: group.retentionInDays }),
      metricFilterCount: 0,
      arn: `${this.groupArn(group.name)}:*`,
      logGroupArn: this.groupArn(group.name),
      storedBytes: group.storedBytes,
      logGroupClass: 'STANDARD',
    };
  }

  private describeStream(group: LogGroup, stream: LogStream) {
    return {
      logStreamName: stream.name,
      creationTime: stream.creationTime,
      ...(stream.firstEventTimestamp !== undefined && { firstEventTimestamp: stream.firstEventTimestamp }),
      ...(stream.lastEventTimestamp !== undefined && { lastEventTimestamp: stream.lastEventTimestamp }),
      ...(stream.lastIngestionTime !== undefined && { lastIngestionTime: stream.lastIngestionTime }),
      uploadSequenceToken: String(stream.uploadSequence),
      arn: `${this.groupArn(group.name)}:log-stream:${stream.name}`,
      storedBytes: 0,
    };
  }

  private putLogEvents(input: Record<string, unknown>) {
    const group = this.group(input);
    const stream = this.stream(group, input);
    const given = Array.isArray(input.logEvents) ? (input.logEvents as Record<string, unknown>[]) : [];
    if (given.length === 0 || given.length > MAX_BATCH_EVENTS) {
      throw invalidParameter(`logEvents must hold from 1 to ${MAX_BATCH_EVENTS} events.`);
    }
    const events = given.map((e, index) => {
      if (typeof e.timestamp !== 'number' || !Number.isInteger(e.timestamp)) {
        throw invalidParameter(`logEvents.${index + 1}.timestamp must be an integer.`);
      }
      if (typeof e.message !== 'string' || e.message === '') {
        throw invalidParameter(`logEvents.${index + 1}.message must be a non-empty string.`);
      }
      return { timestamp: e.timestamp, message: e.message };
    });
    const bytes = events.reduce((sum, e) => sum + eventSize(e), 0);
    if (bytes > MAX_BATCH_BYTES) {
      throw invalidParameter(`Upload too large: ${bytes} bytes exceeds limit of ${MAX_BATCH_BYTES}`);
    }
    const timestamps = events.map((e) => e.timestamp);
    if (Math.max(...timestamps) - Math.min(...timestamps) > MAX_BATCH_SPAN_MS) {
      throw invalidParameter(
        'The batch of log events in a single PutLogEvents request cannot span more than 24 hours.',
      );
    }

    const now = Date.now();
    const retentionCutoff =
      group.retentionInDays === undefined ? undefined : now - group.retentionInDays * DAY_MS;
    const rejected: {
      tooOldLogEventEndIndex?: number;
      tooNewLogEventStartIndex?: number;
      expiredLogEventEndIndex?: number;
    } = {};
    const stored: StoredEvent[] = [];
    events.forEach((event, index) => {
      if (event.timestamp > now + MAX_EVENT_LEAD_MS) {
        rejected.tooNewLogEventStartIndex ??= index;
      } else if (event.timestamp < now - MAX_EVENT_AGE_MS) {
        rejected.tooOldLogEventEndIndex = index + 1;
      } else if (retentionCutoff !== undefined && event.timestamp < retentionCutoff) {
        rejected.expiredLogEventEndIndex = index + 1;
      } else {
        const storedEvent = { ...event, ingestionTime: now, seq: this.nextSeq++ };
        stream.events.push(storedEvent);
        stored.push(storedEvent);
        stream.firstEventTimestamp = Math.min(stream.firstEventTimestamp ?? event.timestamp, event.timestamp);
        stream.lastEventTimestamp = Math.max(stream.lastEventTimestamp ?? event.timestamp, event.timestamp);
        stream.lastIngestionTime = now;
        group.storedBytes += Buffer.byteLength(event.message);
      }
    });
    stream.uploadSequence += 1;
    this.deliverToSubscriptions(group, stream, stored);
    return {
      nextSequenceToken: String(stream.uploadSequence),
      ...(Object.keys(rejected).length > 0 && { rejectedLogEventsInfo: rejected }),
    };
  }

  /**
   * AWS's paging: `f/<n>` and `b/<n>` are positions between events. A forward page starts at its
   * position, a backward page ends at it; without a token the page is the newest events (or the
   * oldest with startFromHead). At either end the answer is empty and repeats the token it was given.
   */
  private getLogEvents(input: Record<string, unknown>) {
    const group = this.group(input);
    const stream = this.stream(group, input);
    const limit = optionalInt(input, 'limit', 1, MAX_EVENTS_PER_PAGE) ?? MAX_EVENTS_PER_PAGE;
    const startTime = optionalInt(input, 'startTime', 0, Number.MAX_SAFE_INTEGER);
    const endTime = optionalInt(input, 'endTime', 0, Number.MAX_SAFE_INTEGER);
    const token = optionalString(input, 'nextToken');
    const events = stream.events;

    let direction: 'f' | 'b';
    let position: number;
    if (token !== undefined) {
      const match = POSITION_TOKEN.exec(token);
      if (!match) throw invalidParameter('The specified nextToken is invalid.');
      direction = match[1] as 'f' | 'b';
      position = Math.min(Number(match[2]), events.length);
    } else if (input.startFromHead === true) {
      direction = 'f';
      position = 0;
    } else {
      direction = 'b';
      position = events.length;
    }

    const retained = this.retained(group, Date.now());
    const wanted = (e: StoredEvent) =>
      retained(e) &&
      (startTime === undefined || e.timestamp >= startTime) &&
      (endTime === undefined || e.timestamp < endTime);
    const page: StoredEvent[] = [];
    let bytes = 0;
    const take = (event: StoredEvent) => {
      if (!wanted(event)) return true;
      if (page.length === limit || bytes + eventSize(event) > MAX_PAGE_BYTES) return false;
      page.push(event);
      bytes += eventSize(event);
      return true;
    };

    let start = position;
    let end = position;
    if (direction === 'f') {
      while (end < events.length && take(events[end] as StoredEvent)) end++;
    } else {
      while (start > 0 && take(events[start - 1] as StoredEvent)) start--;
      page.reverse();
    }

    const atEnd = start === end && token !== undefined;
    return {
      events: page.map((e) => ({
        timestamp: e.timestamp,
        message: e.message,
        ingestionTime: e.ingestionTime,
      })),
      nextForwardToken: atEnd && direction === 'f' ? token : `f/${end}`,
      nextBackwardToken: atEnd && direction === 'b' ? token : `b/${start}`,
    };
  }

  /** Each subscription's matching events of one PutLogEvents, delivered as one message, not awaited. */
  private deliverToSubscriptions(group: LogGroup, stream: LogStream, events: StoredEvent[]) {
    for (const subscription of group.subscriptions ?? []) {
      const matches = compileFilterPattern(subscription.filterPattern);
      const matching = events.filter((event) => matches(event.message));
      if (matching.length === 0 || !this.deliver) continue;
      const data = gzipSync(
        JSON.stringify({
          messageType: 'DATA_MESSAGE',
          owner: this.accountId,
          logGroup: group.name,
          logStream: stream.name,
          subscriptionFilters: [subscription.filterName],
          logEvents: matching.map((event) => ({
            id: String(event.seq).padStart(56, '0'),
            timestamp: event.timestamp,
            message: event.message,
          })),
        }),
      ).toString('base64');
      void this.deliverWithRetries(subscription.destinationArn, { awslogs: { data } });
    }
  }

  private async deliverWithRetries(destinationArn: string, event: { awslogs: { data: string } }) {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.deliver?.(destinationArn, event);
        return;
      } catch (err) {
        const wait = DELIVERY_RETRY_MS[attempt];
        if (wait === undefined) {
          console.warn(
            `logs: a subscription delivery to ${destinationArn} failed and was dropped: ${String(err)}`,
          );
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  private putSubscriptionFilter(input: Record<string, unknown>) {
    const group = this.group(input);
    const filterName = requiredString(input, 'filterName');
    const destinationArn = requiredString(input, 'destinationArn');
    const filterPattern = optionalString(input, 'filterPattern');
    if (filterPattern === undefined) throw invalidParameter('Missing required parameter filterPattern.');
    compileFilterPattern(filterPattern);
    if (!this.deliver || !/^arn:aws:lambda:/.test(destinationArn)) {
      throw invalidParameter('Could not deliver test message to specified destination.');
    }
    const others = (group.subscriptions ?? []).filter((f) => f.filterName !== filterName);
    if (others.length >= MAX_SUBSCRIPTIONS) {
      throw new AwsError('LimitExceededException', 'Resource limit exceeded.');
    }
    group.subscriptions = [
      ...others,
      { filterName, filterPattern, destinationArn, creationTime: Date.now() },
    ];
    return {};
  }

  private filterLogEvents(input: Record<string, unknown>) {
    const group = this.group(input);
    const names = Array.isArray(input.logStreamNames) ? (input.logStreamNames as unknown[]) : undefined;
    const prefix = optionalString(input, 'logStreamNamePrefix');
    if (names && prefix !== undefined) {
      throw invalidParameter('logStreamNames and logStreamNamePrefix are mutually exclusive parameters.');
    }
    const streams = names
      ? names.map((name) => {
          const stream = typeof name === 'string' ? group.streams.get(name) : undefined;
          if (!stream) throw streamNotFound();
          return stream;
        })
      : [...group.streams.values()].filter((s) => prefix === undefined || s.name.startsWith(prefix));
    const startTime = optionalInt(input, 'startTime', 0, Number.MAX_SAFE_INTEGER);
    const endTime = optionalInt(input, 'endTime', 0, Number.MAX_SAFE_INTEGER);
    const limit = optionalInt(input, 'limit', 1, MAX_EVENTS_PER_PAGE) ?? MAX_EVENTS_PER_PAGE;
    const matches = compileFilterPattern(optionalString(input, 'filterPattern'));
    const token = optionalString(input, 'nextToken');
    let after: [number, number] = [Number.NEGATIVE_INFINITY, 0];
    if (token !== undefined) {
      const match = /^(-?\d+):(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
      if (!match) throw invalidParameter('The specified nextToken is invalid.');
      after = [Number(match[1]), Number(match[2])];
    }

    const retained = this.retained(group, Date.now());
    const found = streams
      .flatMap((stream) =>
        stream.events
          .filter(
            (e) =>
              retained(e) &&
              (startTime === undefined || e.timestamp >= startTime) &&
              (endTime === undefined || e.timestamp <= endTime) &&
              (e.timestamp > after[0] || (e.timestamp === after[0] && e.seq > after[1])) &&
              matches(e.message),
          )
          .map((event) => ({ stream: stream.name, event })),
      )
      // interleaved across streams by time, as CloudWatch Logs answers
      .sort((a, b) => a.event.timestamp - b.event.timestamp || a.event.seq - b.event.seq);

    const page: typeof found = [];
    let bytes = 0;
    for (const item of found) {
      if (page.length === limit || bytes + eventSize(item.event) > MAX_PAGE_BYTES) break;
      page.push(item);
      bytes += eventSize(item.event);
    }
    const last = page.at(-1);
    return {
      events: page.map(({ stream, event }) => ({
        logStreamName: stream,
        timestamp: event.timestamp,
        message: event.message,
        ingestionTime: event.ingestionTime,
        eventId: String(event.seq).padStart(20, '0'),
      })),
      ...(last &&
        page.length < found.length && {
          nextToken: Buffer.from(`${last.event.timestamp}:${last.event.seq}`).toString('base64url'),
        }),
    };
  }

  readonly operations: Record<string, OperationHandler> = {
    CreateLogGroup: (input) => {
      const name = requiredString(input, 'logGroupName');
      if (!LOG_GROUP_NAME.test(name)) throw invalidParameter(`Invalid log group name: ${name}`);
      if (this.groups.has(name)) throw alreadyExists('log group');
      this.groups.set(name, { name, creationTime: Date.now(), storedBytes: 0, streams: new Map() });
      return {};
    },

    DeleteLogGroup: (input) => {
      this.groups.delete(this.group(input).name);
      return {};
    },

    DescribeLogGroups: (input) => {
      const prefix = optionalString(input, 'logGroupNamePrefix');
      const pattern = optionalString(input, 'logGroupNamePattern');
      if (prefix !== undefined && pattern !== undefined) {
        throw invalidParameter(
          'logGroupNamePrefix and logGroupNamePattern are mutually exclusive parameters.',
        );
      }
      const limit = optionalInt(input, 'limit', 1, MAX_DESCRIBE_LIMIT) ?? MAX_DESCRIBE_LIMIT;
      const offset = offsetFrom(input.nextToken);
      const groups = [...this.groups.values()]
        .filter(
          (g) =>
            (prefix === undefined || g.name.startsWith(prefix)) &&
            (pattern === undefined || g.name.toLowerCase().includes(pattern.toLowerCase())),
        )
        .sort((a, b) => (a.name < b.name ? -1 : 1));
      return {
        logGroups: groups.slice(offset, offset + limit).map((g) => this.describeGroup(g)),
        ...(offset + limit < groups.length && { nextToken: offsetToken(offset + limit) }),
      };
    },

    PutRetentionPolicy: (input) => {
      const group = this.group(input);
      const days = input.retentionInDays;
      if (typeof days !== 'number' || !RETENTION_DAYS.has(days)) {
        throw invalidParameter(`Invalid retentionInDays: ${String(days)}`);
      }
      group.retentionInDays = days;
      return {};
    },

    DeleteRetentionPolicy: (input) => {
      delete this.group(input).retentionInDays;
      return {};
    },

    CreateLogStream: (input) => {
      const group = this.group(input);
      const name = requiredString(input, 'logStreamName');
      if (!LOG_STREAM_NAME.test(name)) throw invalidParameter(`Invalid log stream name: ${name}`);
      if (group.streams.has(name)) throw alreadyExists('log stream');
      group.streams.set(name, { name, creationTime: Date.now(), events: [], uploadSequence: 1 });
      return {};
    },

    DeleteLogStream: (input) => {
      const group = this.group(input);
      group.streams.delete(this.stream(group, input).name);
      return {};
    },

    DescribeLogStreams: (input) => {
      const group = this.group(input);
      const prefix = optionalString(input, 'logStreamNamePrefix');
      const orderBy = optionalString(input, 'orderBy') ?? 'LogStreamName';
      if (orderBy !== 'LogStreamName' && orderBy !== 'LastEventTime') {
        throw invalidParameter('orderBy must be LogStreamName or LastEventTime.');
      }
      if (orderBy === 'LastEventTime' && prefix !== undefined) {
        throw invalidParameter('Cannot order by LastEventTime with a logStreamNamePrefix.');
      }
      const limit = optionalInt(input, 'limit', 1, MAX_DESCRIBE_LIMIT) ?? MAX_DESCRIBE_LIMIT;
      const offset = offsetFrom(input.nextToken);
      const byName = (a: LogStream, b: LogStream) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      const streams = [...group.streams.values()]
        .filter((s) => prefix === undefined || s.name.startsWith(prefix))
        .sort(
          orderBy === 'LastEventTime'
            ? (a, b) => (a.lastEventTimestamp ?? 0) - (b.lastEventTimestamp ?? 0) || byName(a, b)
            : byName,
        );
      if (input.descending === true) streams.reverse();
      return {
        logStreams: streams.slice(offset, offset + limit).map((s) => this.describeStream(group, s)),
        ...(offset + limit < streams.length && { nextToken: offsetToken(offset + limit) }),
      };
    },

    PutSubscriptionFilter: (input) => this.putSubscriptionFilter(input),

    DescribeSubscriptionFilters: (input) => {
      const group = this.group(input);
      const prefix = optionalString(input, 'filterNamePrefix');
      return {
        subscriptionFilters: (group.subscriptions ?? [])
          .filter((f) => prefix === undefined || f.filterName.startsWith(prefix))
          .map((f) => ({ ...f, logGroupName: group.name, distribution: 'ByLogStream' })),
      };
    },

    DeleteSubscriptionFilter: (input) => {
      const group = this.group(input);
      const filterName = requiredString(input, 'filterName');
      if (!(group.subscriptions ?? []).some((f) => f.filterName === filterName)) {
        throw new AwsError('ResourceNotFoundException', 'The specified subscription filter does not exist.');
      }
      group.subscriptions = (group.subscriptions ?? []).filter((f) => f.filterName !== filterName);
      return {};
    },

    PutLogEvents: (input) => this.putLogEvents(input),
    GetLogEvents: (input) => this.getLogEvents(input),
    FilterLogEvents: (input) => this.filterLogEvents(input),
  };

  snapshot(): PersistedState {
    return {
      nextSeq: this.nextSeq,
      groups: [...this.groups.values()].map((g) => ({ ...g, streams: [...g.streams.values()] })),
    };
  }

  restore(state: PersistedState) {
    this.nextSeq = state.nextSeq;
    for (const g of state.groups) {
      this.groups.set(g.name, { ...g, streams: new Map(g.streams.map((s) => [s.name, s])) });
    }
  }
}

export async function startLogsEmulator(opts: LogsEmulatorOptions = {}): Promise<LogsEmulator> {
  const service = new LogsService(opts.region ?? 'us-east-1', opts.accountId ?? '000000000000', opts.deliver);
  const saved = opts.persistPath ? await loadState<PersistedState>(opts.persistPath) : undefined;
  if (saved) service.restore(saved);
  const server = await startJsonProtocolServer(
    {
      targetPrefix: 'Logs_20140328',
      errorNamespace: 'com.amazonaws.cloudwatchlogs',
      operations: service.operations,
    },
    opts.port ?? 0,
    opts.host ?? '127.0.0.1',
  );
  return {
    url: server.url,
    port: server.port,
    close: async () => {
      if (opts.persistPath) await saveState(opts.persistPath, service.snapshot());
      await server.close();
    },
  };
}
