import { type DynamoDBDocumentClient, QueryCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import type { LedgerEntry } from '../domain/agent-batch.js';
import { NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import { spendHour } from '../domain/pricing.js';
import { TABLE } from '../manifest.js';
import type { HourlySpend, Settlement, SpendLedger, SpendScope } from '../ports.js';
import {
  backOff,
  cancellationReasons,
  Expression,
  isTransientCancellation,
  keys,
  MAX_ATTEMPTS,
  SK_PREFIX,
  shardOf,
  Update,
} from './dynamo-keys.js';
import { costAttribute } from './dynamo-run-item.js';

/*
 * What runs cost and what accounts spent, in the runs table:
 *
 *   RUN#<runId>  USAGE#<seq:10>    the priced usage lines of one event batch (`lines`, each with its seq,
 *                                  tokens, micro-USD and `priceTableVersion`) and their totals, keyed by
 *                                  the batch's first usage seq; written in the batch's one transaction
 *                                  with the run's ADDs, so the run's totals always equal the ledger.
 *   RUN#<runId>  USAGE#SETTLEMENT  the ledger's last entry: sandbox time and the per-run fee, once the run
 *                                  has ended.
 *   SPEND#<acct>#<shard> H#<YYYY-MM-DDTHH>
 *                                  the account's spend in that UTC hour, one shard of it: `totalMicroUsd`
 *                                  and, per project and pod, `project:<id>` and `pod:<id>`; ADDed in the
 *                                  same transaction as each priced entry, to the shard of its run, so
 *                                  an account's concurrent runs rarely write the same item. A trailing
 *                                  window is one Query per shard, in parallel, summed by hour (with
 *                                  SPEND#<acct>, where spend was written before the shards).
 */

/** Enough that a few concurrent runs seldom share a bucket; each is a Query of every window read. */
export const SPEND_SHARDS = 4;

const CONDITION_FAILED = 'ConditionalCheckFailed';
/** Spend buckets outlive every window read from them (30 days) with room to spare. */
const SPEND_BUCKET_TTL_SECONDS = 90 * 86_400;
const SPEND_TOTAL = 'totalMicroUsd';
const SPEND_BY_PROJECT = 'project:';
const SPEND_BY_POD = 'pod:';

/** The ADDs to the run's shard of the account's bucket for this hour, as a transaction action; none without spend. */
export const spendUpdates = (
  tableName: string,
  runId: string,
  scope: SpendScope,
  amountMicroUsd: number,
  now: Date,
) => {
  if (amountMicroUsd <= 0) return [];
  const hour = spendHour(now);
  const update = new Update()
    .add(SPEND_TOTAL, amountMicroUsd)
    .add(`${SPEND_BY_PROJECT}${scope.projectId}`, amountMicroUsd)
    .add(`${SPEND_BY_POD}${scope.podId}`, amountMicroUsd)
    .set('hour', hour)
    .set(
      TABLE.timeToLiveAttribute,
      Math.floor(Date.parse(`${hour}:00:00Z`) / 1000) + SPEND_BUCKET_TTL_SECONDS,
    );
  return [
    {
      Update: {
        TableName: tableName,
        Key: keys.spendHour(scope.accountId, hour, shardOf(runId, SPEND_SHARDS)),
        UpdateExpression: update.expression(),
        ...update.attributes(),
      },
    },
  ];
};

/** A batch's ledger item: its priced lines and their totals. */
export const ledgerItem = (runId: string, lines: LedgerEntry[]): Record<string, unknown> => {
  const [first] = lines;
  if (!first) throw new Error('a ledger item needs at least one line');
  const sum = (pick: (line: LedgerEntry) => number) => lines.reduce((n, line) => n + pick(line), 0);
  return {
    ...keys.usage(runId, first.seq),
    runId,
    seq: first.seq,
    lines: lines.map(({ charge, ...line }) =>
      charge
        ? {
            ...line,
            costMicroUsd: charge.tokenMicroUsd,
            feeMicroUsd: charge.feeMicroUsd,
            totalMicroUsd: charge.totalMicroUsd,
            priceTableVersion: charge.priceTableVersion,
          }
        : line,
    ),
    costMicroUsd: sum((line) => line.charge?.tokenMicroUsd ?? 0),
    feeMicroUsd: sum((line) => line.charge?.feeMicroUsd ?? 0),
    totalMicroUsd: sum((line) => line.charge?.totalMicroUsd ?? 0),
  };
};

export class DynamoSpendLedger implements SpendLedger {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: { now(): Date } = { now: () => new Date() },
  ) {}

  async settle(runId: string, settlement: Settlement, scope: SpendScope): Promise<boolean> {
    const now = this.clock.now();
    const entry = {
      ...keys.settlement(runId),
      runId,
      from: 'settlement',
      at: now.toISOString(),
      ...settlement,
    };
    const update = new Update()
      .add(costAttribute('sandboxCpuUsd'), settlement.cpuMicroUsd)
      .add(costAttribute('sandboxMemoryUsd'), settlement.memoryMicroUsd)
      .add(costAttribute('feeUsd'), settlement.feeMicroUsd)
      .add(costAttribute('totalUsd'), settlement.totalMicroUsd)
      .add('version', 1)
      .set('updatedAt', now.toISOString());
    const runUpdate = {
      TableName: this.tableName,
      Key: keys.run(runId),
      UpdateExpression: update.expression(),
      ConditionExpression: `attribute_exists(${update.name('pk')})`,
      ...update.attributes(),
    };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.tableName,
                  Item: entry,
                  ConditionExpression: 'attribute_not_exists(pk)',
                },
              },
              { Update: runUpdate },
              ...spendUpdates(this.tableName, runId, scope, settlement.totalMicroUsd, now),
            ],
          }),
        );
        return true;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        if (reasons[0]?.Code === CONDITION_FAILED) return false;
        if (reasons[1]?.Code === CONDITION_FAILED) throw new NotFoundError('run', runId);
        if (!isTransientCancellation(reasons)) throw err;
        if (attempt >= MAX_ATTEMPTS) throw new ServiceUnavailableError('the run could not be settled; retry');
        await backOff(attempt);
      }
    }
  }

  async hourlySpend(accountId: string, fromHour: string, toHour: string): Promise<HourlySpend[]> {
    const shards = [undefined, ...Array.from({ length: SPEND_SHARDS }, (_, shard) => shard)];
    const byHour = new Map<string, HourlySpend>();
    for (const shard of await Promise.all(
      shards.map((s) => this.shardSpend(accountId, fromHour, toHour, s)),
    )) {
      for (const bucket of shard) {
        const sum = byHour.get(bucket.hour);
        if (!sum) {
          byHour.set(bucket.hour, bucket);
          continue;
        }
        sum.totalMicroUsd += bucket.totalMicroUsd;
        for (const [id, n] of Object.entries(bucket.byProject))
          sum.byProject[id] = (sum.byProject[id] ?? 0) + n;
        for (const [id, n] of Object.entries(bucket.byPod)) sum.byPod[id] = (sum.byPod[id] ?? 0) + n;
      }
    }
    return [...byHour.values()].sort((a, b) => a.hour.localeCompare(b.hour));
  }

  private async shardSpend(
    accountId: string,
    fromHour: string,
    toHour: string,
    shard: number | undefined,
  ): Promise<HourlySpend[]> {
    const expr = new Expression();
    const first = keys.spendHour(accountId, fromHour, shard);
    const keyCondition = `${expr.name('pk')} = ${expr.value(first.pk)} AND ${expr.name('sk')} BETWEEN ${expr.value(first.sk)} AND ${expr.value(keys.spendHour(accountId, toHour, shard).sk)}`;
    const hours: HourlySpend[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: keyCondition,
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
          ...expr.attributes(),
        }),
      );
      for (const item of page.Items ?? []) {
        const bucket: HourlySpend = {
          hour: String(item.sk).slice(SK_PREFIX.spendHour.length),
          totalMicroUsd: Number(item[SPEND_TOTAL] ?? 0),
          byProject: {},
          byPod: {},
        };
        for (const [name, value] of Object.entries(item)) {
          if (name.startsWith(SPEND_BY_PROJECT))
            bucket.byProject[name.slice(SPEND_BY_PROJECT.length)] = Number(value);
          else if (name.startsWith(SPEND_BY_POD))
            bucket.byPod[name.slice(SPEND_BY_POD.length)] = Number(value);
        }
        hours.push(bucket);
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return hours;
  }
}
