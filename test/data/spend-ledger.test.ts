import { randomUUID } from 'node:crypto';
import { GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import { DynamoSpendLedger } from '../../shared/adapters/dynamo-spend-ledger.js';
import {
  DEFAULT_PRICE_TABLE,
  priceSandbox,
  priceTokens,
  type TokenCounts,
} from '../../shared/domain/pricing.js';
import type { AgentEvent, Settlement } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';
import { ownRunFactory, snapshotFactory } from '../support/factories.js';
import { recordBatch } from '../support/record-batch.js';

const table = useTestTable();

/** The run store and the ledger as they would be at `iso`: batches are priced in that hour. */
const repoAt = (iso: string) => {
  const now = new Date(iso);
  const store = new DynamoRunStore(table.doc, table.tableName, { now: () => now });
  const ledger = new DynamoSpendLedger(table.doc, table.tableName, { now: () => now });
  const price = (model: string, tokens: TokenCounts) => priceTokens(DEFAULT_PRICE_TABLE, model, tokens);
  return {
    get: (runId: string) => store.get(runId),
    create: (...args: Parameters<DynamoRunStore['create']>) => store.create(...args),
    record: (runId: string, events: AgentEvent[], priced = true) =>
      recordBatch(store, runId, events, { now, price: priced ? price : undefined }),
    settle: (...args: Parameters<DynamoSpendLedger['settle']>) => ledger.settle(...args),
    hourlySpend: (...args: Parameters<DynamoSpendLedger['hourlySpend']>) => ledger.hourlySpend(...args),
  };
};

const seed = async (repo: ReturnType<typeof repoAt>) => {
  const run = ownRunFactory();
  const snapshot = snapshotFactory();
  await repo.create(run, snapshot);
  return run;
};

/** The ledger's items: a batch's priced lines together, and the settlement. */
const ledgerOf = async (runId: string) => {
  const out = await table.doc.send(
    new QueryCommand({
      TableName: table.tableName,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :usage)',
      ExpressionAttributeValues: { ':pk': `RUN#${runId}`, ':usage': 'USAGE#' },
      ConsistentRead: true,
    }),
  );
  return out.Items ?? [];
};

/** Every priced line of the ledger: each batch item's lines, and the settlement. */
const linesOf = async (runId: string) =>
  (await ledgerOf(runId)).flatMap((item) =>
    Array.isArray(item.lines) ? (item.lines as Record<string, unknown>[]) : [item],
  );

const sum = (items: Record<string, unknown>[], field: string) =>
  items.reduce((n, item) => n + Number(item[field] ?? 0), 0);

const at = (seq: number) => new Date(1_700_000_000_000 + seq * 1000).toISOString();

describe('the priced usage ledger', () => {
  it('keeps the run’s cost and the account’s hourly spend equal to the ledger under concurrent batches', async () => {
    const repo = repoAt('2026-03-01T05:30:00.000Z');
    const run = await seed(repo);
    const batches: AgentEvent[][] = Array.from({ length: 10 }, (_, b) =>
      Array.from({ length: 12 }, (_, i): AgentEvent => {
        const seq = b * 12 + i + 1;
        return i % 3 === 0
          ? {
              seq,
              at: at(seq),
              type: 'step',
              kind: 'assistant',
              content: `step ${seq}`,
              model: 'claude-haiku-4-5',
              usage: { inputTokens: 1000 + seq, outputTokens: 7 * seq, cacheReadTokens: 3 },
            }
          : {
              seq,
              at: at(seq),
              type: 'usage',
              model: seq % 2 ? 'claude-sonnet-4-5-20250929' : 'claude-opus-4-1',
              inputTokens: 12_345 + seq,
              outputTokens: 678 * seq,
              cacheWriteTokens: 91,
            };
      }),
    );

    await Promise.all(batches.map((batch) => repo.record(run.runId, batch)));
    // a pod re-sending batches it got no answer for changes nothing
    await Promise.all(batches.slice(0, 3).map((b) => repo.record(run.runId, b)));

    const ledger = await linesOf(run.runId);
    expect(ledger).toHaveLength(120);
    expect(new Set(ledger.map((e) => e.priceTableVersion))).toEqual(new Set(['builtin-2025-11']));
    const stored = await repo.get(run.runId);
    expect(stored?.cost).toEqual({
      tokenUsd: sum(ledger, 'costMicroUsd'),
      sandboxCpuUsd: 0,
      sandboxMemoryUsd: 0,
      feeUsd: sum(ledger, 'feeMicroUsd'),
      totalUsd: sum(ledger, 'totalMicroUsd'),
    });
    for (const model of ['claude-haiku-4-5', 'claude-sonnet-4-5-20250929', 'claude-opus-4-1']) {
      const entries = ledger.filter((e) => e.model === model);
      expect(stored?.usage[model]?.costMicroUsd).toBe(sum(entries, 'costMicroUsd'));
      expect(stored?.usage[model]?.inputTokens).toBe(sum(entries, 'inputTokens'));
    }
    // each entry is the price of its own tokens
    const first = ledger.find((e) => e.seq === 2);
    expect(first?.costMicroUsd).toBe(
      priceTokens(DEFAULT_PRICE_TABLE, 'claude-opus-4-1', {
        inputTokens: 12_347,
        outputTokens: 1356,
        cacheReadTokens: 0,
        cacheWriteTokens: 91,
      }).tokenMicroUsd,
    );
    const pack = await table.doc.send(
      new GetCommand({ TableName: table.tableName, Key: { pk: `RUN#${run.runId}`, sk: 'STEPS#0000000001' } }),
    );
    expect(pack.Item?.steps[0]).toMatchObject({
      seq: 1,
      costMicroUsd: ledger.find((e) => e.seq === 1)?.costMicroUsd,
    });

    const hours = await repo.hourlySpend(run.accountId, '2026-03-01T00', '2026-03-01T23');
    expect(hours).toEqual([
      {
        hour: '2026-03-01T05',
        totalMicroUsd: stored?.cost.totalUsd,
        byProject: { 'proj-1': stored?.cost.totalUsd },
        byPod: { 'pod-a': stored?.cost.totalUsd },
      },
    ]);
  });

  it("spreads an account's concurrent runs over the spend shards and sums them, and the spend from before them, by hour", async () => {
    const repo = repoAt('2026-03-01T05:30:00.000Z');
    const accountId = `acct-${randomUUID().slice(0, 8)}`;
    const runs = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const run = ownRunFactory({ accountId });
        await repo.create(run, snapshotFactory());
        return run;
      }),
    );
    await Promise.all(
      runs.map((run) =>
        repo.record(run.runId, [
          {
            seq: 1,
            at: at(1),
            type: 'usage',
            model: 'claude-sonnet-4-5',
            inputTokens: 1000,
            outputTokens: 0,
          },
        ]),
      ),
    );
    const shardsWritten = await Promise.all(
      [0, 1, 2, 3].map(async (shard) => {
        const out = await table.doc.send(
          new QueryCommand({
            TableName: table.tableName,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': `SPEND#${accountId}#${shard}` },
          }),
        );
        return (out.Items?.length ?? 0) > 0;
      }),
    );
    expect(shardsWritten.filter(Boolean).length).toBeGreaterThan(1);
    // what was spent in that hour before the shards
    await table.doc.send(
      new PutCommand({
        TableName: table.tableName,
        Item: {
          pk: `SPEND#${accountId}`,
          sk: 'H#2026-03-01T05',
          totalMicroUsd: 5,
          'project:proj-1': 5,
          'pod:pod-b': 5,
        },
      }),
    );

    // 1,000 Sonnet input tokens: 3,000 and its fee of 60, for each run
    expect(await repo.hourlySpend(accountId, '2026-03-01T00', '2026-03-01T23')).toEqual([
      {
        hour: '2026-03-01T05',
        totalMicroUsd: 8 * 3060 + 5,
        byProject: { 'proj-1': 8 * 3060 + 5 },
        byPod: { 'pod-a': 8 * 3060, 'pod-b': 5 },
      },
    ]);
  });

  it('records usage unpriced when no pricing is given', async () => {
    const repo = repoAt('2026-03-01T05:30:00.000Z');
    const run = await seed(repo);
    await repo.record(
      run.runId,
      [{ seq: 1, at: at(1), type: 'usage', model: 'm', inputTokens: 10, outputTokens: 1 }],
      false,
    );
    const [entry] = await linesOf(run.runId);
    expect(entry?.priceTableVersion).toBeUndefined();
    expect((await repo.get(run.runId))?.cost.totalUsd).toBe(0);
    expect(await repo.hourlySpend(run.accountId, '2026-03-01T00', '2026-03-01T23')).toEqual([]);
  });
});

describe('settling a run', () => {
  const settlementOf = (runningMs: number): Settlement => {
    const use = { cpu: 1024, memoryMiB: 2048, architecture: 'ARM64' as const, runningMs };
    return { ...use, ...priceSandbox(DEFAULT_PRICE_TABLE, use) };
  };

  it('charges the sandbox and fee once, to the run, its ledger and the hour it settled in', async () => {
    const early = repoAt('2026-03-01T05:59:00.000Z');
    const run = await seed(early);
    const scope = { accountId: run.accountId, projectId: run.projectId, podId: run.podId };
    await early.record(run.runId, [
      { seq: 1, at: at(1), type: 'usage', model: 'claude-sonnet-4-5', inputTokens: 100_000, outputTokens: 0 },
    ]);
    const late = repoAt('2026-03-01T06:01:00.000Z');
    const settlement = settlementOf(90_500);
    expect(await late.settle(run.runId, settlement, scope)).toBe(true);
    expect(await late.settle(run.runId, settlementOf(999_000), scope)).toBe(false);

    const stored = await late.get(run.runId);
    // 100,000 Sonnet input tokens: 300,000 + 2 % fee 6,000; the sandbox: 818 + 180 + fee 10,020
    expect(stored?.cost).toEqual({
      tokenUsd: 300_000,
      sandboxCpuUsd: 818,
      sandboxMemoryUsd: 180,
      feeUsd: 16_020,
      totalUsd: 317_018,
    });
    const ledger = await ledgerOf(run.runId);
    expect(ledger.map((e) => e.sk)).toEqual(['USAGE#0000000001', 'USAGE#SETTLEMENT']);
    expect(sum(ledger, 'totalMicroUsd')).toBe(317_018);
    expect(ledger[1]).toMatchObject({
      billedSeconds: 91,
      runningMs: 90_500,
      priceTableVersion: 'builtin-2025-11',
    });
    expect(await late.hourlySpend(run.accountId, '2026-03-01T05', '2026-03-01T06')).toEqual([
      {
        hour: '2026-03-01T05',
        totalMicroUsd: 306_000,
        byProject: { 'proj-1': 306_000 },
        byPod: { 'pod-a': 306_000 },
      },
      {
        hour: '2026-03-01T06',
        totalMicroUsd: 11_018,
        byProject: { 'proj-1': 11_018 },
        byPod: { 'pod-a': 11_018 },
      },
    ]);
    // the range is inclusive at both ends and nothing outside it is read
    expect(
      (await late.hourlySpend(run.accountId, '2026-03-01T06', '2026-03-02T00')).map((h) => h.hour),
    ).toEqual(['2026-03-01T06']);
  });
});
