import type { AgentEvent } from '../schemas/agent-events.js';
import type { CheckpointSignal } from './approval.js';
import { ValidationError } from './errors.js';
import type { TokenCharge, TokenCounts } from './pricing.js';
import {
  type Artifact,
  canAdvancePhase,
  isTerminal,
  type ModelUsage,
  noUsage,
  type PodResult,
  type Run,
  type RunCost,
  type RunPatch,
  type RunStatus,
  statusAfter,
  type Transition,
} from './run.js';

/**
 * The rule that turns a batch of pod events into what changes: pure, decided from the run as read.
 * The store writes the plan in one conditional write (the run's version), so either all of it lands
 * or, when another writer got there first, the batch is planned again from what is stored. Because
 * every effect (the start, the pause at a checkpoint, the result) is written with the seqs that cause
 * it, a batch the pod sends again finds them on the run and completes what is still owed.
 */

export type StepEvent = Extract<AgentEvent, { type: 'step' }>;
type CheckpointEvent = Extract<AgentEvent, { type: 'checkpoint' }>;

/** A run's record must stay far from DynamoDB's 400 KB item limit, whatever its pod sends. */
export const RUN_LIMITS = {
  /** distinct models in the run's usage */
  models: 20,
  /** artifacts kept on the run; later ones are still recorded as events */
  artifacts: 20,
  /** gaps in the seqs recorded: a pod sends its batches in order, so only a lost batch leaves one */
  seqRanges: 64,
} as const;

/** Tokens as a pod reports them: the cache counts may be left out. */
type ReportedTokens = Pick<TokenCounts, 'inputTokens' | 'outputTokens'> &
  Partial<Pick<TokenCounts, 'cacheReadTokens' | 'cacheWriteTokens'>>;

/** One priced usage line of the ledger. */
export interface LedgerEntry extends TokenCounts {
  seq: number;
  at: string;
  from: 'usage' | 'step';
  model: string;
  charge?: TokenCharge;
}

export interface BatchPlan {
  /** the events new to the run, in seq order; the others were recorded before */
  accepted: AgentEvent[];
  duplicates: number;
  /** the seqs recorded once the batch is, as sorted disjoint ranges */
  seqs: [number, number][];
  lastSeq: number;
  /** the status change: the first event starts a provisioned run, a checkpoint pauses a supervised one */
  transition?: Transition;
  /** fields the batch sets besides the status */
  patch: RunPatch;
  /** appended to the run's artifacts */
  artifacts: Artifact[];
  /** added to the run's usage (per model) and cost */
  usage: Record<string, ModelUsage>;
  cost: RunCost;
  ledger: LedgerEntry[];
  steps: StepEvent[];
  /** events kept as records of their own: checkpoint (its details), artifact, result */
  records: AgentEvent[];
  /** what the batch adds to the account's spend, micro-USD */
  spendMicroUsd: number;
  /** when it was planned: the run's updatedAt once written */
  at: string;
}

/** Adds `seqs` to sorted disjoint inclusive ranges, merging neighbours. */
export const withSeqs = (
  ranges: readonly [number, number][],
  seqs: readonly number[],
): [number, number][] => {
  const all = [
    ...ranges.map(([a, b]) => [a, b] as [number, number]),
    ...seqs.map((s) => [s, s] as [number, number]),
  ];
  all.sort((x, y) => x[0] - y[0]);
  const merged: [number, number][] = [];
  for (const [from, to] of all) {
    const last = merged.at(-1);
    if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  return merged;
};

export const hasSeq = (ranges: readonly [number, number][], seq: number): boolean =>
  ranges.some(([from, to]) => seq >= from && seq <= to);

/** The status change a batch makes, decided from where the run is. */
const statusChange = (
  run: Run,
  started: boolean,
  checkpoint: CheckpointEvent | undefined,
  now: Date,
): { path: RunStatus[]; patch: RunPatch } => {
  const path: RunStatus[] = [];
  const patch: RunPatch = {};
  let status = run.status;
  if (started && status === 'PROVISIONING') {
    path.push('RUNNING');
    patch.startedAt = run.startedAt ?? now.toISOString();
    status = 'RUNNING';
  }
  // A supervised run pauses before the pod hears back: the answer to this batch must say `wait`.
  if (checkpoint && run.mode === 'supervised' && status === 'RUNNING' && !run.pendingApproval) {
    path.push('AWAITING_APPROVAL');
    patch.pendingApproval = {
      seq: checkpoint.seq,
      name: checkpoint.name,
      summary: checkpoint.summary,
      requestedAt: now.toISOString(),
    };
  }
  return { path, patch };
};

/**
 * Plans a batch against the run as read. `price` prices each usage line (absent: unpriced). Refuses
 * (ValidationError) a batch that would take the run past its limits.
 */
export const planBatch = (
  run: Run,
  events: readonly AgentEvent[],
  now: Date,
  price?: (model: string, tokens: TokenCounts) => TokenCharge,
): BatchPlan => {
  const recorded = run.seqs ?? [];
  const bySeq = new Map<number, AgentEvent>();
  for (const e of events) if (!bySeq.has(e.seq) && !hasSeq(recorded, e.seq)) bySeq.set(e.seq, e);
  const accepted = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  const seqs = withSeqs(
    recorded,
    accepted.map((e) => e.seq),
  );
  if (seqs.length > RUN_LIMITS.seqRanges) {
    throw new ValidationError(
      `the run's event seqs would have more than ${RUN_LIMITS.seqRanges} gaps; send events in seq order`,
    );
  }

  const patch: RunPatch = {};
  const usage: Record<string, ModelUsage> = {};
  const cost: RunCost = { tokenUsd: 0, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 0, totalUsd: 0 };
  const ledger: LedgerEntry[] = [];
  const steps: StepEvent[] = [];
  const records: AgentEvent[] = [];
  const artifacts: Artifact[] = [];
  let phase = run.phase;
  let heartbeatAt = run.lastHeartbeatAt;
  let checkpoint: CheckpointEvent | undefined;
  let result: PodResult | undefined;

  const addUsage = (e: AgentEvent, model: string, tokens: ReportedTokens) => {
    const counts: TokenCounts = {
      inputTokens: tokens.inputTokens,
      outputTokens: tokens.outputTokens,
      cacheReadTokens: tokens.cacheReadTokens ?? 0,
      cacheWriteTokens: tokens.cacheWriteTokens ?? 0,
    };
    const charge = price?.(model, counts);
    ledger.push({
      seq: e.seq,
      at: e.at,
      from: e.type === 'step' ? 'step' : 'usage',
      model,
      ...counts,
      charge,
    });
    const line = usage[model] ?? noUsage();
    usage[model] = line;
    line.inputTokens += counts.inputTokens;
    line.outputTokens += counts.outputTokens;
    line.cacheReadTokens += counts.cacheReadTokens;
    line.cacheWriteTokens += counts.cacheWriteTokens;
    if (charge) {
      line.costMicroUsd += charge.tokenMicroUsd;
      cost.tokenUsd += charge.tokenMicroUsd;
      cost.feeUsd += charge.feeMicroUsd;
      cost.totalUsd += charge.totalMicroUsd;
    }
  };

  for (const e of accepted) {
    switch (e.type) {
      case 'step':
        steps.push(e);
        if (e.usage) addUsage(e, e.model ?? 'unknown', e.usage);
        break;
      case 'usage':
        addUsage(e, e.model, e);
        break;
      case 'artifact': {
        records.push(e);
        if (run.artifacts.length + artifacts.length < RUN_LIMITS.artifacts) {
          artifacts.push({
            kind: e.kind,
            url: e.url,
            at: e.at,
            ...(e.sha === undefined ? {} : { sha: e.sha }),
            ...(e.branch === undefined ? {} : { branch: e.branch }),
            ...(e.repo === undefined ? {} : { repo: e.repo }),
          });
        }
        break;
      }
      case 'checkpoint':
        records.push(e);
        checkpoint ??= e;
        break;
      case 'result':
        records.push(e);
        result ??= {
          outcome: e.outcome,
          exitReason: e.exitReason,
          message: e.message,
          ...(e.turns === undefined ? {} : { turns: e.turns }),
          ...(e.durationMs === undefined ? {} : { durationMs: e.durationMs }),
        };
        break;
      case 'phase':
        if (canAdvancePhase(phase, e.phase)) phase = e.phase;
        break;
      case 'heartbeat': {
        const at = new Date(e.at).toISOString();
        // Stryker disable next-line EqualityOperator: equivalent, a heartbeat at the same time sets the same value
        if (!heartbeatAt || at > heartbeatAt) heartbeatAt = at;
        break;
      }
    }
  }

  const models = new Set([...Object.keys(run.usage), ...Object.keys(usage)]);
  if (models.size > RUN_LIMITS.models) {
    throw new ValidationError(`a run reports usage for at most ${RUN_LIMITS.models} models`);
  }
  if (phase !== run.phase) patch.phase = phase;
  if (heartbeatAt !== run.lastHeartbeatAt) patch.lastHeartbeatAt = heartbeatAt;
  if (result && !run.result) patch.result = result;

  const change = isTerminal(run.status)
    ? { path: [], patch: {} }
    : statusChange(run, accepted.length > 0, checkpoint, now);
  const transition: Transition | undefined =
    change.path.length > 0
      ? {
          runId: run.runId,
          from: run.status,
          path: change.path,
          at: now.toISOString(),
          patch: change.patch,
          revokeCredentials: false,
        }
      : undefined;

  const lastSeq = Math.max(run.lastSeq, accepted.at(-1)?.seq ?? 0);
  return {
    accepted,
    duplicates: events.length - accepted.length,
    seqs,
    lastSeq,
    transition,
    patch,
    artifacts,
    usage,
    cost,
    ledger,
    steps,
    records,
    spendMicroUsd: cost.totalUsd,
    at: now.toISOString(),
  };
};

const addUsageTo = (run: Run, usage: Record<string, ModelUsage>): Record<string, ModelUsage> => {
  const total: Record<string, ModelUsage> = structuredClone(run.usage);
  for (const [model, line] of Object.entries(usage)) {
    const sum = total[model] ?? noUsage();
    total[model] = sum;
    for (const field of Object.keys(line) as (keyof ModelUsage)[]) sum[field] += line[field];
  }
  return total;
};

/** The run as stored once the plan is written: the store's write matches the run it was planned from. */
export const runAfter = (run: Run, plan: BatchPlan): Run => {
  if (plan.accepted.length === 0) return run;
  const t = plan.transition;
  const history = t ? [...run.history, ...t.path.map((status) => ({ status, at: t.at }))] : run.history;
  return {
    ...run,
    ...plan.patch,
    ...t?.patch,
    status: t ? statusAfter(t) : run.status,
    history,
    seqs: plan.seqs,
    lastSeq: plan.lastSeq,
    artifacts: [...run.artifacts, ...plan.artifacts],
    usage: addUsageTo(run, plan.usage),
    cost: {
      tokenUsd: run.cost.tokenUsd + plan.cost.tokenUsd,
      sandboxCpuUsd: run.cost.sandboxCpuUsd,
      sandboxMemoryUsd: run.cost.sandboxMemoryUsd,
      feeUsd: run.cost.feeUsd + plan.cost.feeUsd,
      totalUsd: run.cost.totalUsd + plan.cost.totalUsd,
    },
    version: run.version + 1,
    updatedAt: plan.at,
  };
};

/**
 * What the state machine is still owed from what is stored: the checkpoint a supervised run paused
 * at, until its approval is requested; the pod's result, unless a person decides first. Derived from
 * the stored run, so a batch sent again (or the wait parked late) completes what a failed call left.
 */
export const owedSignal = (run: Run): CheckpointSignal | PodResult | undefined => {
  if (isTerminal(run.status)) return undefined;
  const pending = run.pendingApproval;
  if (run.status === 'AWAITING_APPROVAL') {
    return pending && !pending.approvalId
      ? { outcome: 'checkpoint', checkpoint: { seq: pending.seq, name: pending.name } }
      : undefined;
  }
  return run.result;
};
