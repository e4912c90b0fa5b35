import {
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { BatchPlan } from '../domain/agent-batch.js';
import type { PendingApproval } from '../domain/approval.js';
import { ConflictError, NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import {
  isTerminal,
  LAUNCHED_STATUSES,
  type ModelUsage,
  type Run,
  type RunCost,
  type RunPatch,
  type RunStatus,
  type StatusChange,
  statusAfter,
  type Transition,
} from '../domain/run.js';
import { podFromStorage } from '../domain/tenancy.js';
import { appendAccountOf } from '../observability.js';
import {
  type Applied,
  type BatchWriteContext,
  type Clock,
  type RunConfigSnapshot,
  type RunFacts,
  type RunSecrets,
  type RunStore,
  systemClock,
} from '../ports.js';
import {
  backOff,
  cancellationReasons,
  compact,
  conditionFailedItem,
  indexKeys,
  isConditionFailed,
  isTransientCancellation,
  keys,
  MAX_ATTEMPTS,
  type RunScope,
  statusIndexAttributes,
  Update,
} from './dynamo-keys.js';
import { costAttribute, fromRunItem, secretsOf, toRunItem, usageAttribute } from './dynamo-run-item.js';
import { ledgerItem, spendUpdates } from './dynamo-spend-ledger.js';
import { eventItem, stepPacks } from './dynamo-timeline.js';

/*
 * The run records (one table, pk/sk; the run item's attributes are in dynamo-run-item.ts):
 *
 *   RUN#<runId>  RUN       the run, with its secrets.
 *   RUN#<runId>  CONFIG    the frozen config snapshot, apart because it can be ~256 KB and write units
 *                          scale with the size of the item written.
 *   IDEM#<acct>#<key> IDEM the run an Idempotency-Key created.
 *
 * Status changes are Transitions written on the condition `status = from` (so the table's rule holds in
 * the database, and a lost race is decided again by the caller). An event batch is written on the
 * condition `version = <as read>`: one transaction with the run's changes, its steps (packed) and
 * per-seq records, its ledger item and the account's spend; what does not fit in one transaction is
 * written just before it (keyed by seq, so writing it again is harmless).
 */

const CONDITION_FAILED = 'ConditionalCheckFailed';
const BATCH_WRITE_ITEMS = 25;
/** TransactWriteItems takes 100 actions and 4 MB; room is left for the run's update and the keys. */
const TRANSACTION_ITEMS = 100;
const TRANSACTION_BYTES = 3.5 * 1024 * 1024;

/** How many of `items`, from the first, fit in `count` actions and `bytes` of JSON. */
const fitting = (items: Record<string, unknown>[], count: number, bytes: number): number => {
  let used = 0;
  for (const [i, item] of items.entries()) {
    used += Buffer.byteLength(JSON.stringify(item), 'utf8');
    if (i >= count || used > bytes) return i;
  }
  return items.length;
};
const IDEMPOTENCY_KEY_SECONDS = 24 * 3600;

/** Every run the store answers with: an invocation about that run logs its account from then on. */
const runOf = (item: Record<string, unknown>): Run => {
  const run = fromRunItem(item);
  appendAccountOf(run);
  return run;
};

const runFromWire = (item: Record<string, unknown> | undefined): Run | undefined =>
  item ? runOf(unmarshall(item as Parameters<typeof unmarshall>[0])) : undefined;

const appendTo = (update: Update, attribute: string, values: unknown[]): void => {
  const list = update.name(attribute);
  update.setTo(
    attribute,
    `list_append(if_not_exists(${list}, ${update.value([])}), ${update.value(values)})`,
  );
};

const applyPatch = (update: Update, patch: RunPatch): void => {
  for (const [name, value] of Object.entries(patch)) {
    if (value !== undefined) update.set(name, compact(value));
  }
};

/** The SETs of a move along `t.path`: the status, its index keys, and the history entries. */
const applyMove = (update: Update, scope: RunScope & { runId: string }, t: Transition): void => {
  if (t.path.length === 0) return;
  const to = statusAfter(t);
  update.set('status', to);
  for (const [name, value] of Object.entries(statusIndexAttributes(scope, to))) update.set(name, value);
  if (to !== 'QUEUED') update.remove('gQueued').remove('waitingFor');
  if (to !== 'AWAITING_APPROVAL') update.remove('gPaused');
  if (isTerminal(to)) update.remove('gActive');
  // a run's pull request is settled only while it is COMPLETED: any other move leaves nothing to sweep
  if (to !== 'COMPLETED') update.remove('gOpenPr');
  appendTo(
    update,
    'history',
    t.path.map((status): StatusChange => ({ status, at: t.at })),
  );
};

export class DynamoRunStore implements RunStore {
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
        return { run: runOf(item), created: true };
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
    return (await this.getWithSecrets(runId))?.run;
  }

  async getWithSecrets(runId: string): Promise<{ run: Run; secrets: RunSecrets } | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.run(runId), ConsistentRead: true }),
    );
    return out.Item ? { run: runOf(out.Item), secrets: secretsOf(out.Item) } : undefined;
  }

  async getSnapshot(runId: string): Promise<RunConfigSnapshot | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.snapshot(runId), ConsistentRead: true }),
    );
    const stored = out.Item?.snapshot as RunConfigSnapshot | undefined;
    return stored && { ...stored, pod: podFromStorage(stored.pod) };
  }

  async apply(decidedFrom: Run, t: Transition): Promise<Applied> {
    const update = new Update();
    applyMove(update, decidedFrom, t);
    applyPatch(update, t.patch);
    if (t.revokeCredentials) update.remove('agentTokenHash').remove('launchCodeHash');
    let condition = `attribute_exists(${update.name('pk')}) AND ${update.name('status')} = ${update.value(t.from)}`;
    if (t.closeApproval) {
      update.remove('pendingApproval');
      appendTo(update, 'approvals', [compact(t.closeApproval)]);
      condition += ` AND ${update.name('pendingApproval')}.${update.name('seq')} = ${update.value(t.closeApproval.seq)}`;
    }
    if (t.artifacts?.length) appendTo(update, 'artifacts', t.artifacts.map(compact));
    if (t.patch.pullRequest?.state === 'open') update.set('gOpenPr', indexKeys.openPullRequests);
    try {
      return { applied: true, run: await this.updateRun(t.runId, update, condition, t.at) };
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      return { applied: false, run: runFromWire(conditionFailedItem(err)) };
    }
  }

  async recordFacts(runId: string, facts: RunFacts): Promise<void> {
    const update = new Update();
    applyPatch(update, facts);
    try {
      await this.updateRun(runId, update, `attribute_exists(${update.name('pk')})`);
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('run', runId);
      throw err;
    }
  }

  async recordBatch(run: Run, plan: BatchPlan, written: BatchWriteContext): Promise<boolean> {
    if (plan.accepted.length === 0) return true;
    const stepCost = new Map(
      plan.ledger.flatMap((line) =>
        line.from === 'step' && line.charge ? [[line.seq, line.charge.tokenMicroUsd] as const] : [],
      ),
    );
    const claim = [
      { Update: this.batchUpdate(run, plan) },
      ...(plan.ledger.length
        ? [
            {
              Put: {
                TableName: this.tableName,
                Item: ledgerItem(run.runId, plan.ledger),
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
          ]
        : []),
      ...spendUpdates(this.tableName, run.runId, written.scope, plan.spendMicroUsd, new Date(plan.at)),
    ];
    const records = [
      ...stepPacks(run.runId, plan.steps, written.fullContent, (seq) => stepCost.get(seq)),
      ...plan.records.map((e) => eventItem(run.runId, e)),
    ];
    // What fits goes in the claim's own transaction; a batch too large for one is written first.
    const fits = fitting(records, TRANSACTION_ITEMS - claim.length, TRANSACTION_BYTES);
    await this.putAll(records.slice(fits));
    const puts = records.slice(0, fits).map((Item) => ({ Put: { TableName: this.tableName, Item } }));
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.send(new TransactWriteCommand({ TransactItems: [...claim, ...puts] }));
        return true;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        // the run moved on since it was read (or its ledger line was written by a concurrent batch)
        if (reasons.some((r) => r.Code === CONDITION_FAILED)) return false;
        if (!isTransientCancellation(reasons)) throw err;
        if (attempt >= MAX_ATTEMPTS)
          throw new ServiceUnavailableError('agent events could not be recorded; retry');
        await backOff(attempt);
      }
    }
  }

  /** The run's side of a batch: what the plan sets, adds and appends, on the version it was planned from. */
  private batchUpdate(run: Run, plan: BatchPlan) {
    const update = new Update().set('seqs', plan.seqs).set('lastSeq', plan.lastSeq);
    applyPatch(update, plan.patch);
    if (plan.transition) {
      applyMove(update, run, plan.transition);
      applyPatch(update, plan.transition.patch);
    }
    if (plan.artifacts.length) appendTo(update, 'artifacts', plan.artifacts.map(compact));
    for (const [model, line] of Object.entries(plan.usage)) {
      for (const [field, n] of Object.entries(line)) {
        if (n !== 0) update.add(usageAttribute(model, field as keyof ModelUsage), n);
      }
    }
    for (const [field, n] of Object.entries(plan.cost)) {
      if (n !== 0) update.add(costAttribute(field as keyof RunCost), n);
    }
    update.add('version', 1).set('updatedAt', plan.at);
    return {
      TableName: this.tableName,
      Key: keys.run(run.runId),
      UpdateExpression: update.expression(),
      ConditionExpression: `${update.name('version')} = ${update.value(run.version)}`,
      ...update.attributes(),
    };
  }

  /** Unconditional puts in batches of 25, in parallel, until every item is written. */
  private async putAll(items: Record<string, unknown>[]): Promise<void> {
    const chunks: Record<string, unknown>[][] = [];
    for (let i = 0; i < items.length; i += BATCH_WRITE_ITEMS)
      chunks.push(items.slice(i, i + BATCH_WRITE_ITEMS));
    await Promise.all(
      chunks.map(async (chunk) => {
        let pending = chunk.map((Item) => ({ PutRequest: { Item } }));
        for (let attempt = 1; pending.length > 0; attempt++) {
          const out = await this.db.send(
            new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } }),
          );
          pending = (out.UnprocessedItems?.[this.tableName] ?? []) as typeof pending;
          if (pending.length === 0) return;
          if (attempt >= MAX_ATTEMPTS)
            throw new ServiceUnavailableError('agent events could not be recorded; retry');
          await backOff(attempt);
        }
      }),
    );
  }

  async parkPodToken(runId: string, token: string): Promise<{ run: Run; secrets: RunSecrets }> {
    const update = new Update().set('podTaskToken', token);
    try {
      const out = await this.write(runId, update, `attribute_exists(${update.name('pk')})`);
      return { run: runOf(out), secrets: secretsOf(out) };
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('run', runId);
      throw err;
    }
  }

  async clearPodToken(runId: string): Promise<void> {
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

  async setLaunchCode(runId: string, codeHash: string): Promise<void> {
    // A new launch's code: whatever an earlier launch's pod held is no longer good.
    const update = new Update().set('launchCodeHash', codeHash).remove('agentTokenHash');
    try {
      await this.updateRun(runId, update, `attribute_exists(${update.name('pk')})`);
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('run', runId);
      throw err;
    }
  }

  async exchangeLaunchCode(
    runId: string,
    exchange: { codeHash: string; taskArn: string; tokenHash: string },
  ): Promise<boolean> {
    const update = new Update().set('agentTokenHash', exchange.tokenHash).remove('launchCodeHash');
    const condition = [
      `${update.name('launchCodeHash')} = ${update.value(exchange.codeHash)}`,
      `${update.name('taskArn')} = ${update.value(exchange.taskArn)}`,
      update.in('status', LAUNCHED_STATUSES as RunStatus[]),
    ].join(' AND ');
    try {
      await this.updateRun(runId, update, condition);
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  /** Every write to the run item: bumps version and updatedAt, returns the run as stored. */
  private async updateRun(runId: string, update: Update, condition: string, at?: string): Promise<Run> {
    return runOf(await this.write(runId, update, condition, at));
  }

  private async write(
    runId: string,
    update: Update,
    condition: string,
    at = this.clock.now().toISOString(),
  ): Promise<Record<string, unknown>> {
    update.add('version', 1).set('updatedAt', at);
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
    return out.Attributes ?? {};
  }
}
