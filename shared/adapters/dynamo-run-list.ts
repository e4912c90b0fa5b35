import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  QueryCommand,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ServiceUnavailableError } from '../domain/errors.js';
import { runIdLowerBound } from '../domain/ids.js';
import { isTerminal, type Run } from '../domain/run.js';
import { type IndexName, TABLE } from '../manifest.js';
import type { RunList, RunListFilter, RunPage } from '../ports.js';
import { backOff, Expression, indexKeys, keys, MAX_ATTEMPTS } from './dynamo-keys.js';
import { fromRunItem } from './dynamo-run-item.js';

/*
 * The run lists, from the table's list indexes: gAcct A#<acct>, gAcctStatus A#<acct>#<status>,
 * gProj P#<acct>#<project>, gProjStatus P#<acct>#<project>#<status>, gAcctPod A#<acct>#<pod>,
 * gAcctSource A#<acct>#<source>, all sorted by runId (a ULID: time order); and gQueued, set only while
 * a run is QUEUED, for the sweeper. The indexes carry keys and a few attributes; the runs themselves
 * are read from the table.
 */

const BATCH_GET_KEYS = 100;
/** Index page size when a FilterExpression may drop items after the read. */
const FILTERED_PAGE_SIZE = 200;
/** The oldest runs in the index read for the oldest still active: the index lags the runs that just ended. */
const OLDEST_ACTIVE_CANDIDATES = 10;

/** Reads one index partition page by page, holding the run ids not yet taken. */
class IndexCursor {
  private readonly buffer: string[] = [];
  private startKey: Record<string, unknown> | undefined;
  private exhausted = false;

  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly input: QueryCommandInput,
  ) {}

  async head(): Promise<string | undefined> {
    while (this.buffer.length === 0 && !this.exhausted) {
      const page = await this.db.send(new QueryCommand({ ...this.input, ExclusiveStartKey: this.startKey }));
      for (const item of page.Items ?? []) this.buffer.push(String(item.runId));
      this.startKey = page.LastEvaluatedKey;
      this.exhausted = page.LastEvaluatedKey === undefined;
    }
    return this.buffer[0];
  }

  take(): void {
    this.buffer.shift();
  }
}

/** K-way merge of sorted cursors; a run seen twice (it changed status between pages) counts once. */
const takeMerged = async (cursors: IndexCursor[], count: number, newestFirst: boolean): Promise<string[]> => {
  const out: string[] = [];
  const seen = new Set<string>();
  while (out.length < count) {
    const heads = await Promise.all(cursors.map((c) => c.head()));
    let best: { id: string; cursor: IndexCursor } | undefined;
    for (const [i, id] of heads.entries()) {
      const cursor = cursors[i];
      if (id === undefined || cursor === undefined) continue;
      if (!best || (newestFirst ? id > best.id : id < best.id)) best = { id, cursor };
    }
    if (!best) break;
    best.cursor.take();
    if (!seen.has(best.id)) {
      seen.add(best.id);
      out.push(best.id);
    }
  }
  return out;
};

const indexPartitionKey = (indexName: IndexName): string => {
  const index = TABLE.globalSecondaryIndexes.find((i) => i.indexName === indexName);
  if (!index) throw new Error(`unknown index ${indexName}`);
  return index.partitionKey;
};

export class DynamoRunList implements RunList {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async list(filter: RunListFilter): Promise<RunPage> {
    if (filter.limit <= 0) return { items: [] };
    const { accountId, projectId, podId, source } = filter;
    const statuses = [...new Set(filter.statuses ?? [])];
    const residual: [attribute: string, value: string][] = [];
    let partitions: { index: IndexName; value: string }[];
    if (statuses.length > 0) {
      partitions = statuses.map((status) =>
        projectId
          ? { index: 'byProjectStatus', value: indexKeys.byProjectStatus(accountId, projectId, status) }
          : { index: 'byAccountStatus', value: indexKeys.byAccountStatus(accountId, status) },
      );
      if (podId) residual.push(['podId', podId]);
      if (source) residual.push(['source', source]);
    } else if (podId) {
      partitions = [{ index: 'byAccountPod', value: indexKeys.byAccountPod(accountId, podId) }];
      if (projectId) residual.push(['projectId', projectId]);
      if (source) residual.push(['source', source]);
    } else if (source) {
      partitions = [{ index: 'byAccountSource', value: indexKeys.byAccountSource(accountId, source) }];
      if (projectId) residual.push(['projectId', projectId]);
    } else if (projectId) {
      partitions = [{ index: 'byProject', value: indexKeys.byProject(accountId, projectId) }];
    } else {
      partitions = [{ index: 'byAccount', value: indexKeys.byAccount(accountId) }];
    }
    // One more than asked for tells whether another page follows.
    const want = filter.limit + 1;
    const pageSize = residual.length > 0 ? Math.max(want, FILTERED_PAGE_SIZE) : want;
    const cursors = partitions.map(
      (p) =>
        new IndexCursor(
          this.db,
          this.indexQuery(p.index, p.value, { before: filter.before, residual, pageSize }),
        ),
    );
    const runIds = await takeMerged(cursors, want, true);
    const pageIds = runIds.slice(0, filter.limit);
    const items = await this.batchGet(pageIds);
    const more = runIds.length > filter.limit;
    return more ? { items, lastRunId: pageIds[pageIds.length - 1] } : { items };
  }

  async listQueuedBefore(olderThan: number, limit: number): Promise<Run[]> {
    if (limit <= 0) return [];
    const cursor = new IndexCursor(
      this.db,
      this.indexQuery('queued', indexKeys.queued, {
        before: runIdLowerBound(olderThan),
        pageSize: limit,
        oldestFirst: true,
      }),
    );
    const runs = await this.batchGet(await takeMerged([cursor], limit, false));
    // the index lags the table: a run may have left QUEUED since
    return runs.filter((run) => run.status === 'QUEUED');
  }

  async oldestActive(): Promise<Run | undefined> {
    const cursor = new IndexCursor(
      this.db,
      this.indexQuery('active', indexKeys.active, { pageSize: OLDEST_ACTIVE_CANDIDATES, oldestFirst: true }),
    );
    const runs = await this.batchGet(await takeMerged([cursor], OLDEST_ACTIVE_CANDIDATES, false));
    // the index lags the table: the oldest in it may have ended since
    return runs.find((run) => !isTerminal(run.status));
  }

  async listOpenPullRequests(limit: number): Promise<Run[]> {
    if (limit <= 0) return [];
    const cursor = new IndexCursor(
      this.db,
      this.indexQuery('openPullRequests', indexKeys.openPullRequests, { pageSize: limit, oldestFirst: true }),
    );
    const runs = await this.batchGet(await takeMerged([cursor], limit, false));
    // the index lags the table: a run may have been settled since
    return runs.filter((run) => run.status === 'COMPLETED' && run.pullRequest?.state === 'open');
  }

  private indexQuery(
    index: IndexName,
    partition: string,
    opts: { before?: string; residual?: [string, string][]; pageSize: number; oldestFirst?: boolean },
  ): QueryCommandInput {
    const expr = new Expression();
    let keyCondition = `${expr.name(indexPartitionKey(index))} = ${expr.value(partition)}`;
    if (opts.before !== undefined) keyCondition += ` AND ${expr.name('runId')} < ${expr.value(opts.before)}`;
    const filter = (opts.residual ?? []).map(([name, value]) => `${expr.name(name)} = ${expr.value(value)}`);
    return {
      TableName: this.tableName,
      IndexName: index,
      KeyConditionExpression: keyCondition,
      ...(filter.length ? { FilterExpression: filter.join(' AND ') } : {}),
      ProjectionExpression: expr.name('runId'),
      ScanIndexForward: opts.oldestFirst === true,
      Limit: opts.pageSize,
      ...expr.attributes(),
    };
  }

  /** Full runs for index hits (indexes carry only keys and a few attributes), in the order given. */
  private async batchGet(runIds: string[]): Promise<Run[]> {
    const found = new Map<string, Run>();
    for (let start = 0; start < runIds.length; start += BATCH_GET_KEYS) {
      let pending: Record<string, unknown>[] = runIds
        .slice(start, start + BATCH_GET_KEYS)
        .map((id) => keys.run(id));
      for (let attempt = 1; pending.length > 0; attempt++) {
        const out = await this.db.send(
          new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: pending } } }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const run = fromRunItem(item);
          found.set(run.runId, run);
        }
        pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
        if (pending.length === 0) break;
        if (attempt >= MAX_ATTEMPTS) throw new ServiceUnavailableError('runs could not be read; try again');
        await backOff(attempt);
      }
    }
    return runIds.flatMap((id) => found.get(id) ?? []);
  }
}
