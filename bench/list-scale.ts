import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DynamoDBDocumentClient,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { statusIndexAttributes } from '../shared/adapters/dynamo-keys.js';
import { DynamoRunList } from '../shared/adapters/dynamo-run-list.js';
import { DynamoRunStore } from '../shared/adapters/dynamo-run-store.js';
import type { RunStatus } from '../shared/domain/run.js';
import type { Caller } from '../shared/domain/tenancy.js';
import type { DirectoryRepository, RunListFilter, RunQueue } from '../shared/ports.js';
import { dispatchRequestSchema } from '../shared/schemas/api.js';
import { dispatchRun, type RunCommandDeps } from '../shared/usecases/runs.js';
import type { BenchCloud } from './support/cloud.js';
import { percentile } from './support/stats.js';

/**
 * (2) Does a filtered list page cost more as runs pile up? One account's table is filled with 1,000,
 * then 100,000 runs, each written exactly as a dispatch writes it (the dispatch use case and the run
 * repository produce the item; only the final status is then set, with the repository's own index
 * attributes), and the same page is read through the run repository each time.
 */

export const SIZES = [1_000, 100_000] as const;
const LARGEST = 100_000;
const SAMPLES = 300;
const WARM_UP = 50;
const SETTLE_MS = 3000;
const BATCH = 25;
const WRITERS = 16;
const CHUNK = 5_000;
const HISTORY_DAYS = 90;
const ACCOUNT = 'bench-list-account';
const PROJECT = 'bench-list-project';
const PODS = ['bench-pod-a', 'bench-pod-b'] as const;
/** One run in twenty of each: mostly completed, like a healthy account. */
const STATUSES: RunStatus[] = [
  ...Array<RunStatus>(14).fill('COMPLETED'),
  'FAILED',
  'FAILED',
  'FAILED',
  'STOPPED',
  'CANCELLED',
  'DONE',
];

/** The page a user sees with the "Completed" chip on, and the same chip with the rarer pod filtered. */
const FILTERS: Record<string, Omit<RunListFilter, 'accountId'>> = {
  status: { statuses: ['COMPLETED'], limit: 25 },
  statusAndPod: { statuses: ['COMPLETED'], podId: PODS[1], limit: 25 },
};

export interface ListScaleResult {
  /** per table size: p50 and p99 (ms) of each filter */
  pages: Record<string, Record<string, { p50Ms: number; p99Ms: number }>>;
  /** per table size: read units one page of each filter costs */
  readUnitsPerPage: Record<string, Record<string, number>>;
  /** p50 at 100,000 runs over p50 at 1,000, for the status filter */
  p50Ratio: number;
  loadSeconds: number;
  samples: number;
}

export interface Tenant {
  accountId: string;
  projectId: string;
}

const LIST_TENANT: Tenant = { accountId: ACCOUNT, projectId: PROJECT };

/**
 * Run items of `tenant` as the repository writes them, produced by the real dispatch path into a
 * capturing client, each then ended as a transition would end it.
 */
export const runItems = async (
  count: number,
  firstIndex: number,
  tenant: Tenant = LIST_TENANT,
): Promise<Record<string, unknown>[]> => {
  const items: Record<string, unknown>[] = [];
  const capture = {
    send: async (command: { input: TransactWriteCommandInput }) => {
      const put = command.input.TransactItems?.[0]?.Put;
      if (put?.Item) items.push(put.Item);
      return {};
    },
  } as unknown as DynamoDBDocumentClient;
  const now = Date.now();
  const spacingMs = (HISTORY_DAYS * 86_400_000) / LARGEST;
  let index = firstIndex;
  const directory = {
    getProject: async () => ({
      ...tenant,
      name: 'List benchmark',
      repos: ['https://github.com/example/app'],
      members: [{ userId: 'bench-user', role: 'member' }],
      updatedAt: new Date(now).toISOString(),
    }),
    getPod: async (_account: string, podId: string) => ({
      accountId: tenant.accountId,
      podId,
      name: podId,
      cpu: 1024,
      memoryMiB: 2048,
      agent: { kind: 'demo' as const },
      hooks: {},
      checkpoints: [],
      env: {},
      secrets: {},
      enabled: true,
      maxDurationSeconds: 3600,
      approvalWindowSeconds: 86_400,
      runBudgetMicroUsd: 0,
      updatedAt: new Date(now).toISOString(),
    }),
  } as unknown as DirectoryRepository;
  const deps = {
    runs: new DynamoRunStore(capture, 'capture'),
    directory,
    queue: { enqueue: async () => {} } satisfies RunQueue,
    // older runs first, so run ids (time-ordered) grow as a real table's do
    clock: { now: () => new Date(now - (LARGEST - index) * spacingMs) },
  } as unknown as RunCommandDeps;
  const caller: Caller = { accountId: tenant.accountId, userId: 'bench-user', accountRole: 'member' };
  for (; index < firstIndex + count; index++) {
    const request = dispatchRequestSchema.parse({
      itemId: `ITEM-${index}`,
      podId: PODS[index % 10 === 0 ? 1 : 0],
      mode: 'autopilot',
      prompt: 'Add a health check endpoint',
    });
    await dispatchRun(deps, caller, tenant.projectId, request);
  }
  // each run then ended: its status and the index attributes a transition to it writes
  return items.map((item, i) => {
    const status = STATUSES[(firstIndex + i) % STATUSES.length] as RunStatus;
    const { gQueued: _queued, ...rest } = item;
    const endedAt = new Date(Date.parse(String(item.createdAt)) + 600_000).toISOString();
    return {
      ...rest,
      ...statusIndexAttributes({ ...tenant, runId: String(item.runId) }, status),
      status,
      completedAt: endedAt,
      history: [...(item.history as unknown[]), { status, at: endedAt }],
    };
  });
};

/** Writes the items with batches from several writers at once. */
export const load = async (db: DynamoDBDocumentClient, table: string, items: Record<string, unknown>[]) => {
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < items.length) {
        let batch = items.slice(next, next + BATCH).map((Item) => ({ PutRequest: { Item } }));
        next += BATCH;
        while (batch.length > 0) {
          const out = await db.send(new BatchWriteCommand({ RequestItems: { [table]: batch } }));
          batch = (out.UnprocessedItems?.[table] ?? []) as typeof batch;
        }
      }
    }),
  );
};

/** Both filters, sample by sample in turn, so a pause of DynamoDB Local's JVM hits both alike. */
const timePages = async (repo: DynamoRunList) => {
  const samples = Object.fromEntries(Object.keys(FILTERS).map((name) => [name, [] as number[]]));
  for (let i = 0; i < WARM_UP + SAMPLES; i++) {
    for (const [name, filter] of Object.entries(FILTERS)) {
      const started = performance.now();
      const page = await repo.list({ ...filter, accountId: ACCOUNT });
      if (page.items.length === 0) throw new Error('the list page came back empty');
      if (i >= WARM_UP) samples[name]?.push(performance.now() - started);
    }
  }
  return Object.fromEntries(
    Object.entries(samples).map(([name, ms]) => [
      name,
      { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) },
    ]),
  );
};

/** Read units of one page of each filter, as DynamoDB would bill them. */
const unitsPerPage = async (bench: BenchCloud, repo: DynamoRunList) => {
  const units: Record<string, number> = {};
  bench.dynamo.setMetering(true);
  try {
    for (const [name, filter] of Object.entries(FILTERS)) {
      const before = bench.dynamo.totals().readUnits;
      await repo.list({ ...filter, accountId: ACCOUNT });
      units[name] = bench.dynamo.totals().readUnits - before;
    }
  } finally {
    bench.dynamo.setMetering(false);
  }
  return units;
};

export const measureListScale = async (
  bench: BenchCloud,
  log: (line: string) => void,
): Promise<ListScaleResult> => {
  const table = bench.cloud.endpoints.tableName;
  const repo = new DynamoRunList(bench.db, table);
  const metered = new DynamoRunList(
    DynamoDBDocumentClient.from(
      new DynamoDBClient({
        endpoint: bench.dynamo.url,
        region: bench.cloud.endpoints.region,
        credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
      }),
    ),
    table,
  );
  const pages: ListScaleResult['pages'] = {};
  const readUnits: ListScaleResult['readUnitsPerPage'] = {};
  let loaded = 0;
  let loadSeconds = 0;
  for (const size of SIZES) {
    const started = performance.now();
    // the next chunk is made while the last one is written: one keeps Node busy, the other the JVM
    let writing = Promise.resolve();
    for (let first = loaded; first < size; first += CHUNK) {
      const items = await runItems(Math.min(CHUNK, size - first), first);
      await writing;
      writing = load(bench.db, table, items);
    }
    await writing;
    loadSeconds += (performance.now() - started) / 1000;
    loaded = size;
    log(`  ${size.toLocaleString('en-US')} runs in the table (loaded in ${loadSeconds.toFixed(0)} s so far)`);
    // DynamoDB Local finishes its own work on the load (index upkeep, garbage collection) first
    await sleep(SETTLE_MS);
    pages[String(size)] = await timePages(repo);
    readUnits[String(size)] = await unitsPerPage(bench, metered);
  }
  const small = pages[String(SIZES[0])]?.status?.p50Ms ?? Number.NaN;
  const large = pages[String(LARGEST)]?.status?.p50Ms ?? Number.NaN;
  return { pages, readUnitsPerPage: readUnits, p50Ratio: large / small, loadSeconds, samples: SAMPLES };
};
