import { type AttributeValue, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { CALLER_HEADER } from '../../infra/local/dynamodb-front.js';
import { TABLE } from '../../shared/manifest.js';
import { type Answer, type Exchange, type Forward, type ProxyServer, startProxy } from './proxy.js';

/**
 * Read and write units, counted the way on-demand DynamoDB bills them, for every request the handlers
 * make while metering.
 * - Reads: DynamoDB Local answers `ReturnConsumedCapacity: INDEXES` faithfully for reads (item size,
 *   consistency, index reads), so the meter asks for it and sums it (transactional reads count twice).
 * - Writes: DynamoDB Local's figures for transactions are not AWS's (three small puts in one
 *   transaction come back as 2 units, not 6), so writes are priced from the items themselves: each
 *   written item is read just before and after the write, under a per-item lock so concurrent writers
 *   cannot blur the difference. The table write costs 1 unit per KB of the larger of the two images
 *   (twice that in a transaction); each list index whose entry appears, disappears or changes costs
 *   1 unit per KB of the entry, a key change being a delete plus a put. A write its condition refused
 *   is billed all the same, at the item's size.
 *
 * The functions' DynamoDB front names the caller of each request, so units are also counted per
 * function; the benchmark's own requests, straight to DynamoDB Local, never pass the meter.
 */

/** What one function's requests cost, while metering. */
export interface FunctionCapacity {
  readUnits: number;
  /** including index writes */
  writeUnits: number;
  /** read or write units per operation */
  units: Record<string, number>;
}

export interface CapacityTotals {
  readUnits: number;
  /** including index writes */
  writeUnits: number;
  indexWriteUnits: number;
  /** conditional writes refused (still billed) */
  refusedWrites: number;
  /** requests per operation, while metering */
  requests: Record<string, number>;
  /** read or write units per operation, while metering */
  units: Record<string, number>;
  /** by calling function, as the DynamoDB front names it (`unknown` for a request it did not pass) */
  byFunction: Record<string, FunctionCapacity>;
}

export interface DynamoMeter {
  /** point the handlers' `AWS_ENDPOINT_URL_DYNAMODB` here */
  url: string;
  /**
   * Requests and capacity are counted only while metering: the reads around each write slow writes
   * down, so otherwise connections pass straight through. Switch only while no request is in flight.
   */
  setMetering(on: boolean): void;
  totals(): CapacityTotals;
  close(): Promise<void>;
}

type Wire = Record<string, unknown>;
type Item = Record<string, AttributeValue>;

const TARGET_PREFIX = 'DynamoDB_20120810.';
const READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);
const TRANSACTIONS = new Set(['TransactGetItems', 'TransactWriteItems']);
const KB = 1024;

const utf8 = (text: string) => Buffer.byteLength(text, 'utf8');

/** Bytes of a number as DynamoDB stores it: about one byte per two significant digits, plus one. */
const numberSize = (n: string) => {
  const digits = n
    .replace(/^[-+]/, '')
    .replace(/e.*$/i, '')
    .replace('.', '')
    .replace(/^0+/, '')
    .replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
};

/** DynamoDB's item size rules, for values in wire form (`{S}`, `{N}`, ...) or as the SDK returns them. */
export const valueSize = (value: unknown): number => {
  const v = value as Record<string, unknown>;
  if (typeof v.S === 'string') return utf8(v.S);
  if (typeof v.N === 'string') return numberSize(v.N);
  if (v.B !== undefined)
    return typeof v.B === 'string' ? Buffer.from(v.B, 'base64').length : (v.B as Uint8Array).length;
  if (v.BOOL !== undefined || v.NULL !== undefined) return 1;
  if (Array.isArray(v.SS)) return (v.SS as string[]).reduce((n, s) => n + utf8(s), 0);
  if (Array.isArray(v.NS)) return (v.NS as string[]).reduce((n, s) => n + numberSize(s), 0);
  if (Array.isArray(v.BS)) return (v.BS as unknown[]).reduce<number>((n, b) => n + valueSize({ B: b }), 0);
  if (Array.isArray(v.L)) return 3 + (v.L as unknown[]).reduce<number>((n, e) => n + 1 + valueSize(e), 0);
  if (v.M && typeof v.M === 'object') return 3 + itemSize(v.M as Wire) + Object.keys(v.M).length;
  return 0;
};

export const itemSize = (item: Wire): number =>
  Object.entries(item).reduce((n, [name, value]) => n + utf8(name) + valueSize(value), 0);

/** A table write: 1 unit per KB of the larger of the item before and after (at least 1). */
const writeUnitsFor = (...images: (Wire | undefined)[]) =>
  Math.max(1, ...images.map((item) => Math.ceil(itemSize(item ?? {}) / KB)));

/** The index entry an item has in each list index (keys and projected attributes), if any. */
const indexEntry = (item: Wire | undefined, index: (typeof TABLE.globalSecondaryIndexes)[number]) => {
  if (!item || item[index.partitionKey] === undefined || item[index.sortKey] === undefined) return undefined;
  const names = [
    TABLE.partitionKey,
    TABLE.sortKey,
    index.partitionKey,
    index.sortKey,
    ...TABLE.projectedAttributes,
  ];
  const entry: Wire = {};
  for (const name of names) if (item[name] !== undefined) entry[name] = item[name];
  return entry;
};

/** Key order does not matter; the SDK and the wire spell the same value alike (`{ S: '...' }`). */
const canonical = (value: unknown): unknown =>
  value && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array)
    ? Object.fromEntries(
        Object.keys(value)
          .sort()
          .map((k) => [k, canonical((value as Wire)[k])]),
      )
    : value;

const same = (a: Wire, b: Wire) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

/** Index write units a change from `before` to `after` costs, over all list indexes. */
export const indexWriteUnits = (before: Wire | undefined, after: Wire | undefined): number => {
  let units = 0;
  for (const index of TABLE.globalSecondaryIndexes) {
    const old = indexEntry(before, index);
    const now = indexEntry(after, index);
    const cost = (entry: Wire) => Math.max(1, Math.ceil(itemSize(entry) / KB));
    if (old && now) {
      const moved = !same(
        { k: old[index.partitionKey], s: old[index.sortKey] },
        { k: now[index.partitionKey], s: now[index.sortKey] },
      );
      if (moved) units += cost(old) + cost(now);
      else if (!same(old, now)) units += cost(now);
    } else if (old) units += cost(old);
    else if (now) units += cost(now);
  }
  return units;
};

interface WrittenItem {
  table: string;
  key: Wire;
  /** the item a put writes, to size a refused put */
  item?: Wire;
}

const keyOf = (item: Wire): Wire => ({
  [TABLE.partitionKey]: item[TABLE.partitionKey],
  [TABLE.sortKey]: item[TABLE.sortKey],
});

/** The items a write request touches. */
const writtenItems = (operation: string, input: Wire): WrittenItem[] => {
  const table = String(input.TableName ?? '');
  switch (operation) {
    case 'PutItem':
      return [{ table, key: keyOf(input.Item as Wire), item: input.Item as Wire }];
    case 'UpdateItem':
    case 'DeleteItem':
      return [{ table, key: input.Key as Wire }];
    case 'TransactWriteItems':
      return (input.TransactItems as Wire[]).flatMap((action): WrittenItem[] => {
        const put = action.Put as Wire | undefined;
        if (put)
          return [{ table: String(put.TableName), key: keyOf(put.Item as Wire), item: put.Item as Wire }];
        const change = (action.Update ?? action.Delete) as Wire | undefined;
        return change ? [{ table: String(change.TableName), key: change.Key as Wire }] : [];
      });
    case 'BatchWriteItem':
      return Object.entries(input.RequestItems as Record<string, Wire[]>).flatMap(([name, requests]) =>
        requests.map((r) => {
          const put = r.PutRequest as Wire | undefined;
          if (put) return { table: name, key: keyOf(put.Item as Wire), item: put.Item as Wire };
          return { table: name, key: (r.DeleteRequest as Wire).Key as Wire };
        }),
      );
    default:
      return [];
  }
};

const reportedUnits = (consumed: unknown): number =>
  (Array.isArray(consumed) ? consumed : consumed ? [consumed] : []).reduce<number>(
    (n, c) => n + Number((c as { CapacityUnits?: number }).CapacityUnits ?? 0),
    0,
  );

export const startDynamoMeter = async (target: string): Promise<DynamoMeter> => {
  const direct = new DynamoDBClient({
    endpoint: target,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  let metering = false;
  const totals: CapacityTotals = {
    readUnits: 0,
    writeUnits: 0,
    indexWriteUnits: 0,
    refusedWrites: 0,
    requests: {},
    units: {},
    byFunction: {},
  };
  const charge = (caller: string, operation: string, kind: 'readUnits' | 'writeUnits', units: number) => {
    totals[kind] += units;
    totals.units[operation] = (totals.units[operation] ?? 0) + units;
    const fn = totals.byFunction[caller] ?? { readUnits: 0, writeUnits: 0, units: {} };
    totals.byFunction[caller] = fn;
    fn[kind] += units;
    fn.units[operation] = (fn.units[operation] ?? 0) + units;
  };
  const locks = new Map<string, Promise<void>>();

  /** Runs `work` holding every item's lock, taken in one order so two writers never wait on each other. */
  const holding = async <T>(names: string[], work: () => Promise<T>): Promise<T> => {
    const sorted = [...new Set(names)].sort();
    const releases: (() => void)[] = [];
    for (const name of sorted) {
      const previous = locks.get(name) ?? Promise.resolve();
      let release = () => {};
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      const chained = previous.then(() => mine);
      locks.set(name, chained);
      releases.push(() => {
        release();
        if (locks.get(name) === chained) locks.delete(name);
      });
      await previous;
    }
    try {
      return await work();
    } finally {
      for (const release of releases) release();
    }
  };

  const read = async (item: WrittenItem): Promise<Wire | undefined> => {
    const out = await direct.send(
      new GetItemCommand({ TableName: item.table, Key: item.key as Item, ConsistentRead: true }),
    );
    return out.Item as Wire | undefined;
  };

  const metered = async (operation: string, exchange: Exchange, forward: Forward): Promise<Answer> => {
    const header = exchange.headers[CALLER_HEADER];
    const caller = typeof header === 'string' ? header : 'unknown';
    const input = JSON.parse(exchange.body.toString('utf8') || '{}') as Wire;
    const factor = TRANSACTIONS.has(operation) ? 2 : 1;
    if (!WRITES.has(operation)) {
      const answer = await forward(
        Buffer.from(JSON.stringify({ ...input, ReturnConsumedCapacity: 'INDEXES' })),
      );
      if (answer.status === 200 && READS.has(operation)) {
        const output = JSON.parse(answer.body.toString('utf8')) as Wire;
        charge(caller, operation, 'readUnits', factor * reportedUnits(output.ConsumedCapacity));
      }
      return answer;
    }
    const items = writtenItems(operation, input);
    return holding(
      items.map((i) => `${i.table}|${JSON.stringify(i.key)}`),
      async () => {
        const before = await Promise.all(items.map(read));
        const answer = await forward();
        if (answer.status === 200) {
          const after = await Promise.all(items.map(read));
          const tableUnits = items.reduce((n, _, i) => n + writeUnitsFor(before[i], after[i]), 0);
          const indexUnits = items.reduce((n, _, i) => n + indexWriteUnits(before[i], after[i]), 0);
          charge(caller, operation, 'writeUnits', factor * tableUnits + indexUnits);
          totals.indexWriteUnits += indexUnits;
          return answer;
        }
        const output = JSON.parse(answer.body.toString('utf8') || '{}') as Wire;
        if (/ConditionalCheckFailed|TransactionCanceled/.test(String(output.__type))) {
          totals.refusedWrites += 1;
          const units = items.reduce((n, item, i) => n + writeUnitsFor(before[i] ?? item.item), 0);
          charge(caller, operation, 'writeUnits', factor * units);
        }
        return answer;
      },
    );
  };

  const proxy: ProxyServer = await startProxy(
    target,
    async (exchange, forward) => {
      const target = exchange.headers['x-amz-target'];
      const operation =
        typeof target === 'string' && target.startsWith(TARGET_PREFIX)
          ? target.slice(TARGET_PREFIX.length)
          : undefined;
      if (!operation) return forward();
      totals.requests[operation] = (totals.requests[operation] ?? 0) + 1;
      if (!READS.has(operation) && !WRITES.has(operation)) return forward();
      return metered(operation, exchange, forward);
    },
    () => !metering,
  );

  return {
    url: proxy.url,
    setMetering: (on) => {
      if (on === metering) return;
      metering = on;
      proxy.resetConnections();
    },
    totals: () => structuredClone(totals),
    close: async () => {
      await proxy.close();
      direct.destroy();
    },
  };
};
