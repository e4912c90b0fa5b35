import { type BatchPlan, runAfter } from '../../shared/domain/agent-batch.js';
import type { PendingApproval } from '../../shared/domain/approval.js';
import { ConflictError, NotFoundError } from '../../shared/domain/errors.js';
import { isLaunched, type Run, statusAfter, type Transition } from '../../shared/domain/run.js';
import type {
  Applied,
  BatchWriteContext,
  RunConfigSnapshot,
  RunFacts,
  RunSecrets,
  RunStore,
} from '../../shared/ports.js';

/**
 * The run store in memory, for unit tests of the use cases: it writes on the same conditions the
 * DynamoDB store does (a transition while the run is still in its `from` status, a batch while the
 * run is still at its version), and records what was written.
 */
export class MemoryRuns implements RunStore {
  readonly runs = new Map<string, Run>();
  readonly secrets = new Map<string, RunSecrets>();
  readonly snapshots = new Map<string, RunConfigSnapshot>();
  readonly batches: { runId: string; plan: BatchPlan; written: BatchWriteContext }[] = [];
  /** the transitions written, in order */
  readonly applied: Transition[] = [];

  put(run: Run, secrets: RunSecrets = {}, snapshot?: RunConfigSnapshot): this {
    this.runs.set(run.runId, structuredClone(run));
    this.secrets.set(run.runId, { ...secrets });
    if (snapshot) this.snapshots.set(run.runId, structuredClone(snapshot));
    return this;
  }

  /** The run as stored (not a copy): for a test to move it behind a use case's back. */
  stored(runId: string): Run {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    return run;
  }

  /** the run each idempotency key created, by account and key */
  readonly idempotencyKeys = new Map<string, string>();

  async create(
    run: Run,
    snapshot: RunConfigSnapshot,
    idempotencyKey?: string,
  ): Promise<{ run: Run; created: boolean }> {
    if (this.runs.has(run.runId)) throw new ConflictError(`run ${run.runId} already exists`);
    const key = idempotencyKey === undefined ? undefined : `${run.accountId}#${idempotencyKey}`;
    const earlier = key === undefined ? undefined : this.idempotencyKeys.get(key);
    if (earlier !== undefined) return { run: structuredClone(this.stored(earlier)), created: false };
    if (key !== undefined) this.idempotencyKeys.set(key, run.runId);
    this.put(run, {}, snapshot);
    return { run: structuredClone(run), created: true };
  }

  async get(runId: string): Promise<Run | undefined> {
    const run = this.runs.get(runId);
    return run && structuredClone(run);
  }

  async getWithSecrets(runId: string) {
    const run = await this.get(runId);
    return run && { run, secrets: { ...this.secrets.get(runId) } };
  }

  async getSnapshot(runId: string) {
    const snapshot = this.snapshots.get(runId);
    return snapshot && structuredClone(snapshot);
  }

  async apply(_decidedFrom: Run, t: Transition): Promise<Applied> {
    const run = this.runs.get(t.runId);
    if (!run) return { applied: false };
    const closes = t.closeApproval && run.pendingApproval?.seq !== t.closeApproval.seq;
    if (run.status !== t.from || closes) return { applied: false, run: structuredClone(run) };
    Object.assign(run, JSON.parse(JSON.stringify(t.patch)));
    run.status = statusAfter(t);
    run.history.push(...t.path.map((status) => ({ status, at: t.at })));
    if (run.status !== 'QUEUED') delete run.waitingFor;
    if (t.closeApproval) {
      delete run.pendingApproval;
      run.approvals = [...(run.approvals ?? []), t.closeApproval];
    }
    if (t.artifacts) run.artifacts = [...run.artifacts, ...t.artifacts];
    if (t.revokeCredentials) {
      const secrets = this.secrets.get(t.runId) ?? {};
      delete secrets.agentTokenHash;
      delete secrets.launchCodeHash;
    }
    run.version += 1;
    run.updatedAt = t.at;
    this.applied.push(t);
    return { applied: true, run: structuredClone(run) };
  }

  async recordFacts(runId: string, facts: RunFacts) {
    const run = this.runs.get(runId);
    if (!run) throw new NotFoundError('run', runId);
    Object.assign(run, JSON.parse(JSON.stringify(facts)), { version: run.version + 1 });
  }

  async recordBatch(run: Run, plan: BatchPlan, written: BatchWriteContext) {
    const stored = this.runs.get(run.runId);
    if (!stored) throw new NotFoundError('run', run.runId);
    if (plan.accepted.length === 0) return true;
    if (stored.version !== run.version) return false;
    this.runs.set(run.runId, structuredClone(runAfter(stored, plan)));
    this.batches.push({ runId: run.runId, plan, written });
    return true;
  }

  async parkPodToken(runId: string, token: string) {
    const run = this.runs.get(runId);
    if (!run) throw new NotFoundError('run', runId);
    this.secrets.set(runId, { ...this.secrets.get(runId), podTaskToken: token });
    run.version += 1;
    return { run: structuredClone(run), secrets: { ...this.secrets.get(runId) } };
  }

  async clearPodToken(runId: string) {
    delete this.secrets.get(runId)?.podTaskToken;
  }

  async parkApproval(runId: string, pending: PendingApproval, token: string) {
    const run = this.runs.get(runId);
    if (run?.status !== 'AWAITING_APPROVAL' || run.pendingApproval?.seq !== pending.seq) return undefined;
    run.pendingApproval = structuredClone(pending);
    this.secrets.set(runId, { ...this.secrets.get(runId), podTaskToken: token });
    run.version += 1;
    return structuredClone(run);
  }

  async setLaunchCode(runId: string, codeHash: string) {
    const secrets = { ...this.secrets.get(runId), launchCodeHash: codeHash };
    delete secrets.agentTokenHash;
    this.secrets.set(runId, secrets);
  }

  async exchangeLaunchCode(
    runId: string,
    exchange: { codeHash: string; taskArn: string; tokenHash: string },
  ) {
    const run = this.runs.get(runId);
    const secrets = this.secrets.get(runId);
    if (!run || !secrets || !isLaunched(run.status)) return false;
    if (secrets.launchCodeHash !== exchange.codeHash || run.taskArn !== exchange.taskArn) return false;
    delete secrets.launchCodeHash;
    secrets.agentTokenHash = exchange.tokenHash;
    return true;
  }
}
