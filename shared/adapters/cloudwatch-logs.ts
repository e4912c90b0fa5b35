import {
  type CloudWatchLogsClient,
  CreateLogStreamCommand,
  GetLogEventsCommand,
  type GetLogEventsCommandOutput,
  PutLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { ServiceUnavailableError, ValidationError } from '../domain/errors.js';
import type { StepContentRef } from '../domain/steps.js';
import type { LogEventsPage, LogEventsRequest, LogReader, StepContentStore } from '../ports.js';
import { errorName } from './dynamo-keys.js';

/*
 * CloudWatch Logs behind two ports: reading a run's log stream page by page (the pods' log group),
 * and keeping the full text of oversized steps (a log group of their own, one stream per step).
 * Throttling is retried by the client (adaptive retry mode, see shared/wiring.ts); what outlasts
 * those retries becomes a 503, so the caller tries again later.
 */

/** Errors that mean "not now", not "never". */
const RETRYABLE = new Set(['ThrottlingException', 'ServiceUnavailableException', 'LimitExceededException']);

const unavailableOr = (err: unknown): never => {
  const name = errorName(err);
  if (name !== undefined && RETRYABLE.has(name)) {
    throw new ServiceUnavailableError('CloudWatch Logs is busy; try again shortly', { cause: name });
  }
  throw err;
};

export class CloudWatchLogReader implements LogReader {
  constructor(
    private readonly client: CloudWatchLogsClient,
    private readonly logGroupName: string,
  ) {}

  async getEvents(request: LogEventsRequest): Promise<LogEventsPage | undefined> {
    try {
      const out = await this.client.send(
        new GetLogEventsCommand({
          logGroupName: this.logGroupName,
          logStreamName: request.logStream,
          limit: request.limit,
          // A forward token must be sent with startFromHead true, a backward one with false.
          startFromHead: request.forward,
          ...(request.token === undefined ? {} : { nextToken: request.token }),
        }),
      );
      return {
        events: (out.events ?? []).map((e) => ({ timestamp: e.timestamp ?? 0, message: e.message ?? '' })),
        nextForwardToken: out.nextForwardToken,
        nextBackwardToken: out.nextBackwardToken,
      };
    } catch (err) {
      const name = errorName(err);
      if (name === 'ResourceNotFoundException') return undefined;
      // The token came from a cursor: CloudWatch refuses one that has expired (or was never its own).
      if (name === 'InvalidParameterException' && request.token !== undefined) {
        throw new ValidationError(
          'the cursor has expired or is no longer valid: load the newest page again, without cursor or after',
        );
      }
      return unavailableOr(err);
    }
  }
}

/** A log event holds at most 256 KB; a part's JSON stays well under it. */
const PART_MESSAGE_BYTES = 200 * 1024;
/** PutLogEvents takes at most 1 MB a call, counting 26 bytes per event besides its message. */
const PUT_BATCH_BYTES = 1_000_000;
const EVENT_OVERHEAD_BYTES = 26;
const SEQ_WIDTH = 10;
/** Reading a step's text stops after this many pages (a whole step is a few), whatever the stream does. */
const MAX_READ_PAGES = 50;

interface StoredPart {
  part: number;
  parts: number;
  text: string;
}

const jsonBytes = (text: string) => Buffer.byteLength(JSON.stringify(text), 'utf8');
const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/**
 * Cuts text into parts whose JSON string form fits `maxBytes`, never inside a surrogate pair.
 * JSON escapes make a part's size depend on its characters, so each cut is measured, not guessed.
 */
export const splitForLogEvents = (text: string, maxBytes = PART_MESSAGE_BYTES): string[] => {
  const parts: string[] = [];
  let start = 0;
  while (start < text.length) {
    let take = Math.min(text.length - start, maxBytes);
    for (;;) {
      let end = start + take;
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1)) && take > 1) end -= 1;
      const size = jsonBytes(text.slice(start, end));
      if (size <= maxBytes) {
        parts.push(text.slice(start, end));
        start = end;
        break;
      }
      take = Math.max(1, Math.floor((take * maxBytes) / size) - 2);
    }
  }
  return parts;
};

const parsePart = (message: string | undefined): StoredPart | undefined => {
  try {
    const value = JSON.parse(message ?? '') as Partial<StoredPart>;
    if (Number.isInteger(value.part) && Number.isInteger(value.parts) && typeof value.text === 'string') {
      return value as StoredPart;
    }
  } catch {
    // not one of ours
  }
  return undefined;
};

export class CloudWatchStepContentStore implements StepContentStore {
  constructor(
    private readonly client: CloudWatchLogsClient,
    private readonly logGroupName: string,
  ) {}

  async put(runId: string, seq: number, content: string): Promise<StepContentRef> {
    const logStream = `steps/${runId}/${String(seq).padStart(SEQ_WIDTH, '0')}`;
    try {
      await this.client.send(
        new CreateLogStreamCommand({ logGroupName: this.logGroupName, logStreamName: logStream }),
      );
    } catch (err) {
      // a repeated step: its parts are written again, and reading keeps the first copy of each
      if (errorName(err) !== 'ResourceAlreadyExistsException') unavailableOr(err);
    }
    const texts = splitForLogEvents(content);
    const timestamp = Date.now();
    const messages = texts.map((text, part) => JSON.stringify({ part, parts: texts.length, text }));
    let batch: { timestamp: number; message: string }[] = [];
    let batchBytes = 0;
    const send = async () => {
      if (batch.length === 0) return;
      try {
        await this.client.send(
          new PutLogEventsCommand({
            logGroupName: this.logGroupName,
            logStreamName: logStream,
            logEvents: batch,
          }),
        );
      } catch (err) {
        unavailableOr(err);
      }
      batch = [];
      batchBytes = 0;
    };
    for (const message of messages) {
      const size = Buffer.byteLength(message, 'utf8') + EVENT_OVERHEAD_BYTES;
      if (batchBytes + size > PUT_BATCH_BYTES) await send();
      batch.push({ timestamp, message });
      batchBytes += size;
    }
    await send();
    return {
      logGroup: this.logGroupName,
      logStream,
      parts: texts.length,
      bytes: Buffer.byteLength(content, 'utf8'),
    };
  }

  async get(ref: StepContentRef): Promise<string | undefined> {
    const found = new Map<number, string>();
    let token: string | undefined;
    for (let pages = 1; pages <= MAX_READ_PAGES; pages++) {
      let page: GetLogEventsCommandOutput;
      try {
        page = await this.client.send(
          new GetLogEventsCommand({
            logGroupName: ref.logGroup,
            logStreamName: ref.logStream,
            startFromHead: true,
            ...(token === undefined ? {} : { nextToken: token }),
          }),
        );
      } catch (err) {
        if (errorName(err) === 'ResourceNotFoundException') return undefined;
        return unavailableOr(err);
      }
      for (const event of page.events ?? []) {
        const stored = parsePart(event.message);
        if (stored && stored.parts === ref.parts && !found.has(stored.part))
          found.set(stored.part, stored.text);
      }
      if (found.size === ref.parts) break;
      // The same token again is the end of the stream; a new one may follow an empty page.
      if (page.nextForwardToken === undefined || page.nextForwardToken === token) break;
      token = page.nextForwardToken;
    }
    if (found.size < ref.parts) return undefined;
    return Array.from({ length: ref.parts }, (_, part) => found.get(part) ?? '').join('');
  }
}
