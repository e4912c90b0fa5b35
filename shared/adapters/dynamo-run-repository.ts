import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { ApprovalHistoryEntry, PendingApproval } from '../domain/approval.js';
import {
  ConflictError,
  NotFoundError,
  ServiceUnavailableError,
  TransitionRefusedError,
} from '../domain/errors.js';
import { runIdLowerBound } from '../domain/ids.js';
import { spendHour, type TokenCharge } from '../domain/pricing.js';
import {
  type Artifact,
  allowedFrom,
  canAdvancePhase,
  type ModelUsage,
  PHASES,
  type Phase,
  type PullRequest,
  type Run,
  type RunCost,
  type RunStatus,
  type StatusChange,
  ZERO_COST,
} from '../domain/run.js';
import { STEP_CONTENT_INLINE_BYTES, type Step, type StepContentRef, type StepPage } from '../domain/steps.js';
import { type IndexName, TABLE } from '../manifest.js';
import {
  type AgentEvent,
  type Clock,
  type HourlySpend,
  type RunConfigSnapshot,
  type RunListFilter,
  type RunPage,
  type RunPatch,
  type RunRepository,
  type Settlement,
  type SpendScope,
  systemClock,
  type TransitionRequest,
  type UsagePricing,
} from '../ports.js';
import {
  backOff,
  cancellationReasons,
  compact,
  conditionFailedItem,
  Expression,
  indexKeys,
  isConditionFailed,
  isTransientCancellation,
  keys,
  MAX_ATTEMPTS,
  type RunScope,
  runIndexAttributes,
  SK_PREFIX,
  statusIndexAttributes,
  Update,
} from './dynamo-keys.js';

/*
 * Data model (one table, pk/sk):
 *
 *   RUN#<runId>  RUN               the run: scalar attributes, `status` and its `history` (appended by
 *                                  each transition), `version` (+1 on every write),
 *                                  `artifacts` list, `lastSeq`; usage and cost as FLAT numbers
 *                                  `usage:<model>:<field>` and `cost:<field>`, so concurrent ADDs never
 *                                  need a parent map to exist. Also `podTaskToken` and `agentTokenHash`,
 *                                  which no Run object returned from here ever carries (while a checkpoint
 *                                  waits for a person, `podTaskToken` holds the approval's token).
 *                                  `pendingApproval` while a checkpoint waits; `approvals`, how each ended.
 *                                  List index keys: gAcct A#<acct>, gAcctStatus A#<acct>#<status>,
 *                                  gProj P#<acct>#<project>, gProjStatus P#<acct>#<project>#<status>,
 *                                  gAcctPod A#<acct>#<pod>, gAcctSource A#<acct>#<source>, all sorted by
 *                                  runId (a ULID: time order); gQueued = QUEUED only while QUEUED (sweeper).
 *   RUN#<runId>  CONFIG            the frozen config snapshot, apart because it can be ~256 KB and write
 *                                  units scale with the size of the item written.
 *   RUN#<runId>  STEP#<seq:10>     an agent step; content above 32 KB is cut (`truncated`, `contentBytes`)
 *                                  and `fullContent` points at the whole text, kept in CloudWatch Logs.
 *   RUN#<runId>  STEPS             `through`: every step up to this seq is written (a batch's steps are
 *                                  written in parallel, so a reader stops there and never skips one).
 *   RUN#<runId>  USAGE#<seq:10>    a usage ledger entry (usage events and usage inside steps); written in
 *                                  one transaction with the run's ADDs, so totals always equal the ledger.
 *   RUN#<runId>  EVT#<seq:10>      other per-seq facts: artifact, checkpoint, result.
 *   RUN#<runId>  USAGE#SETTLEMENT  the ledger's last entry: sandbox time and the per-run fee, once the run
 *                                  has ended. Every priced entry records `priceTableVersion` and its
 *                                  micro-USD; the run's `cost:*` grow by exactly the entries' amounts.
 *   IDEM#<acct>#<key>  IDEM        the run an Idempotency-Key created.
 *   SPEND#<acct>  H#<YYYY-MM-DDTHH>  the account's spend in that UTC hour: `totalMicroUsd` and, per
 *                                  project and pod, `project:<id>` and `pod:<id>`; ADDed in the same
 *                                  transaction as each priced entry, so trailing windows are one Query.
 *
 * Every per-seq item is written with attribute_not_exists, so a repeated seq is a duplicate, never
 * applied twice. Status changes are conditional updates: `status IN allowedFrom(to)`.
 */

const CONDITION_FAILED = 'ConditionalCheckFailed';
/** Step content kept in the item; the whole text is kept apart (see StepContentRef). */
const STEP_CONTENT_LIMIT = STEP_CONTENT_INLINE_BYTES;
const STEP_ARGS_LIMIT = 8 * 1024;
const CHECKPOINT_DETAILS_LIMIT = 96 * 1024;
/** A transaction holds up to 100 actions: the run's and the spend bucket's updates plus this many ledger items. */
const LEDGER_ITEMS_PER_TRANSACTION = 98;
/** Spend buckets outlive every window read from them (30 days) with room to spare. */
const SPEND_BUCKET_TTL_SECONDS = 90 * 86_400;
const SPEND_TOTAL = 'totalMicroUsd';
const SPEND_BY_PROJECT = 'project:';
const SPEND_BY_POD = 'pod:';
const sumOf = (amounts: number[]): number => amounts.reduce((sum, n) => sum + n, 0);
const BATCH_GET_KEYS = 100;
/** Index page size when a FilterExpression may drop items after the read. */
const FILTERED_PAGE_SIZE = 200;
const SCOPE_MEMO_SIZE = 10_000;

const USAGE_FIELDS = [
  'inputTokens',
  'outputTokens',
  'cacheReadTokens',
  'cacheWriteTokens',
  'costMicroUsd',
] as const satisfies readonly (keyof ModelUsage)[];
const COST_FIELDS = Object.keys(ZERO_COST) as (keyof RunCost)[];

const usageAttribute = (model: string, field: keyof ModelUsage) => `usage:${model}:${field}`;
const costAttribute = (field: keyof RunCost) => `cost:${field}`;

/** Attributes that exist for the table's sake, not the Run's. */
const HIDDEN_ATTRIBUTES: ReadonlySet<string> = new Set([
  TABLE.partitionKey,
  TABLE.sortKey,
  ...TABLE.globalSecondaryIndexes.map((index) => index.partitionKey),
  'podTaskToken',
  'agentTokenHash',
]);

const toRunItem = (run: Run): Record<string, unknown> => {
  const { usage, cost, ...scalars } = run;
  const item: Record<string, unknown> = {
    ...compact(scalars),
    ...keys.run(run.runId),
    ...runIndexAttributes(run),
  };
  for (const [model, totals] of Object.entries(usage)) {
    for (const field of USAGE_FIELDS) item[usageAttribute(model, field)] = totals[field];
  }
  for (const field of COST_FIELDS) item[costAttribute(field)] = cost[field];
  return item;
};

const fromRunItem = (item: Record<string, unknown>): Run => {
  const run: Record<string, unknown> = {};
  const usage: Record<string, ModelUsage> = {};
  const cost: RunCost = { ...ZERO_COST };
  for (const [name, value] of Object.entries(item)) {
    if (HIDDEN_ATTRIBUTES.has(name)) continue;
    if (name.startsWith('usage:')) {
      // the model name may itself hold ':'; the field is after the last one
      const rest = name.slice('usage:'.length);
      const cut = rest.lastIndexOf(':');
      const model = rest.slice(0, cut);
      const field = rest.slice(cut + 1) as keyof ModelUsage;
      usage[model] ??= {
        inputTokens: 0,
        outputTokens: 0,
        cacheReadTokens: 0,
        cacheWriteTokens: 0,
        costMicroUsd: 0,
      };
      usage[model][field] = Number(value);
    } else if (name.startsWith('cost:')) {
      cost[name.slice('cost:'.length) as keyof RunCost] = Number(value);
    } else {
      run[name] = value;
    }
  }
  return { ...run, usage, cost } as Run;
};

const truncateUtf8 = (
  text: string,
  limitBytes: number,
): { text: string; bytes: number; truncated: boolean } => {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= limitBytes) return { text, bytes, truncated: false };
  // A cut can split a character; the decoder marks the broken tail with U+FFFD, which goes.
  const cut = Buffer.from(text, 'utf8')
    .subarray(0, limitBytes)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  return { text: cut, bytes, truncated: true };
};

type StepEvent = Extract<AgentEvent, { type: 'step' }>;
type UsageEvent = Extract<AgentEvent, { type: 'usage' }>;
type ArtifactEvent = Extract<AgentEvent, { type: 'artifact' }>;

interface TokenCounts {
  model: string;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/** A per-seq item whose write also changes the run (usage totals, artifacts): one transaction for both. */
interface RunEffect {
  event: AgentEvent;
  item: Record<string, unknown>;
  tokens?: TokenCounts;
  /** what the tokens cost, when the batch is priced */
  charge?: TokenCharge;
  artifact?: Artifact;
  pullRequest?: PullRequest;
  /** false when the item is the usage inside a step: the step's own item decides whether it is new */
  decidesAcceptance: boolean;
}

const stepItem = (runId: string, e: StepEvent, fullContent?: StepContentRef): Record<string, unknown> => {
  const content = truncateUtf8(e.content, STEP_CONTENT_LIMIT);
  // JSON text, not a map: tool arguments are arbitrary and may nest deeper than DynamoDB allows.
  const args = e.args === undefined ? undefined : truncateUtf8(JSON.stringify(e.args), STEP_ARGS_LIMIT);
  return compact({
    ...keys.step(runId, e.seq),
    runId,
    seq: e.seq,
    at: e.at,
    kind: e.kind,
    content: content.text,
    tool: e.tool,
    model: e.model,
    usage: e.usage,
    args: args?.text,
    ...(content.truncated ? { truncated: true, contentBytes: content.bytes, fullContent } : {}),
    ...(args?.truncated ? { argsTruncated: true, argsBytes: args.bytes } : {}),
  });
};

/** The item without its keys; `costMicroUsd`, once steps are priced, comes along. */
const fromStepItem = (item: Record<string, unknown>): Step => {
  const { pk: _pk, sk: _sk, runId: _runId, ...step } = item;
  return step as unknown as Step;
};

/** The highest seq a step item can have: its sort key holds ten digits. */
const MAX_STEP_SEQ = 9_999_999_999;
const stepsHeadKey = (runId: string) => ({ pk: keys.run(runId).pk, sk: 'STEPS' });

const tokenCounts = (model: string, u: Omit<UsageEvent, 'seq' | 'at' | 'type' | 'model'>): TokenCounts => ({
  model,
  inputTokens: u.inputTokens,
  outputTokens: u.outputTokens,
  cacheReadTokens: u.cacheReadTokens ?? 0,
  cacheWriteTokens: u.cacheWriteTokens ?? 0,
});

const usageEffect = (
  runId: string,
  e: UsageEvent | StepEvent,
  tokens: TokenCounts,
  pricing?: UsagePricing,
): RunEffect => {
  const charge = pricing?.price(tokens.model, tokens);
  const priced = charge && {
    costMicroUsd: charge.tokenMicroUsd,
    feeMicroUsd: charge.feeMicroUsd,
    totalMicroUsd: charge.totalMicroUsd,
    priceTableVersion: charge.priceTableVersion,
  };
  return {
    event: e,
    item: { ...keys.usage(runId, e.seq), runId, seq: e.seq, at: e.at, from: e.type, ...tokens, ...priced },
    tokens,
    charge,
    decidesAcceptance: e.type === 'usage',
  };
};

const artifactEffect = (runId: string, e: ArtifactEvent): RunEffect => ({
  event: e,
  item: compact({ ...keys.event(runId, e.seq), runId, ...e }),
  artifact: compact({ kind: e.kind, url: e.url, sha: e.sha, at: e.at }),
  pullRequest:
    e.kind === 'pull_request' ? compact({ url: e.url, number: e.number, state: 'open' as const }) : undefined,
  decidesAcceptance: true,
});

const eventItem = (runId: string, e: AgentEvent): Record<string, unknown> => {
  const fields: Record<string, unknown> = { ...e };
  if (e.type === 'checkpoint' && e.details !== undefined) {
    const details = truncateUtf8(e.details, CHECKPOINT_DETAILS_LIMIT);
    fields.details = details.text;
    if (details.truncated) Object.assign(fields, { truncated: true, detailsBytes: details.bytes });
  }
  return compact({ ...keys.event(runId, e.seq), runId, ...fields });
};

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

const IDEMPOTENCY_KEY_SECONDS = 24 * 3600;

export class DynamoRunRepository implements RunRepository {
  /** accountId/projectId never change, so a transition can rebuild the status keys without a read. */
  private readonly scopes = new Map<string, RunScope>();

  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: Clock = systemClock,
  ) {}

  async create(
    run: Run,
    snapshot: RunConfigSnapshot,
    idempotencyKey?: string,
  ): Promise<{ run: Run; created: boolean }> {
    const item = toRunItem(run);
    const notExists = 'attribute_not_exists(pk)';
    const puts = [
      { Put: { TableName: this.tableName, Item: item, ConditionExpression: notExists } },
      {
        Put: {
          TableName: this.tableName,
          Item: { ...keys.snapshot(run.runId), runId: run.runId, snapshot: compact(snapshot) },
          ConditionExpression: notExists,
        },
      },
    ];
    if (idempotencyKey !== undefined) {
      const idem = {
        ...keys.idempotency(run.accountId, idempotencyKey),
        runId: run.runId,
        createdAt: run.createdAt,
        // A key is honoured for at least a day; TTL removes it some time after.
        expiresAt: Math.floor(Date.parse(run.createdAt) / 1000) + IDEMPOTENCY_KEY_SECONDS,
      };
      puts.push({ Put: { TableName: this.tableName, Item: idem, ConditionExpression: notExists } });
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.send(new TransactWriteCommand({ TransactItems: puts }));
        this.remember(run);
        return { run: fromRunItem(item), created: true };
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        if (idempotencyKey !== undefined && reasons[2]?.Code === CONDITION_FAILED) {
          return { run: await this.runForIdempotencyKey(run.accountId, idempotencyKey), created: false };
        }
        if (reasons[0]?.Code === CONDITION_FAILED || reasons[1]?.Code === CONDITION_FAILED) {
          throw new ConflictError(`run ${run.runId} already exists`, { runId: run.runId });
        }
        // e.g. a concurrent create with the same key: the next attempt sees its key
        if (!isTransientCancellation(reasons)) throw err;
        if (attempt >= MAX_ATTEMPTS)
          throw new ServiceUnavailableError('the run could not be written; try again');
        await backOff(attempt);
      }
    }
  }

  private async runForIdempotencyKey(accountId: string, key: string): Promise<Run> {
    const idem = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: keys.idempotency(accountId, key),
        ConsistentRead: true,
      }),
    );
    const runId = idem.Item?.runId;
    const run = typeof runId === 'string' ? await this.get(runId) : undefined;
    if (!run) throw new ConflictError('the idempotency key is held by a run that cannot be read', { key });
    return run;
  }

  async get(runId: string): Promise<Run | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.run(runId), ConsistentRead: true }),
    );
    if (!out.Item) return undefined;
    const run = fromRunItem(out.Item);
    this.remember(run);
    return run;
  }

  async getSnapshot(runId: string): Promise<RunConfigSnapshot | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.snapshot(runId), ConsistentRead: true }),
    );
    return out.Item?.snapshot as RunConfigSnapshot | undefined;
  }

  async transition(req: TransitionRequest): Promise<Run> {
    const { runId, to } = req;
    const allowed = allowedFrom(to).filter((s) => !req.from || req.from.includes(s));
    if (allowed.length === 0) {
      const current = await this.get(runId);
      if (!current) throw new NotFoundError('run', runId);
      throw new TransitionRefusedError(runId, to, current.status);
    }
    const scope = await this.scope(runId);
    const now = this.clock.now().toISOString();
    const update = new Update().set('status', to);
    for (const [name, value] of Object.entries(statusIndexAttributes(scope, to))) update.set(name, value);
    if (to !== 'QUEUED') update.remove('gQueued');
    const history = update.name('history');
    const change: StatusChange = { status: to, at: now };
    update.setTo(
      'history',
      `list_append(if_not_exists(${history}, ${update.value([])}), ${update.value([change])})`,
    );
    this.applyPatch(update, req.patch);
    let condition = `attribute_exists(${update.name('pk')}) AND ${update.in('status', allowed)}`;
    if (req.expectedVersion !== undefined) {
      condition += ` AND ${update.name('version')} = ${update.value(req.expectedVersion)}`;
    }
    try {
      return await this.updateRun(runId, update, condition, now);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      const old = conditionFailedItem(err);
      if (!old) throw new NotFoundError('run', runId);
      throw new TransitionRefusedError(runId, to, old.status?.S as RunStatus | undefined);
    }
  }

  async update(runId: string, patch: RunPatch, onlyIf?: RunStatus[]): Promise<Run | undefined> {
    if (onlyIf?.length === 0) return undefined;
    const update = new Update();
    this.applyPatch(update, patch);
    let condition = `attribute_exists(${update.name('pk')})`;
    if (onlyIf) condition += ` AND ${update.in('status', onlyIf)}`;
    try {
      return await this.updateRun(runId, update, condition);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      if (!conditionFailedItem(err)) throw new NotFoundError('run', runId);
      return undefined;
    }
  }

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

  async setPodTaskToken(runId: string, token: string): Promise<Run> {
    const update = new Update().set('podTaskToken', token);
    try {
      return await this.updateRun(runId, update, `attribute_exists(${update.name('pk')})`);
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('run', runId);
      throw err;
    }
  }

  async getPodTaskToken(runId: string): Promise<string | undefined> {
    return this.readHidden(runId, 'podTaskToken');
  }

  async clearPodTaskToken(runId: string): Promise<void> {
    const update = new Update().remove('podTaskToken');
    try {
      await this.updateRun(runId, update, `attribute_exists(${update.name('podTaskToken')})`);
    } catch (err) {
      // already cleared, or no such run: either way there is no token
      if (!isConditionFailed(err)) throw err;
    }
  }

  async parkApproval(runId: string, pending: PendingApproval, token: string): Promise<Run | undefined> {
    const update = new Update().set('pendingApproval', compact(pending)).set('podTaskToken', token);
    const condition = `${update.name('status')} = ${update.value('AWAITING_APPROVAL')} AND ${update.name('pendingApproval')}.${update.name('seq')} = ${update.value(pending.seq)}`;
    try {
      return await this.updateRun(runId, update, condition);
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async closeApproval(runId: string, entry: ApprovalHistoryEntry): Promise<boolean> {
    const update = new Update().remove('pendingApproval');
    const approvals = update.name('approvals');
    update.setTo(
      'approvals',
      `list_append(if_not_exists(${approvals}, ${update.value([])}), ${update.value([compact(entry)])})`,
    );
    const condition = `${update.name('pendingApproval')}.${update.name('seq')} = ${update.value(entry.seq)}`;
    try {
      await this.updateRun(runId, update, condition);
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async setAgentTokenHash(runId: string, hash: string): Promise<void> {
    const update = new Update().set('agentTokenHash', hash);
    try {
      await this.updateRun(runId, update, `attribute_exists(${update.name('pk')})`);
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('run', runId);
      throw err;
    }
  }

  async getAgentTokenHash(runId: string): Promise<string | undefined> {
    return this.readHidden(runId, 'agentTokenHash');
  }

  async recordEvents(
    runId: string,
    events: AgentEvent[],
    fullContent?: ReadonlyMap<number, StepContentRef>,
    pricing?: UsagePricing,
  ): Promise<{ accepted: AgentEvent[]; duplicates: number }> {
    const bySeq = new Map<number, AgentEvent>();
    let duplicates = 0;
    for (const e of events) {
      if (bySeq.has(e.seq)) duplicates++;
      else bySeq.set(e.seq, e);
    }
    const ordered = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    const last = ordered[ordered.length - 1];
    if (!last) return { accepted: [], duplicates };
    // First, because it also proves the run exists before any per-seq item is written.
    await this.raiseLastSeq(runId, last.seq);

    const fresh = new Set<AgentEvent>();
    const puts: Promise<void>[] = [];
    const effects: RunEffect[] = [];
    const phases: Phase[] = [];
    let heartbeatAt: string | undefined;
    const putIfNew = (e: AgentEvent, item: Record<string, unknown>) =>
      puts.push(this.putIfAbsent(item).then((isNew) => void (isNew && fresh.add(e))));
    for (const e of ordered) {
      switch (e.type) {
        case 'step': {
          const usage = e.usage && usageEffect(runId, e, tokenCounts(e.model ?? 'unknown', e.usage), pricing);
          const cost = usage?.charge ? { costMicroUsd: usage.charge.tokenMicroUsd } : {};
          putIfNew(e, { ...stepItem(runId, e, fullContent?.get(e.seq)), ...cost });
          if (usage) effects.push(usage);
          break;
        }
        case 'usage':
          effects.push(usageEffect(runId, e, tokenCounts(e.model, e), pricing));
          break;
        case 'artifact':
          effects.push(artifactEffect(runId, e));
          break;
        case 'checkpoint':
        case 'result':
          putIfNew(e, eventItem(runId, e));
          break;
        // Phases only move forward and heartbeats only raise a time: repeats are harmless, so no seq item.
        case 'phase':
          phases.push(e.phase);
          fresh.add(e);
          break;
        case 'heartbeat': {
          const at = new Date(e.at).toISOString();
          if (!heartbeatAt || at > heartbeatAt) heartbeatAt = at;
          fresh.add(e);
          break;
        }
      }
    }
    await Promise.all(puts);
    const lastStep = ordered.findLast((e) => e.type === 'step');
    if (lastStep) await this.raiseStepsThrough(runId, lastStep.seq);
    for (const effect of await this.applyEffects(runId, effects, pricing?.scope)) {
      if (effect.decidesAcceptance) fresh.add(effect.event);
    }
    for (const phase of phases) await this.advancePhase(runId, phase);
    if (heartbeatAt) await this.raiseHeartbeat(runId, heartbeatAt);

    const accepted = ordered.filter((e) => fresh.has(e));
    return { accepted, duplicates: duplicates + ordered.length - accepted.length };
  }

  async listSteps(
    runId: string,
    query: { afterSeq: number; limit: number; settledOnly: boolean },
  ): Promise<StepPage> {
    let through = MAX_STEP_SEQ;
    if (query.settledOnly) {
      const projection = new Expression();
      const head = await this.db.send(
        new GetCommand({
          TableName: this.tableName,
          Key: stepsHeadKey(runId),
          ConsistentRead: true,
          ProjectionExpression: projection.name('through'),
          ...projection.attributes(),
        }),
      );
      through = Number(head.Item?.through ?? 0);
    }
    if (query.limit <= 0 || through <= query.afterSeq) return { items: [], more: false };
    // One more than asked for tells whether another page follows.
    const want = query.limit + 1;
    const found: Record<string, unknown>[] = [];
    const range = new Expression();
    const keyCondition = `${range.name('pk')} = ${range.value(keys.run(runId).pk)} AND ${range.name('sk')} BETWEEN ${range.value(keys.step(runId, query.afterSeq + 1).sk)} AND ${range.value(keys.step(runId, through).sk)}`;
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: keyCondition,
          ConsistentRead: true,
          Limit: want - found.length,
          ExclusiveStartKey: startKey,
          ...range.attributes(),
        }),
      );
      found.push(...(page.Items ?? []));
      startKey = page.LastEvaluatedKey;
    } while (startKey && found.length < want);
    return { items: found.slice(0, query.limit).map(fromStepItem), more: found.length > query.limit };
  }

  async getStep(runId: string, seq: number): Promise<Step | undefined> {
    const out = await this.db.send(new GetCommand({ TableName: this.tableName, Key: keys.step(runId, seq) }));
    return out.Item ? fromStepItem(out.Item) : undefined;
  }

  async advancePhase(runId: string, phase: Phase): Promise<void> {
    const update = new Update().set('phase', phase);
    const from = PHASES.filter((p) => canAdvancePhase(p, phase));
    const phaseName = update.name('phase');
    const phaseAllowed = from.length
      ? `(attribute_not_exists(${phaseName}) OR ${update.in('phase', from)})`
      : `attribute_not_exists(${phaseName})`;
    try {
      await this.updateRun(runId, update, `attribute_exists(${update.name('pk')}) AND ${phaseAllowed}`);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      if (!conditionFailedItem(err)) throw new NotFoundError('run', runId);
    }
  }

  async settle(runId: string, settlement: Settlement, scope: SpendScope): Promise<boolean> {
    const now = this.clock.now().toISOString();
    const entry = { ...keys.settlement(runId), runId, from: 'settlement', at: now, ...settlement };
    const update = new Update()
      .add(costAttribute('sandboxCpuUsd'), settlement.cpuMicroUsd)
      .add(costAttribute('sandboxMemoryUsd'), settlement.memoryMicroUsd)
      .add(costAttribute('feeUsd'), settlement.feeMicroUsd)
      .add(costAttribute('totalUsd'), settlement.totalMicroUsd)
      .add('version', 1)
      .set('updatedAt', now);
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
              ...this.spendUpdates(scope, settlement.totalMicroUsd),
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
    const expr = new Expression();
    const first = keys.spendHour(accountId, fromHour);
    const keyCondition = `${expr.name('pk')} = ${expr.value(first.pk)} AND ${expr.name('sk')} BETWEEN ${expr.value(first.sk)} AND ${expr.value(keys.spendHour(accountId, toHour).sk)}`;
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

  /** Every write to the run item: bumps version and updatedAt, returns the run as stored. */
  private async updateRun(
    runId: string,
    update: Update,
    condition: string,
    now = this.clock.now().toISOString(),
  ): Promise<Run> {
    update.add('version', 1).set('updatedAt', now);
    const out = await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keys.run(runId),
        UpdateExpression: update.expression(),
        ConditionExpression: condition,
        ...update.attributes(),
        ReturnValues: 'ALL_NEW',
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      }),
    );
    const run = fromRunItem(out.Attributes ?? {});
    this.remember(run);
    return run;
  }

  private applyPatch(update: Update, patch: RunPatch | undefined): void {
    for (const [name, value] of Object.entries(patch ?? {})) {
      if (value !== undefined) update.set(name, compact(value));
    }
  }

  private async raiseLastSeq(runId: string, seq: number): Promise<void> {
    const update = new Update().set('lastSeq', seq);
    const lastSeq = update.name('lastSeq');
    const condition = `attribute_exists(${update.name('pk')}) AND (attribute_not_exists(${lastSeq}) OR ${lastSeq} < ${update.value(seq)})`;
    try {
      await this.updateRun(runId, update, condition);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      if (!conditionFailedItem(err)) throw new NotFoundError('run', runId);
    }
  }

  /** A small item of its own, so marking a batch's steps written costs one write unit. */
  private async raiseStepsThrough(runId: string, seq: number): Promise<void> {
    const update = new Update().set('through', seq).set('runId', runId);
    const through = update.name('through');
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: stepsHeadKey(runId),
          UpdateExpression: update.expression(),
          ConditionExpression: `attribute_not_exists(${through}) OR ${through} < ${update.value(seq)}`,
          ...update.attributes(),
        }),
      );
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
  }

  private async raiseHeartbeat(runId: string, at: string): Promise<void> {
    const update = new Update().set('lastHeartbeatAt', at);
    const last = update.name('lastHeartbeatAt');
    const condition = `attribute_exists(${update.name('pk')}) AND (attribute_not_exists(${last}) OR ${last} < ${update.value(at)})`;
    try {
      await this.updateRun(runId, update, condition);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
  }

  /** Puts a per-seq item unless its seq was seen; true when it was new. */
  private async putIfAbsent(item: Record<string, unknown>): Promise<boolean> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  /**
   * Writes ledger and artifact items together with the run's ADDs and appends, in transactions of up to
   * 100 actions. A cancelled transaction names the items whose seq was seen before: they are dropped and
   * the rest retried, so nothing is applied twice. Returns the effects that were new.
   */
  private async applyEffects(runId: string, effects: RunEffect[], spend?: SpendScope): Promise<RunEffect[]> {
    const applied: RunEffect[] = [];
    for (let start = 0; start < effects.length; start += LEDGER_ITEMS_PER_TRANSACTION) {
      let pending = effects.slice(start, start + LEDGER_ITEMS_PER_TRANSACTION);
      for (let attempt = 1; pending.length > 0; ) {
        const batch = pending;
        try {
          await this.db.send(
            new TransactWriteCommand({
              TransactItems: [
                ...batch.map((e) => ({
                  Put: {
                    TableName: this.tableName,
                    Item: e.item,
                    ConditionExpression: 'attribute_not_exists(pk)',
                  },
                })),
                { Update: this.effectsUpdate(runId, batch) },
                ...this.spendUpdates(spend, sumOf(batch.map((e) => e.charge?.totalMicroUsd ?? 0))),
              ],
            }),
          );
          applied.push(...batch);
          break;
        } catch (err) {
          const reasons = cancellationReasons(err);
          if (!reasons) throw err;
          if (reasons[batch.length]?.Code === CONDITION_FAILED) throw new NotFoundError('run', runId);
          pending = batch.filter((_, i) => reasons[i]?.Code !== CONDITION_FAILED);
          if (pending.length < batch.length) continue;
          if (!isTransientCancellation(reasons)) throw err;
          if (attempt >= MAX_ATTEMPTS)
            throw new ServiceUnavailableError('agent events could not be recorded; retry');
          await backOff(attempt++);
        }
      }
    }
    return applied;
  }

  private effectsUpdate(runId: string, effects: RunEffect[]) {
    const update = new Update();
    const totals = new Map<string, number>();
    const artifacts: Artifact[] = [];
    let pullRequest: PullRequest | undefined;
    const addTo = (name: string, n: number) => totals.set(name, (totals.get(name) ?? 0) + n);
    for (const e of effects) {
      if (e.tokens) {
        const { model, ...counts } = e.tokens;
        for (const [field, n] of Object.entries(counts))
          addTo(usageAttribute(model, field as keyof ModelUsage), n);
        if (e.charge) {
          addTo(usageAttribute(model, 'costMicroUsd'), e.charge.tokenMicroUsd);
          addTo(costAttribute('tokenUsd'), e.charge.tokenMicroUsd);
          addTo(costAttribute('feeUsd'), e.charge.feeMicroUsd);
          addTo(costAttribute('totalUsd'), e.charge.totalMicroUsd);
        }
      }
      if (e.artifact) artifacts.push(e.artifact);
      if (e.pullRequest) pullRequest = e.pullRequest;
    }
    for (const [name, n] of totals) update.add(name, n);
    if (artifacts.length) {
      const list = update.name('artifacts');
      update.setTo(
        'artifacts',
        `list_append(if_not_exists(${list}, ${update.value([])}), ${update.value(artifacts)})`,
      );
    }
    if (pullRequest) update.set('pullRequest', pullRequest);
    update.add('version', 1).set('updatedAt', this.clock.now().toISOString());
    return {
      TableName: this.tableName,
      Key: keys.run(runId),
      UpdateExpression: update.expression(),
      ConditionExpression: `attribute_exists(${update.name('pk')})`,
      ...update.attributes(),
    };
  }

  /** The ADDs to the account's bucket for this hour, when there is spend to count. */
  private spendUpdates(scope: SpendScope | undefined, amountMicroUsd: number) {
    if (!scope || amountMicroUsd <= 0) return [];
    const hour = spendHour(this.clock.now());
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
          TableName: this.tableName,
          Key: keys.spendHour(scope.accountId, hour),
          UpdateExpression: update.expression(),
          ...update.attributes(),
        },
      },
    ];
  }

  private async readHidden(
    runId: string,
    attribute: 'podTaskToken' | 'agentTokenHash',
  ): Promise<string | undefined> {
    const projection = new Expression();
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: keys.run(runId),
        ConsistentRead: true,
        ProjectionExpression: projection.name(attribute),
        ...projection.attributes(),
      }),
    );
    const value = out.Item?.[attribute];
    return typeof value === 'string' ? value : undefined;
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
          this.remember(run);
        }
        pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
        if (pending.length === 0) break;
        if (attempt >= MAX_ATTEMPTS) throw new ServiceUnavailableError('runs could not be read; try again');
        await backOff(attempt);
      }
    }
    return runIds.flatMap((id) => found.get(id) ?? []);
  }

  private async scope(runId: string): Promise<RunScope> {
    const known = this.scopes.get(runId);
    if (known) return known;
    const projection = new Expression();
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: keys.run(runId),
        ConsistentRead: true,
        ProjectionExpression: `${projection.name('accountId')}, ${projection.name('projectId')}`,
        ...projection.attributes(),
      }),
    );
    if (!out.Item) throw new NotFoundError('run', runId);
    const scope = { accountId: String(out.Item.accountId), projectId: String(out.Item.projectId) };
    this.rememberScope(runId, scope);
    return scope;
  }

  private remember(run: Run): void {
    if (!this.scopes.has(run.runId))
      this.rememberScope(run.runId, { accountId: run.accountId, projectId: run.projectId });
  }

  private rememberScope(runId: string, scope: RunScope): void {
    if (this.scopes.size >= SCOPE_MEMO_SIZE) {
      const oldest = this.scopes.keys().next().value;
      if (oldest !== undefined) this.scopes.delete(oldest);
    }
    this.scopes.set(runId, scope);
  }
}
