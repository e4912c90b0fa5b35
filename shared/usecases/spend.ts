import { formatUsd } from '../domain/money.js';
import {
  type CpuArchitecture,
  type PriceTable,
  priceSandbox,
  type SandboxCharge,
  type SandboxUse,
  SPEND_WINDOWS,
  type SpendWindow,
  windowHours,
} from '../domain/pricing.js';
import { isTerminal, type Run } from '../domain/run.js';
import {
  type Account,
  type AccountLimits,
  type Caller,
  capReached,
  hasSpendCaps,
  type Pod,
  type TrailingSpend,
} from '../domain/tenancy.js';
import type {
  ActiveRun,
  ActiveRuns,
  Clock,
  DirectoryRepository,
  HourlySpend,
  RunStore,
  SpendLedger,
  SpendScope,
} from '../ports.js';
import * as z from '../zod.js';

/** What runs cost and what accounts spent: pricing usage, settling sandboxes, and the spend limits. */

export interface Pricing {
  table: PriceTable;
  /** the CPU architecture of the pods' task definition */
  architecture: CpuArchitecture;
}

export const spendScopeOf = (run: Pick<Run, 'accountId' | 'projectId' | 'podId'>): SpendScope => ({
  accountId: run.accountId,
  projectId: run.projectId,
  podId: run.podId,
});

/**
 * When the run's sandbox began to cost: the pod's first event, or, for a pod that never reported, the
 * last move to PROVISIONING before its task was launched. Undefined when no sandbox ever ran.
 */
const sandboxStartedAt = (run: Run): string | undefined => {
  if (run.startedAt) return run.startedAt;
  if (!run.taskArn) return undefined;
  return run.history.findLast((change) => change.status === 'PROVISIONING')?.at;
};

type PodSize = Pick<Pod, 'cpu' | 'memoryMiB'>;

/** The sandbox time and per-run fee up to `until`; undefined for a run that never had a sandbox. */
export const sandboxCharge = (
  pricing: Pricing,
  run: Run,
  pod: PodSize,
  until: Date,
): (SandboxCharge & SandboxUse) | undefined => {
  const startedAt = sandboxStartedAt(run);
  if (!startedAt) return undefined;
  const use: SandboxUse = {
    cpu: pod.cpu,
    memoryMiB: pod.memoryMiB,
    architecture: pricing.architecture,
    runningMs: Math.max(0, until.getTime() - Date.parse(startedAt)),
  };
  return { ...use, ...priceSandbox(pricing.table, use) };
};

/**
 * Charge an ended run's sandbox, from its frozen pod size over its running time, and the per-run fee.
 * Settling twice changes nothing: the settlement is one ledger entry, written only if absent.
 */
export const settleRun = async (
  deps: { runs: RunStore; ledger: SpendLedger; pricing: Pricing; clock: Clock },
  run: Run,
): Promise<void> => {
  if (!isTerminal(run.status) || !sandboxStartedAt(run)) return;
  const snapshot = await deps.runs.getSnapshot(run.runId);
  if (!snapshot) throw new Error(`run ${run.runId} has no config snapshot to settle its sandbox from`);
  const until = run.completedAt ? new Date(run.completedAt) : deps.clock.now();
  const charge = sandboxCharge(deps.pricing, run, snapshot.pod, until);
  if (charge) await deps.ledger.settle(run.runId, charge, spendScopeOf(run));
};

const sumOf = (hours: HourlySpend[]): number => hours.reduce((sum, h) => sum + h.totalMicroUsd, 0);

/** The account's spend over its trailing windows; the 30-day window is read only when it is capped. */
export const trailingSpend = async (
  ledger: SpendLedger,
  accountId: string,
  limits: AccountLimits,
  now: Date,
): Promise<TrailingSpend> => {
  const month = windowHours(now, SPEND_WINDOWS['30d']);
  const day = windowHours(now, SPEND_WINDOWS['24h']);
  const hours = await ledger.hourlySpend(
    accountId,
    limits.monthlyCapMicroUsd > 0 ? month.from : day.from,
    day.to,
  );
  return {
    last24hMicroUsd: sumOf(hours.filter((h) => h.hour >= day.from)),
    last30dMicroUsd: limits.monthlyCapMicroUsd > 0 ? sumOf(hours) : 0,
  };
};

/**
 * What the account's other active runs have accrued and not settled: their sandbox time (from when
 * each took its slot, just before its launch) and their per-run fees. Their tokens are in the spend
 * already, recorded with each batch.
 */
const accruedByOthers = (pricing: Pricing, slots: ActiveRun[], runId: string, now: Date): number => {
  let sum = 0;
  for (const other of slots) {
    if (other.runId === runId) continue;
    const runningMs = Math.max(0, now.getTime() - Date.parse(other.since));
    const use = { cpu: other.cpu, memoryMiB: other.memoryMiB, architecture: pricing.architecture, runningMs };
    sum += priceSandbox(pricing.table, use).totalMicroUsd;
  }
  return sum;
};

/**
 * The account's slots whose runs are still active. The slot of a run that has ended (whose end could
 * not give it back) is given back here, so it neither holds a place nor counts toward the caps for ever.
 */
export const liveSlots = async (
  deps: { slots: ActiveRuns; runs: RunStore },
  accountId: string,
): Promise<ActiveRun[]> => {
  const held = await deps.slots.active(accountId);
  const runs = await Promise.all(held.map((slot) => deps.runs.get(slot.runId)));
  const live: ActiveRun[] = [];
  for (const [i, slot] of held.entries()) {
    const run = runs[i];
    if (run && !isTerminal(run.status)) live.push(slot);
    else await deps.slots.release(accountId, slot.runId);
  }
  return live;
};

/**
 * What counts toward the account's caps: its trailing spend, `unsettled` (the run's own), and what
 * its other active runs have accrued. Slots are taken at their word unless they would reach a cap;
 * then those of runs that have ended are given back and the rest counted.
 */
export const spendWithAccrued = async (
  deps: Pick<LimitDeps, 'runs' | 'ledger' | 'slots' | 'pricing'>,
  account: Pick<Account, 'accountId' | 'limits'>,
  run: { runId: string; unsettled: number },
  now: Date,
): Promise<TrailingSpend> => {
  const [spent, held] = await Promise.all([
    trailingSpend(deps.ledger, account.accountId, account.limits, now),
    deps.slots.active(account.accountId),
  ]);
  const withAccrued = (slots: ActiveRun[]): TrailingSpend => {
    const accrued = run.unsettled + accruedByOthers(deps.pricing, slots, run.runId, now);
    return {
      last24hMicroUsd: spent.last24hMicroUsd + accrued,
      last30dMicroUsd: spent.last30dMicroUsd + accrued,
    };
  };
  const spend = withAccrued(held);
  return capReached(account.limits, spend) ? withAccrued(await liveSlots(deps, account.accountId)) : spend;
};

/** A pod's frozen size and budget never change for a run, so each is read from its snapshot once. */
const FROZEN_MEMO_SIZE = 10_000;
const frozenPods = new Map<string, PodSize & Pick<Pod, 'runBudgetMicroUsd'>>();

const frozenPod = async (runs: RunStore, runId: string) => {
  const known = frozenPods.get(runId);
  if (known) return known;
  const snapshot = await runs.getSnapshot(runId);
  if (!snapshot) throw new Error(`run ${runId} has no config snapshot`);
  const { cpu, memoryMiB, runBudgetMicroUsd } = snapshot.pod;
  if (frozenPods.size >= FROZEN_MEMO_SIZE) {
    const oldest = frozenPods.keys().next().value;
    if (oldest !== undefined) frozenPods.delete(oldest);
  }
  const pod = { cpu, memoryMiB, runBudgetMicroUsd };
  frozenPods.set(runId, pod);
  return pod;
};

export interface LimitDeps {
  runs: RunStore;
  ledger: SpendLedger;
  slots: ActiveRuns;
  directory: DirectoryRepository;
  pricing: Pricing;
  clock: Clock;
}

/**
 * Why a running run must stop now, or undefined. What counts is what stopping now would cost: the
 * recorded total plus the sandbox time and per-run fee not settled yet. The run's own budget is checked
 * on every batch; the account's caps, which take a read of its spend and of its active runs, when
 * `checkCaps` (the batch added spend or time went by): the recorded spend plus what every active run of
 * the account has accrued.
 */
export const limitBreach = async (
  deps: LimitDeps,
  run: Run,
  checkCaps: boolean,
): Promise<string | undefined> => {
  if (isTerminal(run.status) || run.result) return undefined;
  const now = deps.clock.now();
  const pod = await frozenPod(deps.runs, run.runId);
  const unsettled = sandboxCharge(deps.pricing, run, pod, now)?.totalMicroUsd ?? 0;
  const runTotal = run.cost.totalUsd + unsettled;
  if (pod.runBudgetMicroUsd > 0 && runTotal >= pod.runBudgetMicroUsd) {
    return `the run reached its budget: ${formatUsd(runTotal)} of ${formatUsd(pod.runBudgetMicroUsd)}`;
  }
  if (!checkCaps) return undefined;
  const account = await deps.directory.getAccount(run.accountId);
  if (!account || !hasSpendCaps(account.limits)) return undefined;
  return capReached(
    account.limits,
    await spendWithAccrued(deps, account, { runId: run.runId, unsettled }, now),
  );
};

export const spendQuerySchema = z.strictObject({
  window: z._default(z.enum(Object.keys(SPEND_WINDOWS) as [SpendWindow, ...SpendWindow[]]), '24h'),
});

export interface AccountSpend {
  accountId: string;
  window: SpendWindow;
  /** the start of the window's first hour, and now */
  from: string;
  to: string;
  totalMicroUsd: number;
  /** the account's cap for this window; 0 = no cap */
  capMicroUsd: number;
  byProject: { projectId: string; totalMicroUsd: number }[];
  byPod: { podId: string; totalMicroUsd: number }[];
  /** every UTC day the window touches, oldest first, zero where nothing was spent: the console's chart */
  byDay: { day: string; totalMicroUsd: number }[];
}

const DAY_MS = 86_400_000;

/** The window's spend per UTC day (`YYYY-MM-DD`), from the day of its first hour to today. */
const spendByDay = (hours: HourlySpend[], startsAt: string, now: Date) => {
  const totals = new Map<string, number>();
  for (let day = Date.parse(startsAt.slice(0, 10)); day <= now.getTime(); day += DAY_MS) {
    totals.set(new Date(day).toISOString().slice(0, 10), 0);
  }
  for (const hour of hours) {
    const day = hour.hour.slice(0, 10);
    totals.set(day, (totals.get(day) ?? 0) + hour.totalMicroUsd);
  }
  return [...totals].map(([day, totalMicroUsd]) => ({ day, totalMicroUsd }));
};

const largestFirst = <K extends string>(totals: Map<string, number>, key: K) =>
  [...totals]
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(
      ([id, totalMicroUsd]) =>
        ({ [key]: id, totalMicroUsd }) as Record<K, string> & { totalMicroUsd: number },
    );

/** `GET /v1/account/spend`: what the caller's account spent over a trailing window, by project and pod. */
export const getAccountSpend = async (
  deps: { ledger: SpendLedger; directory: DirectoryRepository; clock: Clock },
  caller: Caller,
  window: SpendWindow,
): Promise<AccountSpend> => {
  const now = deps.clock.now();
  const range = windowHours(now, SPEND_WINDOWS[window]);
  const [hours, account] = await Promise.all([
    deps.ledger.hourlySpend(caller.accountId, range.from, range.to),
    deps.directory.getAccount(caller.accountId),
  ]);
  const byProject = new Map<string, number>();
  const byPod = new Map<string, number>();
  for (const hour of hours) {
    for (const [id, n] of Object.entries(hour.byProject)) byProject.set(id, (byProject.get(id) ?? 0) + n);
    for (const [id, n] of Object.entries(hour.byPod)) byPod.set(id, (byPod.get(id) ?? 0) + n);
  }
  const limits = account?.limits;
  return {
    accountId: caller.accountId,
    window,
    from: range.startsAt,
    to: now.toISOString(),
    totalMicroUsd: sumOf(hours),
    capMicroUsd: (window === '24h' ? limits?.dailyCapMicroUsd : limits?.monthlyCapMicroUsd) ?? 0,
    byProject: largestFirst(byProject, 'projectId'),
    byPod: largestFirst(byPod, 'podId'),
    byDay: spendByDay(hours, range.startsAt, now),
  };
};
