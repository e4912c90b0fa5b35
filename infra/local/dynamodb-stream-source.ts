import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  type DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type Shard,
  type AttributeValue as StreamAttributeValue,
  type _Record as StreamRecord,
} from '@aws-sdk/client-dynamodb-streams';
import type { AttributeValue, DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { patternMatcher } from './event-bus.js';

/**
 * A Lambda event-source mapping on a DynamoDB stream: one poller per shard reads its records in order,
 * drops those no filter matches, and invokes the function with one batch at a time (parallelization
 * factor 1), with the records as Lambda builds them. Children of a shard are read once their parent
 * is done. A thrown error retries the whole batch (halved first, with BisectBatchOnFunctionError);
 * with ReportBatchItemFailures the batch restarts from the first record the function names. After
 * `maximumRetryAttempts` retries the records that still fail go to the on-failure destination and the
 * shard moves on.
 *
 * Unlike Lambda it keeps no checkpoint: a mapping started again reads from `startingPosition`.
 */

export interface DynamoDbStreamSourceOptions {
  /** to find the table's LatestStreamArn */
  dynamodb: DynamoDBClient;
  streams: DynamoDBStreamsClient;
  tableName: string;
  /** records per invocation, at most (Lambda's BatchSize); default 100 */
  batchSize?: number;
  /** how long records are gathered before an invocation that is not full; default 0 */
  maximumBatchingWindowMs?: number;
  startingPosition: 'TRIM_HORIZON' | 'LATEST';
  /**
   * Lambda FilterCriteria: each a pattern object (EventBridge syntax) matched against the record as
   * Lambda sees it ({eventName, dynamodb: {Keys, NewImage, OldImage, ...}, ...}); a record matching
   * none is dropped before invoking, as if it had been processed.
   */
  filters?: object[];
  reportBatchItemFailures: boolean;
  bisectBatchOnError?: boolean;
  /** retries of a failing batch (-1: until the function succeeds); then its failed part goes to onFailure */
  maximumRetryAttempts: number;
  invoke: (event: DynamoDBStreamEvent) => Promise<unknown>;
  /** the on-failure destination (e.g. an SQS DLQ); without it the records are logged and skipped */
  onFailure?: (failure: { records: DynamoDBRecord[]; error: string }) => Promise<void>;
  /** the wait between reads of a shard that had nothing new, and before a retry; default 100 */
  pollIntervalMs?: number;
  logError?: (message: string, err: unknown) => void;
}

export interface DynamoDbStreamSource {
  /** the stream followed, as each record's eventSourceARN says */
  readonly streamArn: string;
  /** Stops reading; a batch being delivered is finished first (without its retries). */
  stop(): Promise<void>;
  /** Resolves once every record written so far has been delivered (or sent to onFailure): for tests. */
  drained(): Promise<void>;
}

const DEFAULT_BATCH_SIZE = 100;
const MAX_BATCH_SIZE = 10_000;
const MAX_RETRY_ATTEMPTS = 10_000;
/** GetRecords' own limit */
const MAX_RECORDS_PER_READ = 1000;
/** how often the stream's shards are listed, to find those a split opened */
const DISCOVERY_INTERVAL_MS = 1000;
const ERROR_BACKOFF_MS = 1000;

type StartingPosition = DynamoDbStreamSourceOptions['startingPosition'];

interface ShardState {
  id: string;
  parentId: string | undefined;
  /** waiting: for its parent to be read to its end */
  status: 'waiting' | 'reading' | 'done';
  /** the clock when the last read began that found nothing new with nothing left to deliver */
  caughtUpAt: number;
}

/** A batch, or what is left of it, with the retries it has had. */
interface Attempt {
  records: DynamoDBRecord[];
  retries: number;
}

type Outcome = { ok: true } | { ok: false; error: string; failed: DynamoDBRecord[]; functionError: boolean };

const errorText = (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));

/** Lambda's attribute values are the wire form: binary as base64. */
const toAttribute = (value: StreamAttributeValue): AttributeValue => {
  if (value.B !== undefined) return { B: Buffer.from(value.B).toString('base64') };
  if (value.BS !== undefined) return { BS: value.BS.map((b) => Buffer.from(b).toString('base64')) };
  if (value.L !== undefined) return { L: value.L.map(toAttribute) };
  if (value.M !== undefined) return { M: toImage(value.M) };
  const { $unknown: _, ...same } = value as StreamAttributeValue & { $unknown?: unknown };
  return same as AttributeValue;
};

const toImage = (image: Record<string, StreamAttributeValue>): Record<string, AttributeValue> =>
  Object.fromEntries(Object.entries(image).map(([name, value]) => [name, toAttribute(value)]));

/** A stream record as Lambda hands it to the function. */
const toLambdaRecord = (record: StreamRecord, streamArn: string): DynamoDBRecord => {
  const change = record.dynamodb ?? {};
  return {
    eventID: record.eventID,
    eventName: record.eventName,
    eventVersion: record.eventVersion,
    eventSource: record.eventSource,
    awsRegion: record.awsRegion,
    dynamodb: {
      // epoch seconds in Lambda's event, where the Streams API has a timestamp
      ...(change.ApproximateCreationDateTime && {
        ApproximateCreationDateTime: Math.floor(change.ApproximateCreationDateTime.getTime() / 1000),
      }),
      ...(change.Keys && { Keys: toImage(change.Keys) }),
      ...(change.NewImage && { NewImage: toImage(change.NewImage) }),
      ...(change.OldImage && { OldImage: toImage(change.OldImage) }),
      SequenceNumber: change.SequenceNumber,
      SizeBytes: change.SizeBytes,
      StreamViewType: change.StreamViewType,
    },
    eventSourceARN: streamArn,
    // TTL deletions carry the service as their identity
    ...(record.userIdentity && {
      userIdentity: { type: record.userIdentity.Type, principalId: record.userIdentity.PrincipalId },
    }),
  };
};

/**
 * Where the batch failed, by Lambda's rules for a partial batch response: null when it all succeeded
 * (no response, or an empty or null list), the index of the failed record with the lowest sequence
 * number, or undefined when the response is malformed (an identifier missing, empty or not in the
 * batch), which fails the whole batch.
 */
const firstFailure = (result: unknown, records: DynamoDBRecord[]): number | null | undefined => {
  const failures = (result as Partial<DynamoDBBatchResponse> | null | undefined)?.batchItemFailures;
  if (failures === undefined || failures === null) return null;
  if (!Array.isArray(failures)) return undefined;
  let first: number | null = null;
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '') return undefined;
    const index = records.findIndex((record) => record.dynamodb?.SequenceNumber === id);
    if (index < 0) return undefined;
    if (first === null || index < first) first = index;
  }
  return first;
};

const checkOptions = (options: DynamoDbStreamSourceOptions, batchSize: number): void => {
  const { maximumRetryAttempts, startingPosition } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
    throw new Error(`batchSize must be an integer from 1 to ${MAX_BATCH_SIZE}, not ${batchSize}`);
  }
  if (
    !Number.isInteger(maximumRetryAttempts) ||
    maximumRetryAttempts < -1 ||
    maximumRetryAttempts > MAX_RETRY_ATTEMPTS
  ) {
    throw new Error(
      `maximumRetryAttempts must be -1 or an integer up to ${MAX_RETRY_ATTEMPTS}, not ${maximumRetryAttempts}`,
    );
  }
  if (startingPosition !== 'TRIM_HORIZON' && startingPosition !== 'LATEST') {
    throw new Error(`startingPosition must be TRIM_HORIZON or LATEST, not ${startingPosition}`);
  }
};

export const startDynamoDbStreamSource = async (
  options: DynamoDbStreamSourceOptions,
): Promise<DynamoDbStreamSource> => {
  const { dynamodb, streams, tableName, startingPosition, reportBatchItemFailures, invoke } = options;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const windowMs = options.maximumBatchingWindowMs ?? 0;
  const pollIntervalMs = options.pollIntervalMs ?? 100;
  const maximumRetryAttempts = options.maximumRetryAttempts;
  const logError = options.logError ?? ((message, err) => console.error(message, err));
  checkOptions(options, batchSize);
  // an invalid pattern fails here, as CreateEventSourceMapping refuses it
  const matchers = (options.filters ?? []).map((pattern) =>
    patternMatcher(pattern as Record<string, unknown>),
  );
  const accepts = (record: DynamoDBRecord) =>
    matchers.length === 0 || matchers.some((matches) => matches(record));

  const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: tableName }));
  const streamArn = Table?.LatestStreamArn;
  if (!streamArn || !Table?.StreamSpecification?.StreamEnabled) {
    throw new Error(`table ${tableName} has no stream: enable one (StreamSpecification) first`);
  }

  const aborter = new AbortController();
  const stopped = () => aborter.signal.aborted;
  const pause = (ms: number) => sleep(ms, undefined, { signal: aborter.signal }).catch(() => undefined);

  // A logical clock orders reads and discoveries against drained() calls.
  let clock = 0;
  const tick = () => ++clock;
  const shards = new Map<string, ShardState>();
  let discoveredAt = 0;
  const drainWaiters = new Set<{ asOf: number; resolve: () => void; reject: (err: Error) => void }>();
  const isDrainedSince = (asOf: number) =>
    discoveredAt > asOf &&
    [...shards.values()].every((shard) => shard.status === 'done' || shard.caughtUpAt > asOf);
  const settleWaiters = () => {
    for (const waiter of drainWaiters) {
      if (isDrainedSince(waiter.asOf)) {
        drainWaiters.delete(waiter);
        waiter.resolve();
      }
    }
  };

  const iteratorFor = async (
    shardId: string,
    position: StartingPosition | { after: string },
  ): Promise<string | undefined> => {
    const output = await streams.send(
      new GetShardIteratorCommand({
        StreamArn: streamArn,
        ShardId: shardId,
        ...(typeof position === 'string'
          ? { ShardIteratorType: position }
          : { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: position.after }),
      }),
      { abortSignal: aborter.signal },
    );
    return output.ShardIterator;
  };

  const listShards = async (): Promise<Shard[]> => {
    const all: Shard[] = [];
    let exclusiveStartShardId: string | undefined;
    do {
      const { StreamDescription } = await streams.send(
        new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: exclusiveStartShardId }),
        { abortSignal: aborter.signal },
      );
      all.push(...(StreamDescription?.Shards ?? []));
      exclusiveStartShardId = StreamDescription?.LastEvaluatedShardId;
    } while (exclusiveStartShardId);
    return all;
  };

  /** What the function made of one invocation. */
  const invokeOnce = async (records: DynamoDBRecord[]): Promise<Outcome> => {
    let result: unknown;
    try {
      // a copy each time: what the function does to its event must not reach a retry
      result = await invoke({ Records: structuredClone(records) });
    } catch (err) {
      logError(`${streamArn}: the function failed on a batch of ${records.length} record(s)`, err);
      return { ok: false, error: errorText(err), failed: records, functionError: true };
    }
    if (!reportBatchItemFailures) return { ok: true };
    const first = firstFailure(result, records);
    if (first === null) return { ok: true };
    if (first === undefined) {
      logError(`${streamArn}: malformed batchItemFailures; the whole batch failed`, result);
      return {
        ok: false,
        error: `malformed batchItemFailures: ${JSON.stringify(result)}`,
        failed: records,
        functionError: true,
      };
    }
    const failed = records.slice(first);
    const sequenceNumber = failed[0]?.dynamodb?.SequenceNumber;
    return {
      ok: false,
      error: `the function reported record ${sequenceNumber} failed`,
      failed,
      functionError: false,
    };
  };

  const discard = async (records: DynamoDBRecord[], error: string) => {
    const range = `${records[0]?.dynamodb?.SequenceNumber}..${records.at(-1)?.dynamodb?.SequenceNumber}`;
    if (!options.onFailure) {
      logError(`${streamArn}: ${records.length} record(s) ${range} skipped after their retries`, error);
      return;
    }
    try {
      await options.onFailure({ records: structuredClone(records), error });
    } catch (err) {
      logError(`${streamArn}: the on-failure destination refused record(s) ${range}; they are skipped`, err);
    }
  };

  /**
   * Delivers one batch, retrying until it succeeds or its retries are spent. A function error halves a
   * batch of more than one record when asked (the halves keep the retries they had: a split is not a
   * retry); a partial response retries only the records from the first one named.
   */
  const deliver = async (batch: DynamoDBRecord[]) => {
    const attempts: Attempt[] = [{ records: batch, retries: 0 }];
    while (!stopped()) {
      const attempt = attempts.shift();
      if (!attempt) return;
      const outcome = await invokeOnce(attempt.records);
      if (outcome.ok) continue;
      const { records, retries } = attempt;
      if (outcome.functionError && options.bisectBatchOnError && records.length > 1) {
        const half = Math.ceil(records.length / 2);
        attempts.unshift(
          { records: records.slice(0, half), retries },
          { records: records.slice(half), retries },
        );
        continue;
      }
      if (maximumRetryAttempts !== -1 && retries >= maximumRetryAttempts) {
        await discard(outcome.failed, outcome.error);
        continue;
      }
      attempts.unshift({ records: outcome.failed, retries: retries + 1 });
      await pause(pollIntervalMs);
    }
  };

  const followers = new Set<Promise<void>>();

  /** Reads one shard from `iterator` (or `from`) to its end, delivering its records batch by batch. */
  const follow = async (shard: ShardState, from: StartingPosition, firstIterator?: string) => {
    let iterator = firstIterator;
    let start: StartingPosition | { after: string } = from;
    let open = true;
    const buffer: DynamoDBRecord[] = [];
    let oldestBufferedAt = 0;
    while (!stopped()) {
      let readSome = false;
      if (open && buffer.length < batchSize) {
        try {
          iterator ??= await iteratorFor(shard.id, start);
          const startedAt = tick();
          const output = await streams.send(
            new GetRecordsCommand({ ShardIterator: iterator, Limit: MAX_RECORDS_PER_READ }),
            { abortSignal: aborter.signal },
          );
          // no next iterator: the shard is closed and read to its end
          iterator = output.NextShardIterator;
          open = iterator !== undefined;
          const records = output.Records ?? [];
          readSome = records.length > 0;
          for (const record of records) {
            const sequenceNumber = record.dynamodb?.SequenceNumber;
            if (sequenceNumber) start = { after: sequenceNumber };
            const lambdaRecord = toLambdaRecord(record, streamArn);
            if (!accepts(lambdaRecord)) continue;
            if (buffer.length === 0) oldestBufferedAt = Date.now();
            buffer.push(lambdaRecord);
          }
          if (!readSome && buffer.length === 0) {
            shard.caughtUpAt = startedAt;
            settleWaiters();
          }
        } catch (err) {
          if (stopped()) return;
          const name = (err as Error).name;
          // Records older than 24 hours are trimmed. Otherwise a new iterator from where reading got to,
          // but at a LATEST tip not moved from yet, whose iterator is kept unless it expired (15 minutes).
          if (name === 'TrimmedDataAccessException') start = 'TRIM_HORIZON';
          if (start !== 'LATEST' || name === 'ExpiredIteratorException') iterator = undefined;
          logError(`${streamArn}: reading shard ${shard.id} failed`, err);
          await pause(ERROR_BACKOFF_MS);
          continue;
        }
      }
      let wait = pollIntervalMs;
      if (buffer.length > 0) {
        const windowLeft = windowMs - (Date.now() - oldestBufferedAt);
        if (buffer.length >= batchSize || !open || windowLeft <= 0) {
          await deliver(buffer.splice(0, batchSize));
          continue;
        }
        wait = Math.min(wait, windowLeft);
      } else if (!open) {
        shardDone(shard);
        return;
      }
      if (!readSome) await pause(wait);
    }
  };

  const startFollowing = (shard: ShardState, from: StartingPosition, iterator?: string) => {
    if (stopped()) return;
    shard.status = 'reading';
    const follower = follow(shard, from, iterator).catch((err) =>
      logError(`${streamArn}: following shard ${shard.id} failed`, err),
    );
    followers.add(follower);
    void follower.finally(() => followers.delete(follower));
  };

  /** Its children are read from their start, as Lambda moves on to them after a split. */
  const shardDone = (shard: ShardState) => {
    shard.status = 'done';
    for (const child of shards.values()) {
      if (child.parentId === shard.id && child.status === 'waiting') startFollowing(child, 'TRIM_HORIZON');
    }
    wakeDiscovery();
    settleWaiters();
  };

  /**
   * Takes in the shards not seen before. The first time, LATEST starts every open shard at its tip
   * (iterators taken before start returns, so that every later write is delivered) and skips closed
   * ones; later, and always for TRIM_HORIZON, a shard is read from its start once its parent is done.
   */
  const discover = async (first: boolean) => {
    const startedAt = tick();
    const listed = await listShards();
    const known = new Set([...shards.keys(), ...listed.map((shard) => shard.ShardId)]);
    const latest: Array<Promise<void>> = [];
    for (const { ShardId: id, ParentShardId: parentId, SequenceNumberRange } of listed) {
      if (!id || shards.has(id)) continue;
      const shard: ShardState = { id, parentId, status: 'waiting', caughtUpAt: 0 };
      shards.set(id, shard);
      if (first && startingPosition === 'LATEST') {
        if (SequenceNumberRange?.EndingSequenceNumber) shard.status = 'done';
        else
          latest.push(
            iteratorFor(id, 'LATEST').then((iterator) => startFollowing(shard, 'LATEST', iterator)),
          );
        continue;
      }
      const parent = parentId && known.has(parentId) ? shards.get(parentId) : undefined;
      // a parent listed but not yet taken in is taken in by this loop, and starts its children when done
      const parentPending = parentId !== undefined && known.has(parentId) && parent?.status !== 'done';
      if (!parentPending) startFollowing(shard, 'TRIM_HORIZON');
    }
    await Promise.all(latest);
    discoveredAt = startedAt;
    settleWaiters();
  };

  // asked for while a listing is under way, the next one follows at once
  let discoveryWanted = false;
  let nap: AbortController | undefined;
  const wakeDiscovery = () => {
    discoveryWanted = true;
    nap?.abort();
  };
  const discoverForever = async () => {
    while (!stopped()) {
      if (!discoveryWanted) {
        nap = new AbortController();
        await sleep(DISCOVERY_INTERVAL_MS, undefined, { signal: nap.signal }).catch(() => undefined);
        nap = undefined;
      }
      discoveryWanted = false;
      if (stopped()) return;
      try {
        await discover(false);
      } catch (err) {
        if (!stopped()) logError(`${streamArn}: listing the stream's shards failed`, err);
      }
    }
  };

  await discover(true);
  const discovery = discoverForever();

  return {
    streamArn,
    stop: async () => {
      aborter.abort();
      wakeDiscovery();
      await discovery;
      while (followers.size > 0) await Promise.all(followers);
      for (const waiter of drainWaiters) waiter.reject(new Error(`${streamArn}: stopped before it drained`));
      drainWaiters.clear();
    },
    drained: () => {
      if (stopped()) return Promise.reject(new Error(`${streamArn}: stopped`));
      const asOf = tick();
      wakeDiscovery();
      return new Promise<void>((resolve, reject) => {
        drainWaiters.add({ asOf, resolve, reject });
      });
    },
  };
};
