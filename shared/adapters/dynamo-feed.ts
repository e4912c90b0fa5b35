import {
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { EMPTY_FEED, type FeedEvent, type FeedHead, headAfter, type NewFeedEvent } from '../domain/feed.js';
import type { FeedStore } from '../ports.js';
import { cancellationReasons, Expression, keys } from './dynamo-keys.js';

/*
 * A run's feed in the run's partition:
 *
 *   RUN#<runId>  FEED#<seq:10>  the events of one change from this seq on (`events`, with `first` and
 *                               `last`), packed into as few items as fit, as steps are
 *   RUN#<runId>  FEEDHEAD       `seq`, `lastChange`, `lastStepSeq` (FeedHead)
 *
 * The packs and the head are written in one transaction, on the condition that the head is still the
 * one the events were numbered from. The stream of the table feeds nothing from these items (its
 * filter takes only the run item and step packs), so writing them starts no further change.
 */

/** A pack's events stay under this many bytes of JSON, well under DynamoDB's 400 KB. */
const FEED_PACK_BYTES = 300 * 1024;

const headKey = (runId: string) => ({ pk: keys.run(runId).pk, sk: 'FEEDHEAD' });
const packKey = (runId: string, first: number) => ({
  pk: keys.run(runId).pk,
  sk: `FEED#${String(first).padStart(10, '0')}`,
});

const packs = (events: FeedEvent[]): FeedEvent[][] => {
  const out: FeedEvent[][] = [];
  let bytes = 0;
  for (const event of events) {
    const size = Buffer.byteLength(JSON.stringify(event), 'utf8');
    const current = out.at(-1);
    if (current && bytes + size <= FEED_PACK_BYTES) {
      current.push(event);
      bytes += size;
    } else {
      out.push([event]);
      bytes = size;
    }
  }
  return out;
};

const eventsOf = (item: Record<string, unknown> | undefined): FeedEvent[] =>
  Array.isArray(item?.events) ? (item.events as FeedEvent[]) : [];

export class DynamoFeedStore implements FeedStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async head(runId: string): Promise<FeedHead> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: headKey(runId), ConsistentRead: true }),
    );
    const item = out.Item;
    return item
      ? { seq: Number(item.seq), lastChange: String(item.lastChange), lastStepSeq: Number(item.lastStepSeq) }
      : { ...EMPTY_FEED };
  }

  async append(
    runId: string,
    head: FeedHead,
    events: NewFeedEvent[],
    change: string,
  ): Promise<FeedEvent[] | false> {
    const numbered = events.map((event, i) => ({ seq: head.seq + 1 + i, ...event }));
    const next = headAfter(head, change, numbered);
    const condition = new Expression();
    try {
      await this.db.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.tableName,
                Item: { ...headKey(runId), runId, ...next },
                ConditionExpression:
                  head.lastChange === ''
                    ? `attribute_not_exists(${condition.name('pk')})`
                    : `${condition.name('lastChange')} = ${condition.value(head.lastChange)}`,
                ...condition.attributes(),
              },
            },
            ...packs(numbered).map((pack) => ({
              Put: {
                TableName: this.tableName,
                Item: {
                  ...packKey(runId, pack[0]?.seq ?? 0),
                  runId,
                  first: pack[0]?.seq,
                  last: pack.at(-1)?.seq,
                  events: pack,
                },
              },
            })),
          ],
        }),
      );
      return numbered;
    } catch (err) {
      if (cancellationReasons(err)?.[0]?.Code === 'ConditionalCheckFailed') return false;
      throw err;
    }
  }

  async after(runId: string, seq: number, limit: number): Promise<FeedEvent[]> {
    const found: FeedEvent[] = [];
    const take = (events: FeedEvent[]) => {
      for (const event of events)
        if (event.seq > (found.at(-1)?.seq ?? seq) && found.length < limit) found.push(event);
    };
    const pk = keys.run(runId).pk;
    // the pack holding seq + 1, if one does: the last one starting at or before it
    const before = new Expression();
    const holding = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: `${before.name('pk')} = ${before.value(pk)} AND ${before.name('sk')} BETWEEN ${before.value(packKey(runId, 0).sk)} AND ${before.value(packKey(runId, seq + 1).sk)}`,
        ScanIndexForward: false,
        Limit: 1,
        ConsistentRead: true,
        ...before.attributes(),
      }),
    );
    take(eventsOf(holding.Items?.[0]));
    const range = new Expression();
    const keyCondition = `${range.name('pk')} = ${range.value(pk)} AND ${range.name('sk')} BETWEEN ${range.value(packKey(runId, seq + 2).sk)} AND ${range.value(packKey(runId, 9_999_999_999).sk)}`;
    let startKey: Record<string, unknown> | undefined;
    while (found.length < limit) {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: keyCondition,
          ConsistentRead: true,
          Limit: 10,
          ExclusiveStartKey: startKey,
          ...range.attributes(),
        }),
      );
      for (const item of page.Items ?? []) take(eventsOf(item));
      startKey = page.LastEvaluatedKey;
      if (!startKey) break;
    }
    return found;
  }
}
