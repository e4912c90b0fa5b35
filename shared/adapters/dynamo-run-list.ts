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
 * gAcctSource A#<acct>#<source>, all sorted by runId (a ULID: time order); and gQueued QUEUED#<shard>,
 * set only while a run is QUEUED, and gPaused PAUSED#<shard>, only while it is AWAITING_APPROVAL, for
 * the sweeper, which reads every shard. The indexes carry keys and a few attributes; the runs themselves
 * are read from the table.
 */

const BATCH_GET_KEYS = 100;
/** Index page size when a FilterExpression may drop items after the read. */
const FILTERED_PAGE_SIZE = 1000;
/**
 * Index pages one filtered list request reads at most, shared out among its partitions (at least two
 * each): a rare filter answers a short page, or none, with a cursor, never a timeout.
 */
const FILTERED_PAGE_BUDGET = 24;
/** The oldest runs in the index read for the oldest still active: the index lags the runs that just ended. */
const OLDEST_ACTIVE_CANDIDATES = 10;

/**
 * Reads one index partition page by page, holding the run ids not yet taken. With a page budget (a
 * filtered read), it stops once the budget is spent without a hit: it has then looked at every run
 * above `stalledAt`, and the list goes on below it on the next request.
 */
class IndexCursor {
  private readonly buffer: string[] = [];
  private startKey: Record<string, unknown> | undefined;
  private exhausted = false;
  private pagesRead = 0;
  stalledAt: string | undefined;

  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly input: QueryCommandInput,
    private readonly pageBudget = Number.POSITIVE_INFINITY,
  ) {}

  async head(): Promise<string | undefined> {
    while (this.buffer.length === 0 && !this.exhausted && this.stalledAt === undefined) {
      if (this.pagesRead >= this.pageBudget) {
        this.stalledAt = String(this.startKey?.runId);
        break;
      }
      const page = await this.db.send(new QueryCommand({ ...this.input, ExclusiveStartKey: this.startKey }));
      this.pagesRead += 1;
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

/**
 * K-way merge of sorted cursors, newest first; a run seen twice (it changed status between pages)
 * counts once. A cursor that stalled has looked at nothing below its `stalledAt`: the merge stops
 * above the highest such point and answers it as where the list goes on.
 */
const takeMerged = async (
  cursors: IndexCursor[],
  count: number,
  newestFirst: boolean,
): Promise<{ ids: string[]; stoppedAt?: string }> => {
  const ids: string[] = [];
  const seen = new Set<string>();
  while (ids.length < count) {
    const heads = await Promise.all(cursors.map((c) => c.head()));
    const stoppedAt = cursors
      .map((c) => c.stalledAt)
      .filter((at) => at !== undefined)
      .sort()
      .at(-1);
    let best: { id: string; cursor: IndexCursor } | undefined;
    for (const [i, id] of heads.entries()) {
      const cursor = cursors[i];
      if (id === undefined || cursor === undefined) continue;
      if (!best || (newestFirst ? id > best.id : id < best.id)) best = { id, cursor };
    }
    if (stoppedAt !== undefined && (!best || best.id < stoppedAt)) return { ids, stoppedAt };
    if (!best) break;
    best.cursor.take();
    if (!seen.has(best.id)) {
      seen.add(best.id);
      ids.push(best.id);
    }
  }
  return { ids };
};

/** An attribute the index carries that an index page is filtered on: one value, or any of several. */
type Residual = [attribute: string, value: string | readonly string[]];

/** DynamoDB's IN takes at most 100 values: more are OR-ed in groups. */
const IN_VALUES = 100;

const residualCondition = (expr: Expression, [name, value]: Residual): string => {
  if (typeof value === 'string') return `${expr.name(name)} = ${expr.value(value)}`;
  const groups: string[] = [];
  for (let i = 0; i < value.length; i += IN_VALUES) {
    const values = value.slice(i, i + IN_VALUES).map((v) => expr.value(v));
    groups.push(`${expr.name(name)} IN (${values.join(', ')})`);
  }
  return `(${groups.join(' OR ')})`;
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
    private readonly filtered = { pageSize: FILTERED_PAGE_SIZE, pageBudget: FILTERED_PAGE_BUDGET },
  ) {}

  async list(filter: RunListFilter): Promise<RunPage> {
    if (filter.limit <= 0) return { items: [] };
    const { accountId, podId, source } = filter;
    const statuses = [...new Set(filter.statuses ?? [])];
    // one project, the account's, or some of its projects (each read from its own partitions, merged)
    const projects = filter.projectId ? [filter.projectId] : filter.projectIds;
    const residual: Residual[] = [];
    let partitions: { index: IndexName; value: string }[];
    if (statuses.length > 0) {
      partitions = projects
        ? projects.flatMap((projectId) =>
            statuses.map((status) => ({
              index: 'byProjectStatus' as const,
              value: indexKeys.byProjectStatus(accountId, projectId, status),
            })),
          )
        : statuses.map((status) => ({
            index: 'byAccountStatus',
            value: indexKeys.byAccountStatus(accountId, status),
          }));
      if (podId) residual.push(['podId', podId]);
      if (source) residual.push(['source', source]);
    } else if (podId) {
      partitions = [{ index: 'byAccountPod', value: indexKeys.byAccountPod(accountId, podId) }];
      if (projects) residual.push(['projectId', projects]);
      if (source) residual.push(['source', source]);
    } else if (source) {
      partitions = [{ index: 'byAccountSource', value: indexKeys.byAccountSource(accountId, source) }];
      if (projects) residual.push(['projectId', projects]);
    } else if (projects) {
      partitions = projects.map((projectId) => ({
        index: 'byProject',
        value: indexKeys.byProject(accountId, projectId),
      }));
    } else {
      partitions = [{ index: 'byAccount', value: indexKeys.byAccount(accountId) }];
    }
    // One more than asked for tells whether another page follows.
    const want = filter.limit + 1;
    const pageSize = residual.length > 0 ? Math.max(want, this.filtered.pageSize) : want;
    const pageBudget =
      residual.length > 0
        ? Math.max(2, Math.floor(this.filtered.pageBudget / partitions.length))
        : Number.POSITIVE_INFINITY;
    const cursors = partitions.map(
      (p) =>
        new IndexCursor(
          this.db,
          this.indexQuery(p.index, p.value, { before: filter.before, residual, pageSize }),
          pageBudget,
        ),
    );
    const { ids: runIds, stoppedAt } = await takeMerged(cursors, want, true);
    const pageIds = runIds.slice(0, filter.limit);
    const items = await this.batchGet(pageIds);
    if (runIds.length > filter.limit) return { items, lastRunId: pageIds[pageIds.length - 1] };
    // the budget ran out first: the next page starts below where the reading stopped
    return stoppedAt === undefined ? { items } : { items, lastRunId: stoppedAt };
  }

  async listQueuedBefore(olderThan: number, limit: number): Promise<Run[]> {
    const runs = await this.oldestIn('queued', indexKeys.queuedPartitions, limit, runIdLowerBound(olderThan));
    // the index lags the table: a run may have left QUEUED since
    return runs.filter((run) => run.status === 'QUEUED');
  }

  async listAwaitingApproval(limit: number): Promise<Run[]> {
    const runs = await this.oldestIn('awaitingApproval', indexKeys.awaitingApprovalPartitions, limit);
    // the index lags the table: a run may have gone on since
    return runs.filter((run) => run.status === 'AWAITING_APPROVAL');
  }

  async oldestActive(): Promise<Run | undefined> {
    const runs = await this.oldestIn('active', indexKeys.activePartitions, OLDEST_ACTIVE_CANDIDATES);
    // the index lags the table: the oldest in it may have ended since
    return runs.find((run) => !isTerminal(run.status));
  }

  async listOpenPullRequests(limit: number): Promise<Run[]> {
    const runs = await this.oldestIn('openPullRequests', [indexKeys.openPullRequests], limit);
    // the index lags the table: a run may have been settled since
    return runs.filter((run) => run.status === 'COMPLETED' && run.pullRequest?.state === 'open');
  }

  /** The oldest `limit` runs of a sparse index, merged across its partitions (below `before`, if given). */
  private async oldestIn(
    index: IndexName,
    partitions: readonly string[],
    limit: number,
    before?: string,
  ): Promise<Run[]> {
    if (limit <= 0) return [];
    const cursors = partitions.map(
      (partition) =>
        new IndexCursor(
          this.db,
          this.indexQuery(index, partition, {
            ...(before === undefined ? {} : { before }),
            pageSize: limit,
            oldestFirst: true,
          }),
        ),
    );
    return this.batchGet((await takeMerged(cursors, limit, false)).ids);
  }

  private indexQuery(
    index: IndexName,
    partition: string,
    opts: { before?: string; residual?: Residual[]; pageSize: number; oldestFirst?: boolean },
  ): QueryCommandInput {
    const expr = new Expression();
    let keyCondition = `${expr.name(indexPartitionKey(index))} = ${expr.value(partition)}`;
    if (opts.before !== undefined) keyCondition += ` AND ${expr.name('runId')} < ${expr.value(opts.before)}`;
    const filter = (opts.residual ?? []).map((residual) => residualCondition(expr, residual));
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
