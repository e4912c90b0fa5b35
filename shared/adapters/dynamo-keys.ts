import { setTimeout as sleep } from 'node:timers/promises';
import { ValidationError } from '../domain/errors.js';
import { isTerminal, type RunSource, type RunStatus } from '../domain/run.js';

/** Keys and attribute mapping of the single table, shared by the run repository and the directory. */

/**
 * Ids are joined with '#' into keys, so an id holding '#' could address another tenant's partition
 * (account `a#b` + project `c` = account `a` + project `b#c`).
 */
const segment = (id: string): string => {
  if (id.length === 0 || id.includes('#')) throw new ValidationError(`invalid id "${id}"`, { id });
  return id;
};

export interface Key extends Record<string, string> {
  pk: string;
  sk: string;
}

const SEQ_WIDTH = 10;
const padSeq = (seq: number): string => String(seq).padStart(SEQ_WIDTH, '0');

export const keys = {
  run: (runId: string): Key => ({ pk: `RUN#${segment(runId)}`, sk: 'RUN' }),
  snapshot: (runId: string): Key => ({ pk: `RUN#${segment(runId)}`, sk: 'CONFIG' }),
  idempotency: (accountId: string, key: string): Key => ({
    pk: `IDEM#${segment(accountId)}#${key}`,
    sk: 'IDEM',
  }),
  /** the steps of one batch, from this seq on, packed together */
  steps: (runId: string, firstSeq: number): Key => ({
    pk: `RUN#${segment(runId)}`,
    sk: `STEPS#${padSeq(firstSeq)}`,
  }),
  usage: (runId: string, seq: number): Key => ({ pk: `RUN#${segment(runId)}`, sk: `USAGE#${padSeq(seq)}` }),
  /** the ledger's last entry: sandbox time and the per-run fee, written once the run has ended */
  settlement: (runId: string): Key => ({ pk: `RUN#${segment(runId)}`, sk: 'USAGE#SETTLEMENT' }),
  /**
   * an account's spend in one UTC hour (`YYYY-MM-DDTHH`), in one of its shards (`SPEND_SHARDS`); without
   * a shard, the partition spend was written to before the shards
   */
  spendHour: (accountId: string, hour: string, shard?: number): Key => ({
    pk: shard === undefined ? `SPEND#${segment(accountId)}` : `SPEND#${segment(accountId)}#${shard}`,
    sk: `H#${hour}`,
  }),
  event: (runId: string, seq: number): Key => ({ pk: `RUN#${segment(runId)}`, sk: `EVT#${padSeq(seq)}` }),
  /** the run's feed: the events of one change from this feed seq on */
  feed: (runId: string, firstSeq: number): Key => ({
    pk: `RUN#${segment(runId)}`,
    sk: `FEED#${padSeq(firstSeq)}`,
  }),
  feedHead: (runId: string): Key => ({ pk: `RUN#${segment(runId)}`, sk: 'FEEDHEAD' }),
  /** the WebSocket stream: a ticket, a connection, a connection's follow of a run, of its log or of the account's runs */
  streamTicket: (ticketHash: string): Key => ({ pk: `TICKET#${ticketHash}`, sk: 'TICKET' }),
  connection: (connectionId: string): Key => ({ pk: `CONN#${segment(connectionId)}`, sk: 'CONN' }),
  follower: (runId: string, connectionId: string): Key => ({
    pk: `FOLLOW#${segment(runId)}`,
    sk: `C#${segment(connectionId)}`,
  }),
  logFollower: (runId: string, connectionId: string): Key => ({
    pk: `FOLLOWLOGS#${segment(runId)}`,
    sk: `C#${segment(connectionId)}`,
  }),
  /** the run a pod's log stream belongs to, for the log lines the stream's subscription delivers */
  logStreamOwner: (logStream: string): Key => ({ pk: `LOGSTREAM#${segment(logStream)}`, sk: 'LOGSTREAM' }),
  runsFollower: (accountId: string, connectionId: string): Key => ({
    pk: `FOLLOWRUNS#${segment(accountId)}`,
    sk: `C#${segment(connectionId)}`,
  }),
  account: (accountId: string): Key => ({ pk: `ACCT#${segment(accountId)}`, sk: 'ACCOUNT' }),
  /** a caller's requests in one window (its start, epoch seconds), apart from the account's busy partition */
  requestWindow: (callerKey: string, windowStart: number): Key => ({
    pk: `REQS#${segment(callerKey)}`,
    sk: `W#${windowStart}`,
  }),
  /** the account's active-run slots and the runs waiting for one */
  activeRuns: (accountId: string): Key => ({ pk: `ACCT#${segment(accountId)}`, sk: 'ACTIVE' }),
  project: (accountId: string, projectId: string): Key => ({
    pk: `ACCT#${segment(accountId)}`,
    sk: `PROJECT#${segment(projectId)}`,
  }),
  pod: (accountId: string, podId: string): Key => ({
    pk: `ACCT#${segment(accountId)}`,
    sk: `POD#${segment(podId)}`,
  }),
  /** a webhook delivery acted on (X-GitHub-Delivery) */
  delivery: (deliveryId: string): Key => ({ pk: `DELIVERY#${segment(deliveryId)}`, sk: 'DELIVERY' }),
  /** which account linked a GitHub App installation: one account per installation */
  installation: (installationId: number): Key => ({ pk: `GHINST#${installationId}`, sk: 'LINK' }),
  schedule: (accountId: string, projectId: string, scheduleId: string): Key => ({
    pk: `ACCT#${segment(accountId)}`,
    sk: `${SK_PREFIX.schedulesOf(projectId)}${segment(scheduleId)}`,
  }),
};

export const SK_PREFIX = {
  project: 'PROJECT#',
  pod: 'POD#',
  /** a project's schedules */
  schedulesOf: (projectId: string) => `SCHEDULE#${segment(projectId)}#`,
  usage: 'USAGE#',
  spendHour: 'H#',
  event: 'EVT#',
} as const;

/**
 * The sweepers' sparse indexes (`queued`, `awaitingApproval`) spread every tenant's runs over this
 * many partitions, by a hash of the run id, so no one partition takes every dispatch's write; a sweep
 * reads them all and merges them in run id order.
 */
export const SWEEP_SHARDS = 8;

/** A run's shard of `count`, the same wherever it is asked. */
export const shardOf = (runId: string, count: number): number => {
  let hash = 0;
  for (let i = 0; i < runId.length; i++) hash = (Math.imul(hash, 31) + runId.charCodeAt(i)) >>> 0;
  return hash % count;
};

const shards = (prefix: string): string[] => Array.from({ length: SWEEP_SHARDS }, (_, i) => `${prefix}#${i}`);

/**
 * Partition values of the list indexes. Project ids are chosen per account, so the project partitions
 * carry the account too: two tenants' projects named alike never share a partition.
 */
export const indexKeys = {
  byAccount: (accountId: string) => `A#${segment(accountId)}`,
  byAccountStatus: (accountId: string, status: RunStatus) => `A#${segment(accountId)}#${status}`,
  byProject: (accountId: string, projectId: string) => `P#${segment(accountId)}#${segment(projectId)}`,
  byProjectStatus: (accountId: string, projectId: string, status: RunStatus) =>
    `P#${segment(accountId)}#${segment(projectId)}#${status}`,
  byAccountPod: (accountId: string, podId: string) => `A#${segment(accountId)}#${segment(podId)}`,
  byAccountSource: (accountId: string, source: RunSource) => `A#${segment(accountId)}#${source}`,
  queued: (runId: string) => `QUEUED#${shardOf(runId, SWEEP_SHARDS)}`,
  /** every partition of `queued`, and `QUEUED`, where a run queued before the shards stays until it moves */
  queuedPartitions: [...shards('QUEUED'), 'QUEUED'],
  awaitingApproval: (runId: string) => `PAUSED#${shardOf(runId, SWEEP_SHARDS)}`,
  awaitingApprovalPartitions: shards('PAUSED'),
  openPullRequests: 'OPEN',
  /** the runs not ended, sharded as the sweepers' indexes are */
  active: (runId: string) => `ACTIVE#${shardOf(runId, SWEEP_SHARDS)}`,
  activePartitions: shards('ACTIVE'),
} as const;

export interface RunScope {
  accountId: string;
  projectId: string;
}

/**
 * Index attributes that depend on the status: a transition rewrites them; `gQueued` exists only while
 * QUEUED, `gPaused` only while AWAITING_APPROVAL, `gActive` only until the run ends.
 */
export const statusIndexAttributes = (scope: RunScope & { runId: string }, status: RunStatus) => ({
  gAcctStatus: indexKeys.byAccountStatus(scope.accountId, status),
  gProjStatus: indexKeys.byProjectStatus(scope.accountId, scope.projectId, status),
  ...(status === 'QUEUED' ? { gQueued: indexKeys.queued(scope.runId) } : {}),
  ...(status === 'AWAITING_APPROVAL' ? { gPaused: indexKeys.awaitingApproval(scope.runId) } : {}),
  ...(isTerminal(status) ? {} : { gActive: indexKeys.active(scope.runId) }),
});

export const runIndexAttributes = (
  run: RunScope & { runId: string; podId: string; source: RunSource; status: RunStatus },
): Record<string, string> => ({
  gAcct: indexKeys.byAccount(run.accountId),
  gProj: indexKeys.byProject(run.accountId, run.projectId),
  gAcctPod: indexKeys.byAccountPod(run.accountId, run.podId),
  gAcctSource: indexKeys.byAccountSource(run.accountId, run.source),
  ...statusIndexAttributes(run, run.status),
});

/**
 * Plain data without `undefined` anywhere, so items marshal whatever options the document client
 * was created with.
 */
export const compact = <T>(value: T): T => {
  if (Array.isArray(value)) return value.filter((v) => v !== undefined).map(compact) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = compact(v);
    return out as T;
  }
  return value;
};

/** A record as stored, without the table's keys. */
export const withoutKeys = <T>(item: Record<string, unknown>): T => {
  const { pk: _pk, sk: _sk, ...record } = item;
  return record as T;
};

/** Collects `#n` / `:v` placeholders, so no attribute name (reserved words, `usage:model:x`) is ever inline. */
export class Expression {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, unknown> = {};
  private readonly nameIds = new Map<string, string>();

  name(attribute: string): string {
    let id = this.nameIds.get(attribute);
    if (!id) {
      id = `#n${this.nameIds.size}`;
      this.nameIds.set(attribute, id);
      this.names[id] = attribute;
    }
    return id;
  }

  value(value: unknown): string {
    const id = `:v${Object.keys(this.values).length}`;
    this.values[id] = value;
    return id;
  }

  /** `#a IN (:v1, :v2)` */
  in(attribute: string, values: readonly unknown[]): string {
    return `${this.name(attribute)} IN (${values.map((v) => this.value(v)).join(', ')})`;
  }

  /** The attribute maps for a command input; DynamoDB rejects empty ones. */
  attributes(): {
    ExpressionAttributeNames?: Record<string, string>;
    ExpressionAttributeValues?: Record<string, unknown>;
  } {
    return {
      ...(Object.keys(this.names).length ? { ExpressionAttributeNames: this.names } : {}),
      ...(Object.keys(this.values).length ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

/** Builds an UpdateExpression from SET / ADD / REMOVE clauses. */
export class Update extends Expression {
  private readonly sets: string[] = [];
  private readonly adds: string[] = [];
  private readonly removes: string[] = [];

  set(attribute: string, value: unknown): this {
    this.sets.push(`${this.name(attribute)} = ${this.value(value)}`);
    return this;
  }

  /** SET with a raw right-hand side built from this expression's placeholders. */
  setTo(attribute: string, rhs: string): this {
    this.sets.push(`${this.name(attribute)} = ${rhs}`);
    return this;
  }

  add(attribute: string, amount: number): this {
    this.adds.push(`${this.name(attribute)} ${this.value(amount)}`);
    return this;
  }

  remove(attribute: string): this {
    this.removes.push(this.name(attribute));
    return this;
  }

  expression(): string {
    return [
      this.sets.length ? `SET ${this.sets.join(', ')}` : '',
      this.adds.length ? `ADD ${this.adds.join(', ')}` : '',
      this.removes.length ? `REMOVE ${this.removes.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join(' ');
  }
}

export const errorName = (err: unknown): string | undefined => (err instanceof Error ? err.name : undefined);

export const isConditionFailed = (err: unknown): boolean =>
  errorName(err) === 'ConditionalCheckFailedException';

/** The item a failed condition saw (ReturnValuesOnConditionCheckFailure ALL_OLD), still in wire form. */
export const conditionFailedItem = (err: unknown): Record<string, { S?: string; N?: string }> | undefined =>
  (err as { Item?: Record<string, { S?: string; N?: string }> }).Item;

export interface CancellationReason {
  Code?: string;
}

/** The per-action reasons of a TransactionCanceledException, in the order of the actions; undefined otherwise. */
export const cancellationReasons = (err: unknown): CancellationReason[] | undefined =>
  errorName(err) === 'TransactionCanceledException'
    ? ((err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? [])
    : undefined;

/** Reasons worth another attempt: another writer held the item, or capacity ran short. */
const TRANSIENT_REASONS = new Set([
  'TransactionConflict',
  'ThrottlingError',
  'ProvisionedThroughputExceeded',
]);

export const isTransientCancellation = (reasons: CancellationReason[]): boolean =>
  reasons.some((r) => r.Code !== undefined && TRANSIENT_REASONS.has(r.Code));

export const MAX_ATTEMPTS = 8;

/** Exponential back-off with full jitter, capped at one second. */
export const backOff = (attempt: number): Promise<void> =>
  sleep(Math.random() * Math.min(1000, 20 * 2 ** attempt));
