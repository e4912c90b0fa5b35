import { type DynamoDBDocumentClient, GetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { EMPTY_FEED, type FeedEvent, type FeedHead, headAfter, type NewFeedEvent } from '../domain/feed.js';
import type { FeedStore } from '../ports.js';
import { MAX_SEQ } from '../schemas/ids.js';
import { cancellationReasons, Expression, keys } from './dynamo-keys.js';
import { RunPacks } from './dynamo-packs.js';

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
    const packs = new RunPacks(this.db, this.tableName, (first) => packKey(runId, first));
    for await (const pack of packs.from(seq + 1, MAX_SEQ)) {
      for (const event of eventsOf(pack)) {
        if (event.seq > (found.at(-1)?.seq ?? seq) && found.length < limit) found.push(event);
      }
      if (found.length >= limit) break;
    }
    return found;
  }
}
