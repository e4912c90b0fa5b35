import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AwsError, clientGone, type OperationHandler, startJsonProtocolServer } from './json-protocol.js';
import { loadState, saveState } from './persistence.js';

/**
 * The local cloud's SQS: standard queues with visibility timeouts, delays, long polling, retention and
 * redrive to a dead-letter queue, over the JSON protocol the current SDKs speak and the query protocol
 * (form posts, XML answers) that older AWS CLIs still use.
 */

export interface SqsEmulatorOptions {
  port?: number;
  host?: string;
  accountId?: string;
  region?: string;
  /** a JSON file: state is loaded from it on start and saved to it on close */
  persistPath?: string;
}

export interface SqsEmulator {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface MessageAttributeValue {
  DataType: string;
  StringValue?: string;
  /** base64, as both protocols carry blobs */
  BinaryValue?: string;
}

type MessageAttributes = Record<string, MessageAttributeValue>;

interface StoredMessage {
  messageId: string;
  body: string;
  attributes?: MessageAttributes;
  sentAt: number;
  /** DelaySeconds: not deliverable before this (epoch ms) */
  delayedUntil: number;
  /** in flight after a receive until this (epoch ms) */
  inFlightUntil: number;
  receiveCount: number;
  firstReceivedAt?: number;
  /** the handle of the latest receive; earlier handles are stale */
  receiptHandle?: string;
}

interface RedrivePolicy {
  deadLetterTargetArn: string;
  maxReceiveCount: number;
}

interface QueueSettings {
  VisibilityTimeout: number;
  MessageRetentionPeriod: number;
  ReceiveMessageWaitTimeSeconds: number;
  DelaySeconds: number;
  MaximumMessageSize: number;
  RedrivePolicy?: RedrivePolicy;
}

interface Queue {
  name: string;
  createdAt: number;
  lastModifiedAt: number;
  settings: QueueSettings;
  /** in send order (Map keeps insertion order) */
  messages: Map<string, StoredMessage>;
  byHandle: Map<string, StoredMessage>;
  /** long polls waiting for this queue to change */
  waiters: Set<() => void>;
}

interface PersistedState {
  queues: {
    name: string;
    createdAt: number;
    lastModifiedAt: number;
    settings: QueueSettings;
    messages: StoredMessage[];
  }[];
}

const DEFAULT_SETTINGS: QueueSettings = {
  VisibilityTimeout: 30,
  MessageRetentionPeriod: 345_600,
  ReceiveMessageWaitTimeSeconds: 0,
  DelaySeconds: 0,
  MaximumMessageSize: 1_048_576,
};

const NUMERIC_SETTINGS: Record<Exclude<keyof QueueSettings, 'RedrivePolicy'>, [min: number, max: number]> = {
  VisibilityTimeout: [0, 43_200],
  MessageRetentionPeriod: [60, 1_209_600],
  ReceiveMessageWaitTimeSeconds: [0, 20],
  DelaySeconds: [0, 900],
  MaximumMessageSize: [1024, 1_048_576],
};

const READ_ONLY_ATTRIBUTES = [
  'ApproximateNumberOfMessages',
  'ApproximateNumberOfMessagesNotVisible',
  'ApproximateNumberOfMessagesDelayed',
  'QueueArn',
  'CreatedTimestamp',
  'LastModifiedTimestamp',
] as const;

const MESSAGE_SYSTEM_ATTRIBUTES = [
  'SenderId',
  'SentTimestamp',
  'ApproximateReceiveCount',
  'ApproximateFirstReceiveTimestamp',
] as const;

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,80}$/;
/** the characters SQS accepts in a message body and string attributes */
const VALID_MESSAGE_TEXT = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const MAX_BATCH_ENTRIES = 10;

/** SQS errors carry a legacy query-protocol code, the same as the error name unless given. */
const sqsError = (code: string, message: string, queryCode = code, statusCode = 400) =>
  new AwsError(code, message, statusCode, queryCode);

const nonExistentQueue = () =>
  sqsError(
    'QueueDoesNotExist',
    'The specified queue does not exist.',
    'AWS.SimpleQueueService.NonExistentQueue',
  );
const invalidParameter = (message: string) => sqsError('InvalidParameterValue', message);
const missingParameter = (name: string) =>
  sqsError('MissingParameter', `The request must contain the parameter ${name}.`);
const invalidAttributeName = (name: string) => sqsError('InvalidAttributeName', `Unknown Attribute ${name}.`);
const receiptHandleIsInvalid = (handle: string) =>
  sqsError(
    'ReceiptHandleIsInvalid',
    `The input receipt handle "${handle}" is not a valid receipt handle.`,
    'ReceiptHandleIsInvalid',
    404,
  );

const md5Hex = (data: string | Buffer) => createHash('md5').update(data).digest('hex');

/** The digest SQS returns as MD5OfMessageAttributes: attributes sorted by name, each length-prefixed. */
const md5OfMessageAttributes = (attributes: MessageAttributes): string | undefined => {
  const names = Object.keys(attributes).sort();
  if (names.length === 0) return undefined;
  const parts: Buffer[] = [];
  const lengthPrefixed = (bytes: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    parts.push(length, bytes);
  };
  for (const name of names) {
    const value = attributes[name] as MessageAttributeValue;
    lengthPrefixed(Buffer.from(name, 'utf8'));
    lengthPrefixed(Buffer.from(value.DataType, 'utf8'));
    if (value.DataType.startsWith('Binary')) {
      parts.push(Buffer.from([2]));
      lengthPrefixed(Buffer.from(value.BinaryValue ?? '', 'base64'));
    } else {
      parts.push(Buffer.from([1]));
      lengthPrefixed(Buffer.from(value.StringValue ?? '', 'utf8'));
    }
  }
  return md5Hex(Buffer.concat(parts));
};

/** Both protocols: JSON carries numbers, the query protocol strings. */
const intParam = (value: unknown, name: string, min: number, max: number, fallback: number): number => {
  if (value === undefined || value === null || value === '') return fallback;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw invalidParameter(
      `Value ${String(value)} for parameter ${name} is invalid. Reason: must be between ${min} and ${max}.`,
    );
  }
  return n;
};

const requiredString = (input: Record<string, unknown>, name: string): string => {
  const value = input[name];
  if (typeof value !== 'string' || value === '') throw missingParameter(name);
  return value;
};

const stringList = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v) => typeof v === 'string') : [];

const validateMessageAttributes = (value: unknown): MessageAttributes | undefined => {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object') throw invalidParameter('MessageAttributes must be a map.');
  const entries = Object.entries(value as Record<string, Partial<MessageAttributeValue>>);
  if (entries.length === 0) return undefined;
  if (entries.length > 10)
    throw invalidParameter(
      `Number of message attributes [${entries.length}] exceeds the allowed maximum [10].`,
    );
  const attributes: MessageAttributes = {};
  for (const [name, attr] of entries) {
    const dataType = attr?.DataType;
    if (typeof dataType !== 'string' || !/^(String|Number|Binary)(\..+)?$/.test(dataType)) {
      throw invalidParameter(`The message attribute '${name}' has an invalid message attribute type.`);
    }
    if (dataType.startsWith('Binary')) {
      if (typeof attr.BinaryValue !== 'string')
        throw invalidParameter(`The message attribute '${name}' must contain a non-empty binary value.`);
      attributes[name] = { DataType: dataType, BinaryValue: attr.BinaryValue };
    } else {
      if (typeof attr.StringValue !== 'string' || attr.StringValue === '') {
        throw invalidParameter(
          `The message attribute '${name}' must contain a non-empty message attribute value.`,
        );
      }
      if (dataType.startsWith('Number') && !Number.isFinite(Number(attr.StringValue))) {
        throw invalidParameter(`Can't cast the value of message attribute '${name}' to a number.`);
      }
      attributes[name] = { DataType: dataType, StringValue: attr.StringValue };
    }
  }
  return attributes;
};

const attributesSize = (attributes: MessageAttributes | undefined) =>
  Object.entries(attributes ?? {}).reduce(
    (size, [name, v]) =>
      size +
      Buffer.byteLength(name) +
      Buffer.byteLength(v.DataType) +
      (v.BinaryValue !== undefined
        ? Buffer.from(v.BinaryValue, 'base64').length
        : Buffer.byteLength(v.StringValue ?? '')),
    0,
  );

/** `All`/`.*` select everything, `prefix.*` a prefix, anything else one name. */
const selectAttributes = (
  attributes: MessageAttributes | undefined,
  requested: string[],
): MessageAttributes | undefined => {
  if (!attributes || requested.length === 0) return undefined;
  const selected: MessageAttributes = {};
  for (const [name, value] of Object.entries(attributes)) {
    const wanted = requested.some(
      (r) => r === 'All' || r === '.*' || r === name || (r.endsWith('.*') && name.startsWith(r.slice(0, -1))),
    );
    if (wanted) selected[name] = value;
  }
  return Object.keys(selected).length > 0 ? selected : undefined;
};

const newReceiptHandle = () => randomBytes(64).toString('base64');

class SqsService {
  readonly queues = new Map<string, Queue>();
  closed = false;
  baseUrl = '';

  constructor(
    private readonly accountId: string,
    private readonly region: string,
  ) {}

  queueUrl(name: string) {
    return `${this.baseUrl}/${this.accountId}/${name}`;
  }

  queueArn(name: string) {
    return `arn:aws:sqs:${this.region}:${this.accountId}:${name}`;
  }

  private queueFromUrl(input: Record<string, unknown>): Queue {
    const url = requiredString(input, 'QueueUrl');
    // Any host is accepted: clients reach the emulator as localhost, 127.0.0.1 or a container name.
    const name = url.split('?')[0]?.replace(/\/+$/, '').split('/').pop() ?? '';
    const queue = this.queues.get(name);
    if (!queue) throw nonExistentQueue();
    this.expire(queue, Date.now());
    return queue;
  }

  private expire(queue: Queue, now: number) {
    const cutoff = now - queue.settings.MessageRetentionPeriod * 1000;
    for (const message of queue.messages.values()) {
      if (message.sentAt <= cutoff) this.remove(queue, message);
    }
  }

  private remove(queue: Queue, message: StoredMessage) {
    queue.messages.delete(message.messageId);
    if (message.receiptHandle) queue.byHandle.delete(message.receiptHandle);
  }

  private wake(queue: Queue) {
    for (const wake of [...queue.waiters]) wake();
  }

  wakeAll() {
    for (const queue of this.queues.values()) this.wake(queue);
  }

  private parseSettings(attributes: Record<string, unknown>, base: QueueSettings): QueueSettings {
    const settings: QueueSettings = { ...base };
    for (const [name, raw] of Object.entries(attributes)) {
      const value = String(raw);
      if (name === 'RedrivePolicy') {
        if (value === '') delete settings.RedrivePolicy;
        else settings.RedrivePolicy = this.parseRedrivePolicy(value);
      } else if (name in NUMERIC_SETTINGS) {
        const key = name as keyof typeof NUMERIC_SETTINGS;
        const [min, max] = NUMERIC_SETTINGS[key];
        const n = Number(value);
        if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
          throw sqsError('InvalidAttributeValue', `Invalid value for the parameter ${name}.`);
        }
        settings[key] = n;
      } else {
        throw invalidAttributeName(name);
      }
    }
    return settings;
  }

  private parseRedrivePolicy(value: string): RedrivePolicy {
    const invalid = (reason: string) =>
      sqsError(
        'InvalidAttributeValue',
        `Value ${value} for parameter RedrivePolicy is invalid. Reason: ${reason}`,
      );
    let parsed: { deadLetterTargetArn?: unknown; maxReceiveCount?: unknown };
    try {
      parsed = JSON.parse(value) as typeof parsed;
    } catch {
      throw invalid('Redrive policy is not a valid JSON map.');
    }
    const maxReceiveCount = Number(parsed.maxReceiveCount);
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > 1000) {
      throw invalid('Invalid value for maxReceiveCount: must be an integer from 1 to 1000.');
    }
    if (typeof parsed.deadLetterTargetArn !== 'string' || !this.queueByArn(parsed.deadLetterTargetArn)) {
      throw invalid('Dead letter target does not exist.');
    }
    return { deadLetterTargetArn: parsed.deadLetterTargetArn, maxReceiveCount };
  }

  private queueByArn(arn: string) {
    const prefix = this.queueArn('');
    return arn.startsWith(prefix) ? this.queues.get(arn.slice(prefix.length)) : undefined;
  }

  private attributeValue(queue: Queue, name: string, now: number): string | undefined {
    const messages = [...queue.messages.values()];
    switch (name) {
      case 'ApproximateNumberOfMessages':
        return String(messages.filter((m) => m.delayedUntil <= now && m.inFlightUntil <= now).length);
      case 'ApproximateNumberOfMessagesNotVisible':
        return String(messages.filter((m) => m.inFlightUntil > now).length);
      case 'ApproximateNumberOfMessagesDelayed':
        return String(messages.filter((m) => m.delayedUntil > now).length);
      case 'QueueArn':
        return this.queueArn(queue.name);
      case 'CreatedTimestamp':
        return String(Math.floor(queue.createdAt / 1000));
      case 'LastModifiedTimestamp':
        return String(Math.floor(queue.lastModifiedAt / 1000));
      case 'RedrivePolicy':
        return queue.settings.RedrivePolicy && JSON.stringify(queue.settings.RedrivePolicy);
      default:
        if (name in NUMERIC_SETTINGS) return String(queue.settings[name as keyof typeof NUMERIC_SETTINGS]);
        throw invalidAttributeName(name);
    }
  }

  private send(queue: Queue, entry: Record<string, unknown>) {
    const body = entry.MessageBody;
    if (typeof body !== 'string' || body === '') throw missingParameter('MessageBody');
    if (!VALID_MESSAGE_TEXT.test(body)) {
      throw sqsError('InvalidMessageContents', 'Invalid characters found in the message body.');
    }
    const delaySeconds = intParam(entry.DelaySeconds, 'DelaySeconds', 0, 900, queue.settings.DelaySeconds);
    const attributes = validateMessageAttributes(entry.MessageAttributes);
    const size = Buffer.byteLength(body) + attributesSize(attributes);
    if (size > queue.settings.MaximumMessageSize) {
      throw invalidParameter(
        `One or more parameters are invalid. Reason: Message must be shorter than ${queue.settings.MaximumMessageSize} bytes.`,
      );
    }
    const now = Date.now();
    const message: StoredMessage = {
      messageId: randomUUID(),
      body,
      ...(attributes && { attributes }),
      sentAt: now,
      delayedUntil: now + delaySeconds * 1000,
      inFlightUntil: 0,
      receiveCount: 0,
    };
    queue.messages.set(message.messageId, message);
    if (delaySeconds === 0) this.wake(queue);
    const md5Attributes = attributes && md5OfMessageAttributes(attributes);
    return {
      MessageId: message.messageId,
      MD5OfMessageBody: md5Hex(body),
      ...(md5Attributes && { MD5OfMessageAttributes: md5Attributes }),
    };
  }

  /** AWS semantics: a message already received maxReceiveCount times goes to the DLQ instead of out again. */
  private deadLetter(queue: Queue, message: StoredMessage): boolean {
    const policy = queue.settings.RedrivePolicy;
    if (!policy || message.receiveCount < policy.maxReceiveCount) return false;
    const target = this.queueByArn(policy.deadLetterTargetArn);
    if (!target || target === queue) return false;
    this.remove(queue, message);
    const { receiptHandle: _stale, ...moved } = message;
    target.messages.set(message.messageId, { ...moved, inFlightUntil: 0, delayedUntil: 0 });
    this.wake(target);
    return true;
  }

  private take(queue: Queue, max: number, visibilityTimeout: number): StoredMessage[] {
    const now = Date.now();
    this.expire(queue, now);
    const taken: StoredMessage[] = [];
    for (const message of queue.messages.values()) {
      if (taken.length >= max) break;
      if (message.delayedUntil > now || message.inFlightUntil > now) continue;
      if (this.deadLetter(queue, message)) continue;
      if (message.receiptHandle) queue.byHandle.delete(message.receiptHandle);
      message.receiptHandle = newReceiptHandle();
      queue.byHandle.set(message.receiptHandle, message);
      message.receiveCount += 1;
      message.firstReceivedAt ??= now;
      message.inFlightUntil = now + visibilityTimeout * 1000;
      taken.push(message);
    }
    return taken;
  }

  /** When the next delayed or in-flight message becomes visible, so a long poll can look again. */
  private nextVisibleAt(queue: Queue, now: number): number {
    let next = Number.POSITIVE_INFINITY;
    for (const m of queue.messages.values()) {
      const visibleAt = Math.max(m.delayedUntil, m.inFlightUntil);
      if (visibleAt > now && visibleAt < next) next = visibleAt;
    }
    return next;
  }

  private waitForChange(queue: Queue, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        queue.waiters.delete(wake);
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(ms, 0));
      queue.waiters.add(wake);
      signal?.addEventListener('abort', wake);
    });
  }

  private render(message: StoredMessage, systemNames: string[], attributeNames: string[]) {
    const all = systemNames.includes('All');
    const system: Record<string, string> = {};
    const values: Record<(typeof MESSAGE_SYSTEM_ATTRIBUTES)[number], string | undefined> = {
      SenderId: this.accountId,
      SentTimestamp: String(message.sentAt),
      ApproximateReceiveCount: String(message.receiveCount),
      ApproximateFirstReceiveTimestamp:
        message.firstReceivedAt === undefined ? undefined : String(message.firstReceivedAt),
    };
    for (const name of MESSAGE_SYSTEM_ATTRIBUTES) {
      const value = values[name];
      if (value !== undefined && (all || systemNames.includes(name))) system[name] = value;
    }
    const attributes = selectAttributes(message.attributes, attributeNames);
    const md5Attributes = attributes && md5OfMessageAttributes(attributes);
    return {
      MessageId: message.messageId,
      ReceiptHandle: message.receiptHandle,
      MD5OfBody: md5Hex(message.body),
      Body: message.body,
      ...(Object.keys(system).length > 0 && { Attributes: system }),
      ...(md5Attributes && { MD5OfMessageAttributes: md5Attributes }),
      ...(attributes && { MessageAttributes: attributes }),
    };
  }

  private changeVisibility(queue: Queue, handle: string, timeout: unknown) {
    const message = queue.byHandle.get(handle);
    if (!message) throw receiptHandleIsInvalid(handle);
    if (timeout === undefined || timeout === null) throw missingParameter('VisibilityTimeout');
    const seconds = intParam(timeout, 'VisibilityTimeout', 0, 43_200, 0);
    const now = Date.now();
    if (message.inFlightUntil <= now) {
      throw sqsError(
        'MessageNotInflight',
        'The message referred to is not in flight.',
        'AWS.SimpleQueueService.MessageNotInflight',
      );
    }
    message.inFlightUntil = now + seconds * 1000;
    if (seconds === 0) this.wake(queue);
  }

  private deleteByHandle(queue: Queue, handle: string) {
    const message = queue.byHandle.get(handle);
    if (!message) throw receiptHandleIsInvalid(handle);
    this.remove(queue, message);
  }

  /** Runs each batch entry on its own, reporting per-entry failures as SQS does. */
  private batch(
    input: Record<string, unknown>,
    run: (entry: Record<string, unknown>) => Record<string, unknown>,
  ) {
    const entries = Array.isArray(input.Entries) ? (input.Entries as Record<string, unknown>[]) : [];
    if (entries.length === 0) {
      throw sqsError(
        'EmptyBatchRequest',
        'There should be at least one entry in the request.',
        'AWS.SimpleQueueService.EmptyBatchRequest',
      );
    }
    if (entries.length > MAX_BATCH_ENTRIES) {
      throw sqsError(
        'TooManyEntriesInBatchRequest',
        `Maximum number of entries per request are ${MAX_BATCH_ENTRIES}. You have sent ${entries.length}.`,
        'AWS.SimpleQueueService.TooManyEntriesInBatchRequest',
      );
    }
    const ids = new Set<string>();
    for (const entry of entries) {
      const id = entry.Id;
      if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,80}$/.test(id)) {
        throw sqsError(
          'InvalidBatchEntryId',
          `A batch entry id can only contain alphanumeric characters, hyphens and underscores.`,
          'AWS.SimpleQueueService.InvalidBatchEntryId',
        );
      }
      if (ids.has(id)) {
        throw sqsError(
          'BatchEntryIdsNotDistinct',
          `Id ${id} repeated.`,
          'AWS.SimpleQueueService.BatchEntryIdsNotDistinct',
        );
      }
      ids.add(id);
    }
    const Successful: Record<string, unknown>[] = [];
    const Failed: Record<string, unknown>[] = [];
    for (const entry of entries) {
      try {
        Successful.push({ Id: entry.Id, ...run(entry) });
      } catch (err) {
        if (!(err instanceof AwsError)) throw err;
        Failed.push({
          Id: entry.Id,
          SenderFault: err.statusCode < 500,
          Code: err.queryErrorCode ?? err.code,
          Message: err.message,
        });
      }
    }
    return { Successful, Failed };
  }

  readonly operations: Record<string, OperationHandler> = {
    CreateQueue: (input) => {
      const name = requiredString(input, 'QueueName');
      if (!QUEUE_NAME.test(name)) {
        throw invalidParameter(
          'Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length',
        );
      }
      const given = (input.Attributes ?? {}) as Record<string, unknown>;
      const existing = this.queues.get(name);
      if (existing) {
        const wanted = this.parseSettings(given, DEFAULT_SETTINGS);
        const differs = Object.keys(given).some(
          (key) =>
            JSON.stringify(wanted[key as keyof QueueSettings]) !==
            JSON.stringify(existing.settings[key as keyof QueueSettings]),
        );
        if (differs) {
          throw sqsError(
            'QueueNameExists',
            `A queue already exists with the same name and a different value for attribute(s)`,
            'QueueAlreadyExists',
          );
        }
        return { QueueUrl: this.queueUrl(name) };
      }
      const now = Date.now();
      this.queues.set(name, {
        name,
        createdAt: now,
        lastModifiedAt: now,
        settings: this.parseSettings(given, DEFAULT_SETTINGS),
        messages: new Map(),
        byHandle: new Map(),
        waiters: new Set(),
      });
      return { QueueUrl: this.queueUrl(name) };
    },

    GetQueueUrl: (input) => {
      const name = requiredString(input, 'QueueName');
      if (!this.queues.has(name)) throw nonExistentQueue();
      return { QueueUrl: this.queueUrl(name) };
    },

    ListQueues: (input) => {
      const prefix = typeof input.QueueNamePrefix === 'string' ? input.QueueNamePrefix : '';
      const paged = input.MaxResults !== undefined && input.MaxResults !== null;
      const max = intParam(input.MaxResults, 'MaxResults', 1, 1000, 1000);
      const after =
        typeof input.NextToken === 'string' ? Buffer.from(input.NextToken, 'base64url').toString('utf8') : '';
      const names = [...this.queues.keys()].filter((n) => n.startsWith(prefix) && n > after).sort();
      const page = names.slice(0, max);
      const last = page.at(-1);
      return {
        ...(page.length > 0 && { QueueUrls: page.map((n) => this.queueUrl(n)) }),
        ...(paged && names.length > max && last && { NextToken: Buffer.from(last).toString('base64url') }),
      };
    },

    DeleteQueue: (input) => {
      const queue = this.queueFromUrl(input);
      this.queues.delete(queue.name);
      this.wake(queue);
      return {};
    },

    GetQueueAttributes: (input) => {
      const queue = this.queueFromUrl(input);
      const requested = stringList(input.AttributeNames);
      const names = requested.includes('All')
        ? [...READ_ONLY_ATTRIBUTES, ...Object.keys(NUMERIC_SETTINGS), 'RedrivePolicy']
        : requested;
      const now = Date.now();
      const Attributes: Record<string, string> = {};
      for (const name of names) {
        const value = this.attributeValue(queue, name, now);
        if (value !== undefined) Attributes[name] = value;
      }
      return Object.keys(Attributes).length > 0 ? { Attributes } : {};
    },

    SetQueueAttributes: (input) => {
      const queue = this.queueFromUrl(input);
      queue.settings = this.parseSettings(
        (input.Attributes ?? {}) as Record<string, unknown>,
        queue.settings,
      );
      queue.lastModifiedAt = Date.now();
      return {};
    },

    SendMessage: (input) => this.send(this.queueFromUrl(input), input),

    SendMessageBatch: (input) => {
      const queue = this.queueFromUrl(input);
      return this.batch(input, (entry) => this.send(queue, entry));
    },

    ReceiveMessage: async (input, context) => {
      const signal = context?.signal;
      const queue = this.queueFromUrl(input);
      const max = intParam(input.MaxNumberOfMessages, 'MaxNumberOfMessages', 1, 10, 1);
      const wait = intParam(
        input.WaitTimeSeconds,
        'WaitTimeSeconds',
        0,
        20,
        queue.settings.ReceiveMessageWaitTimeSeconds,
      );
      // The queue's timeout applies when a message is taken, not when a long poll starts (checked here up front).
      const visibility = () =>
        intParam(input.VisibilityTimeout, 'VisibilityTimeout', 0, 43_200, queue.settings.VisibilityTimeout);
      visibility();
      const systemNames = [
        ...stringList(input.AttributeNames),
        ...stringList(input.MessageSystemAttributeNames),
      ];
      const attributeNames = stringList(input.MessageAttributeNames);
      const deadline = Date.now() + wait * 1000;
      for (;;) {
        // a poll whose client has gone takes nothing: the messages would be hidden with no one to get them
        if (signal?.aborted) return {};
        const taken = this.take(queue, max, visibility());
        if (taken.length > 0)
          return { Messages: taken.map((m) => this.render(m, systemNames, attributeNames)) };
        const now = Date.now();
        // AWS omits Messages when there are none.
        if (this.closed || now >= deadline || this.queues.get(queue.name) !== queue) return {};
        await this.waitForChange(queue, Math.min(deadline, this.nextVisibleAt(queue, now)) - now, signal);
      }
    },

    DeleteMessage: (input) => {
      this.deleteByHandle(this.queueFromUrl(input), requiredString(input, 'ReceiptHandle'));
      return {};
    },

    DeleteMessageBatch: (input) => {
      const queue = this.queueFromUrl(input);
      return this.batch(input, (entry) => {
        this.deleteByHandle(queue, requiredString(entry, 'ReceiptHandle'));
        return {};
      });
    },

    ChangeMessageVisibility: (input) => {
      const queue = this.queueFromUrl(input);
      this.changeVisibility(queue, requiredString(input, 'ReceiptHandle'), input.VisibilityTimeout);
      return {};
    },

    ChangeMessageVisibilityBatch: (input) => {
      const queue = this.queueFromUrl(input);
      return this.batch(input, (entry) => {
        this.changeVisibility(queue, requiredString(entry, 'ReceiptHandle'), entry.VisibilityTimeout);
        return {};
      });
    },

    PurgeQueue: (input) => {
      const queue = this.queueFromUrl(input);
      queue.messages.clear();
      queue.byHandle.clear();
      return {};
    },
  };

  snapshot(): PersistedState {
    return {
      queues: [...this.queues.values()].map((q) => ({
        name: q.name,
        createdAt: q.createdAt,
        lastModifiedAt: q.lastModifiedAt,
        settings: q.settings,
        messages: [...q.messages.values()],
      })),
    };
  }

  restore(state: PersistedState) {
    for (const q of state.queues) {
      // A restart ends every receive: what was in flight is visible again.
      const messages = q.messages.map((m) => ({ ...m, inFlightUntil: 0 }));
      this.queues.set(q.name, {
        name: q.name,
        createdAt: q.createdAt,
        lastModifiedAt: q.lastModifiedAt,
        settings: q.settings,
        messages: new Map(messages.map((m) => [m.messageId, m])),
        byHandle: new Map(messages.flatMap((m) => (m.receiptHandle ? [[m.receiptHandle, m] as const] : []))),
        waiters: new Set(),
      });
    }
  }
}

// ---- the query protocol: form parameters in, XML out ----

const QUERY_ACTIONS = new Set([
  'CreateQueue',
  'DeleteQueue',
  'ListQueues',
  'GetQueueUrl',
  'GetQueueAttributes',
  'SetQueueAttributes',
  'SendMessage',
  'ReceiveMessage',
  'DeleteMessage',
  'ChangeMessageVisibility',
  'PurgeQueue',
]);
/** actions whose response has no `<Action>Result>` element */
const QUERY_ACTIONS_WITHOUT_RESULT = new Set([
  'DeleteQueue',
  'SetQueueAttributes',
  'DeleteMessage',
  'ChangeMessageVisibility',
  'PurgeQueue',
]);
const QUERY_NAMESPACE = 'http://queue.amazonaws.com/doc/2012-11-05/';

type Nested = { [key: string]: string | Nested };

/** `MessageAttribute.1.Value.DataType=String` → `{ MessageAttribute: { 1: { Value: { DataType: 'String' } } } }` */
const nestParams = (params: URLSearchParams): Nested => {
  const root: Nested = {};
  for (const [key, value] of params) {
    const path = key.split('.');
    let node = root;
    for (const part of path.slice(0, -1)) {
      const next = node[part];
      if (typeof next === 'object') {
        node = next;
      } else {
        const created: Nested = {};
        node[part] = created;
        node = created;
      }
    }
    node[path.at(-1) as string] = value;
  }
  return root;
};

const indexedList = (node: string | Nested | undefined): (string | Nested)[] =>
  typeof node === 'object'
    ? Object.entries(node)
        .sort(([a], [b]) => Number(a) - Number(b))
        .map(([, v]) => v)
    : [];

const namedMap = (node: string | Nested | undefined) =>
  Object.fromEntries(
    indexedList(node).flatMap((entry) =>
      typeof entry === 'object' && typeof entry.Name === 'string' ? [[entry.Name, entry.Value]] : [],
    ),
  );

const queryInput = (params: URLSearchParams): Record<string, unknown> => {
  const nested = nestParams(params);
  const input: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(nested)) if (typeof value === 'string') input[key] = value;
  if (nested.Attribute) input.Attributes = namedMap(nested.Attribute);
  if (nested.AttributeName) input.AttributeNames = indexedList(nested.AttributeName);
  if (nested.MessageSystemAttributeName)
    input.MessageSystemAttributeNames = indexedList(nested.MessageSystemAttributeName);
  if (nested.MessageAttributeName) input.MessageAttributeNames = indexedList(nested.MessageAttributeName);
  if (nested.MessageAttribute) input.MessageAttributes = namedMap(nested.MessageAttribute);
  return input;
};

const escapeXml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string,
  );

const LIST_MEMBERS: Record<string, string> = { QueueUrls: 'QueueUrl', Messages: 'Message' };

/** The query protocol's shapes: flattened lists, and maps as repeated `<Name>`/`<Value>` entries. */
const toXml = (key: string, value: unknown): string => {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map((v) => toXml(LIST_MEMBERS[key] ?? key, v)).join('');
  if (key === 'Attributes' || key === 'MessageAttributes') {
    const entry = key.slice(0, -1);
    return Object.entries(value as Record<string, unknown>)
      .map(([name, v]) => `<${entry}><Name>${escapeXml(name)}</Name>${toXml('Value', v)}</${entry}>`)
      .join('');
  }
  if (typeof value === 'object') {
    const inner = Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => toXml(k, v))
      .join('');
    return `<${key}>${inner}</${key}>`;
  }
  return `<${key}>${escapeXml(String(value))}</${key}>`;
};

const sendXml = (res: ServerResponse, status: number, xml: string) => {
  res.writeHead(status, { 'content-type': 'text/xml' });
  res.end(`<?xml version="1.0"?>${xml}`);
};

const queryProtocol =
  (service: SqsService) =>
  async (req: IncomingMessage, body: string, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const params = new URLSearchParams(url.search);
    for (const [k, v] of new URLSearchParams(body)) params.append(k, v);
    try {
      const action = params.get('Action') ?? '';
      const operation = QUERY_ACTIONS.has(action) ? service.operations[action] : undefined;
      if (!operation) throw sqsError('InvalidAction', `The action ${action} is not valid for this endpoint.`);
      const input = queryInput(params);
      // Query clients may address the queue by posting to its URL instead of passing QueueUrl.
      if (input.QueueUrl === undefined && /^\/[^/]+\/[^/]+$/.test(url.pathname))
        input.QueueUrl = service.baseUrl + url.pathname;
      const output = (await operation(input, { signal: clientGone(res) })) as Record<string, unknown>;
      const result = QUERY_ACTIONS_WITHOUT_RESULT.has(action) ? '' : toXml(`${action}Result`, output);
      sendXml(
        res,
        200,
        `<${action}Response xmlns="${QUERY_NAMESPACE}">${result}<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`,
      );
    } catch (err) {
      const error = err instanceof AwsError ? err : new AwsError('InternalFailure', String(err), 500);
      const type = error.statusCode < 500 ? 'Sender' : 'Receiver';
      sendXml(
        res,
        error.statusCode,
        `<ErrorResponse xmlns="${QUERY_NAMESPACE}"><Error><Type>${type}</Type><Code>${escapeXml(error.queryErrorCode ?? error.code)}</Code><Message>${escapeXml(error.message)}</Message><Detail/></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    }
  };

export async function startSqsEmulator(opts: SqsEmulatorOptions = {}): Promise<SqsEmulator> {
  const service = new SqsService(opts.accountId ?? '000000000000', opts.region ?? 'us-east-1');
  const saved = opts.persistPath ? await loadState<PersistedState>(opts.persistPath) : undefined;
  if (saved) service.restore(saved);
  const server = await startJsonProtocolServer(
    {
      targetPrefix: 'AmazonSQS',
      errorNamespace: 'com.amazonaws.sqs',
      operations: service.operations,
      fallback: queryProtocol(service),
    },
    opts.port ?? 0,
    opts.host ?? '127.0.0.1',
  );
  service.baseUrl = server.url;
  return {
    url: server.url,
    port: server.port,
    close: async () => {
      service.closed = true;
      // Long polls answer (empty) before the connections go away.
      service.wakeAll();
      await new Promise((resolve) => setImmediate(resolve));
      if (opts.persistPath) await saveState(opts.persistPath, service.snapshot());
      await server.close();
    },
  };
}
