import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import type { Run } from '../../shared/domain/run.js';
import { type Account, preflight } from '../../shared/domain/tenancy.js';
import type {
  DirectoryRepository,
  HourlySpend,
  RunConfigSnapshot,
  RunStore,
  SpendLedger,
  StepContentStore,
  TaskSignals,
} from '../../shared/ports.js';
import { controlOf, ingestEvents } from '../../shared/usecases/agent.js';
import {
  getAccountSpend,
  limitBreach,
  type Pricing,
  settleRun,
  trailingSpend,
} from '../../shared/usecases/spend.js';
import { podFactory, runFactory, snapshotFactory } from '../support/factories.js';
import { MemoryActiveRuns } from '../support/memory-active-runs.js';
import { MemoryRuns } from '../support/memory-runs.js';

const pricing: Pricing = { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' };
const NOW = new Date('2026-03-01T05:30:00.000Z');
const clock = { now: () => NOW };
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();

let runCount = 0;
/** Each test its own run id: a run's frozen pod is remembered per run. */
const aRun = (overrides: Partial<Run> = {}) =>
  runFactory({ runId: `run_spend_${++runCount}`, status: 'RUNNING', startedAt: ago(30_000), ...overrides });

const snapshotWith = (pod: Partial<RunConfigSnapshot['pod']> = {}): RunConfigSnapshot =>
  snapshotFactory({ pod: podFactory(pod) });

/** The run store's snapshots and the spend ledger, as one fake. */
type RunsAndLedger = RunStore & SpendLedger;
const fakeRuns = (overrides: Partial<RunsAndLedger> = {}) =>
  ({
    // every other run is still going
    get: vi.fn(async (runId: string) => aRun({ runId })),
    getSnapshot: vi.fn(async () => snapshotWith()),
    settle: vi.fn(async () => true),
    hourlySpend: vi.fn(async (): Promise<HourlySpend[]> => []),
    ...overrides,
  }) as unknown as RunsAndLedger;

const account = (limits: Account['limits']): Account => ({
  accountId: 'acct-1',
  name: 'A',
  paymentStatus: 'active',
  limits,
  updatedAt: ago(0),
});
const directoryWith = (a: Account | undefined) =>
  ({ getAccount: vi.fn(async () => a) }) as unknown as DirectoryRepository;

const hour = (h: string, total: number, byProject = {}, byPod = {}): HourlySpend => ({
  hour: h,
  totalMicroUsd: total,
  byProject,
  byPod,
});

describe('preflight spend caps', () => {
  const pod = podFactory();
  it('cancels at or over the daily or monthly cap, with budget_hit', () => {
    const capped = account({ dailyCapMicroUsd: 1_000_000, monthlyCapMicroUsd: 5_000_000 });
    expect(preflight(pod, capped, { last24hMicroUsd: 999_999, last30dMicroUsd: 4_999_999 })).toEqual({
      ok: true,
    });
    expect(preflight(pod, capped, { last24hMicroUsd: 1_000_000, last30dMicroUsd: 1_000_000 })).toMatchObject({
      ok: false,
      exitReason: 'budget_hit',
      message: expect.stringContaining('last 24 hours'),
    });
    expect(preflight(pod, capped, { last24hMicroUsd: 0, last30dMicroUsd: 5_000_001 })).toMatchObject({
      exitReason: 'budget_hit',
      message: expect.stringContaining('last 30 days'),
    });
  });

  it('treats a cap of 0 as no cap, and a payment problem before the caps', () => {
    const spend = { last24hMicroUsd: 10 ** 12, last30dMicroUsd: 10 ** 12 };
    expect(preflight(pod, account({ dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 }), spend)).toEqual({
      ok: true,
    });
    const unpaid = {
      ...account({ dailyCapMicroUsd: 1, monthlyCapMicroUsd: 0 }),
      paymentStatus: 'payment_required' as const,
    };
    expect(preflight(pod, unpaid, spend)).toMatchObject({ exitReason: 'payment_required' });
    expect(
      preflight(
        podFactory({ enabled: false }),
        account({ dailyCapMicroUsd: 1, monthlyCapMicroUsd: 0 }),
        spend,
      ),
    ).toMatchObject({
      exitReason: 'cancelled',
    });
  });
});

describe('settleRun', () => {
  it('charges the frozen pod size over the running time, and the per-run fee, to the run and its scope', async () => {
    const runs = fakeRuns();
    const run = aRun({
      status: 'COMPLETED',
      startedAt: ago(90_500),
      completedAt: ago(0),
      taskArn: 'arn:task/1',
    });
    await settleRun({ runs, ledger: runs, pricing, clock }, run);
    expect(runs.settle).toHaveBeenCalledWith(
      run.runId,
      {
        cpu: 1024,
        memoryMiB: 2048,
        architecture: 'ARM64',
        runningMs: 90_500,
        billedSeconds: 91,
        cpuMicroUsd: 818,
        memoryMicroUsd: 180,
        feeMicroUsd: 10_020,
        totalMicroUsd: 11_018,
        priceTableVersion: 'builtin-2025-11',
      },
      { accountId: 'acct-1', projectId: 'proj-1', podId: 'pod-1' },
    );
  });

  it('bills a pod that never reported from the launch of its sandbox', async () => {
    const runs = fakeRuns({ getSnapshot: vi.fn(async () => snapshotWith({ cpu: 4096, memoryMiB: 8192 })) });
    const run = aRun({
      status: 'FAILED',
      startedAt: undefined,
      taskArn: 'arn:task/2',
      history: [
        { status: 'QUEUED', at: ago(400_000) },
        { status: 'PROVISIONING', at: ago(300_000) },
        { status: 'FAILED', at: ago(0) },
      ],
      completedAt: ago(0),
    });
    await settleRun({ runs, ledger: runs, pricing, clock }, run);
    expect(runs.settle).toHaveBeenCalledWith(
      run.runId,
      expect.objectContaining({ runningMs: 300_000, billedSeconds: 300, cpu: 4096 }),
      expect.anything(),
    );
  });

  it('charges nothing for a run that never had a sandbox or has not ended', async () => {
    const runs = fakeRuns();
    await settleRun(
      { runs, ledger: runs, pricing, clock },
      aRun({ status: 'CANCELLED', startedAt: undefined }),
    );
    await settleRun(
      { runs, ledger: runs, pricing, clock },
      aRun({ status: 'RUNNING', taskArn: 'arn:task/3' }),
    );
    expect(runs.settle).not.toHaveBeenCalled();
    expect(runs.getSnapshot).not.toHaveBeenCalled();
  });
});

describe('trailingSpend', () => {
  it('reads 24 hours when only the daily cap is set', async () => {
    const runs = fakeRuns({ hourlySpend: vi.fn(async () => [hour('2026-03-01T01', 7)]) });
    const spend = await trailingSpend(runs, 'acct-1', { dailyCapMicroUsd: 1, monthlyCapMicroUsd: 0 }, NOW);
    expect(runs.hourlySpend).toHaveBeenCalledWith('acct-1', '2026-02-28T06', '2026-03-01T05');
    expect(spend).toEqual({ last24hMicroUsd: 7, last30dMicroUsd: 0 });
  });

  it('reads 30 days once and counts only the last 24 hours toward the daily window', async () => {
    const runs = fakeRuns({
      hourlySpend: vi.fn(async () => [
        hour('2026-02-01T00', 100),
        hour('2026-02-28T05', 20),
        hour('2026-02-28T06', 3),
      ]),
    });
    const spend = await trailingSpend(runs, 'acct-1', { dailyCapMicroUsd: 1, monthlyCapMicroUsd: 1 }, NOW);
    expect(runs.hourlySpend).toHaveBeenCalledWith('acct-1', '2026-01-30T06', '2026-03-01T05');
    expect(spend).toEqual({ last24hMicroUsd: 3, last30dMicroUsd: 123 });
  });
});

describe('limitBreach', () => {
  const deps = (runs: RunsAndLedger, a?: Account) => ({
    runs,
    ledger: runs,
    directory: directoryWith(a),
    pricing,
    clock,
    slots: new MemoryActiveRuns(),
  });

  it('stops a run whose total with its unsettled sandbox time and fee reaches its budget', async () => {
    // 30 s running bills the 60 s minimum: 540 + 119 + fee 10,013 = 10,672 not settled yet
    const runs = fakeRuns({ getSnapshot: vi.fn(async () => snapshotWith({ runBudgetMicroUsd: 50_000 })) });
    const over = aRun({
      cost: { tokenUsd: 38_000, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 1_328, totalUsd: 39_328 },
    });
    expect(await limitBreach(deps(runs), over, false)).toMatch(
      /reached its budget: \$0\.050000 of \$0\.050000/,
    );
    const under = aRun({ cost: { ...over.cost, totalUsd: 39_327 } });
    expect(await limitBreach(deps(runs), under, false)).toBeUndefined();
  });

  it("checks the account's caps only when the batch added spend", async () => {
    const runs = fakeRuns({ hourlySpend: vi.fn(async () => [hour('2026-03-01T05', 89_328)]) });
    const capped = account({ dailyCapMicroUsd: 100_000, monthlyCapMicroUsd: 0 });
    const d = deps(runs, capped);
    expect(await limitBreach(d, aRun(), false)).toBeUndefined();
    expect(d.directory.getAccount).not.toHaveBeenCalled();
    // 89,328 recorded + 10,672 unsettled = 100,000
    expect(await limitBreach(d, aRun(), true)).toMatch(/last 24 hours; its cap is \$0\.100000/);
    const lower = fakeRuns({ hourlySpend: vi.fn(async () => [hour('2026-03-01T05', 89_327)]) });
    expect(await limitBreach(deps(lower, capped), aRun(), true)).toBeUndefined();
  });

  it("counts what the account's other active runs have accrued, and not the run itself twice", async () => {
    const runs = fakeRuns({ hourlySpend: vi.fn(async () => [hour('2026-03-01T05', 38_281)]) });
    const d = deps(runs, account({ dailyCapMicroUsd: 300_000, monthlyCapMicroUsd: 0 }));
    const run = aRun();
    // 4 vCPU and 30 GB for an hour with its fee: 251,046; this run's own 30 s: 10,672
    await d.slots.take(
      'acct-1',
      { runId: 'run_other', since: ago(3_600_000), cpu: 4096, memoryMiB: 30_720 },
      0,
    );
    await d.slots.take('acct-1', { runId: run.runId, since: ago(30_000), cpu: 1024, memoryMiB: 2048 }, 0);
    expect(await limitBreach(d, run, true)).toBeUndefined();
    const over = fakeRuns({ hourlySpend: vi.fn(async () => [hour('2026-03-01T05', 38_282)]) });
    expect(await limitBreach({ ...d, runs: over, ledger: over }, run, true)).toMatch(
      /its cap is \$0\.300000/,
    );
  });

  it('gives back the slot of a run that has ended when it alone would reach a cap, and counts the rest', async () => {
    const ended = aRun({ runId: 'run_spend_ended', status: 'FAILED' });
    const runs = Object.assign(fakeRuns(), {
      get: vi.fn(async (runId: string) => (runId === ended.runId ? ended : aRun({ runId }))),
    });
    const d = deps(runs, account({ dailyCapMicroUsd: 100_000, monthlyCapMicroUsd: 0 }));
    const run = aRun();
    await d.slots.take(
      'acct-1',
      { runId: ended.runId, since: ago(3_600_000), cpu: 4096, memoryMiB: 30_720 },
      0,
    );
    expect(await limitBreach(d, run, true)).toBeUndefined();
    expect(await d.slots.active('acct-1')).toEqual([]);
  });

  it('leaves ended runs and runs with a result alone', async () => {
    const runs = fakeRuns({ getSnapshot: vi.fn(async () => snapshotWith({ runBudgetMicroUsd: 1 })) });
    expect(await limitBreach(deps(runs), aRun({ status: 'STOPPED' }), true)).toBeUndefined();
    expect(await limitBreach(deps(runs), aRun({ result: { outcome: 'completed' } }), true)).toBeUndefined();
    expect(runs.getSnapshot).not.toHaveBeenCalled();
  });
});

describe('getAccountSpend', () => {
  it('sums the window by project and pod, largest first, with the window’s cap', async () => {
    const runs = fakeRuns({
      hourlySpend: vi.fn(async () => [
        hour('2026-02-28T10', 300, { p1: 100, p2: 200 }, { a: 300 }),
        hour('2026-03-01T05', 50, { p1: 50 }, { b: 50 }),
      ]),
    });
    const caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' as const };
    const directory = directoryWith(account({ dailyCapMicroUsd: 1_000, monthlyCapMicroUsd: 9_000 }));
    const spend = await getAccountSpend({ ledger: runs, directory, clock }, caller, '30d');
    expect(runs.hourlySpend).toHaveBeenCalledWith('acct-1', '2026-01-30T06', '2026-03-01T05');
    expect(spend).toEqual({
      accountId: 'acct-1',
      window: '30d',
      from: '2026-01-30T06:00:00.000Z',
      to: NOW.toISOString(),
      totalMicroUsd: 350,
      capMicroUsd: 9_000,
      byProject: [
        { projectId: 'p2', totalMicroUsd: 200 },
        { projectId: 'p1', totalMicroUsd: 150 },
      ],
      byPod: [
        { podId: 'a', totalMicroUsd: 300 },
        { podId: 'b', totalMicroUsd: 50 },
      ],
      byDay: expect.any(Array),
    });
  });

  it('gives every day of the window oldest first, zero where nothing was spent, for the chart', async () => {
    const runs = fakeRuns({
      hourlySpend: vi.fn(async () => [
        hour('2026-02-28T10', 300, { p1: 300 }, { a: 300 }),
        hour('2026-02-28T23', 20, { p1: 20 }, { a: 20 }),
        hour('2026-03-01T05', 50, { p1: 50 }, { b: 50 }),
      ]),
    });
    const caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' as const };

    const month = await getAccountSpend(
      { ledger: runs, directory: directoryWith(undefined), clock },
      caller,
      '30d',
    );
    const day = await getAccountSpend(
      { ledger: runs, directory: directoryWith(undefined), clock },
      caller,
      '24h',
    );

    expect(month.byDay).toHaveLength(31);
    expect(month.byDay[0]).toEqual({ day: '2026-01-30', totalMicroUsd: 0 });
    expect(month.byDay.slice(-2)).toEqual([
      { day: '2026-02-28', totalMicroUsd: 320 },
      { day: '2026-03-01', totalMicroUsd: 50 },
    ]);
    expect(day.byDay.map((d) => d.day)).toEqual(['2026-02-28', '2026-03-01']);
  });
});

describe('ingestEvents and spend', () => {
  it('prices the batch, and a run pushed over its budget ends FAILED / budget_hit with the pod told to stop', async () => {
    const run = aRun({
      cost: { tokenUsd: 0, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 0, totalUsd: 0 },
    });
    const runs = new MemoryRuns().put(
      run,
      { podTaskToken: 'token-1' },
      snapshotWith({ runBudgetMicroUsd: 1_000_000 }),
    );
    const ledger = { settle: vi.fn(), hourlySpend: vi.fn(async () => []) } as unknown as SpendLedger;
    const signals = {
      failTask: vi.fn(async () => 'sent'),
      heartbeat: vi.fn(),
      succeedTask: vi.fn(),
    } as unknown as TaskSignals;
    const answer = await ingestEvents(
      {
        runs,
        ledger,
        signals,
        clock,
        stepContent: {} as StepContentStore,
        directory: directoryWith(undefined),
        pricing,
        slots: new MemoryActiveRuns(),
      },
      { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 },
      { run, secrets: { podTaskToken: 'token-1' } },
      [
        {
          seq: 1,
          at: ago(0),
          type: 'usage',
          model: 'claude-sonnet-4-5',
          inputTokens: 1_000_000,
          outputTokens: 0,
        },
      ],
    );
    const [written] = runs.batches;
    expect(written?.written.scope).toEqual({ accountId: 'acct-1', projectId: 'proj-1', podId: 'pod-1' });
    expect(written?.plan.ledger[0]?.charge).toMatchObject({ tokenMicroUsd: 3_000_000, feeMicroUsd: 60_000 });
    expect(runs.stored(run.runId)).toMatchObject({
      status: 'FAILED',
      exitReason: 'budget_hit',
      completedAt: NOW.toISOString(),
    });
    expect(signals.failTask).toHaveBeenCalledWith(
      'token-1',
      'Run.BudgetHit',
      expect.stringMatching(/budget/),
    );
    expect(answer.control.action).toBe('stop');
  });
});

describe('ingestEvents and the caps', () => {
  it("checks the account's caps on a heartbeat, which adds no spend while the sandbox accrues", async () => {
    const run = aRun({ startedAt: ago(3_600_000) });
    const runs = new MemoryRuns().put(run, { podTaskToken: 'pod-wait' }, snapshotWith());
    const signals = { failTask: vi.fn(async () => 'sent'), heartbeat: vi.fn() } as unknown as TaskSignals;
    const ledger = { settle: vi.fn(), hourlySpend: vi.fn(async () => []) } as unknown as SpendLedger;
    const answer = await ingestEvents(
      {
        runs,
        ledger,
        signals,
        clock,
        stepContent: {} as StepContentStore,
        // an hour of 1 vCPU and 2 GB with its fee: 50,290
        directory: directoryWith(account({ dailyCapMicroUsd: 50_290, monthlyCapMicroUsd: 0 })),
        pricing,
        slots: new MemoryActiveRuns(),
      },
      { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 },
      { run, secrets: { podTaskToken: 'pod-wait' } },
      [{ seq: 1, at: ago(0), type: 'heartbeat' }],
    );
    expect(answer.control.action).toBe('stop');
    expect(runs.stored(run.runId)).toMatchObject({ status: 'FAILED', exitReason: 'budget_hit' });
  });
});

describe('controlOf: a paused pod asking what to do', () => {
  const settings = { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 };
  const pausedFor = (ms: number, budget: number, a?: Account, spent: HourlySpend[] = []) => {
    const run = aRun({ status: 'AWAITING_APPROVAL', startedAt: ago(ms), taskArn: 'arn:task/paused' });
    const runs = new MemoryRuns().put(
      run,
      { podTaskToken: 'approval-wait' },
      snapshotWith({ cpu: 4096, memoryMiB: 30_720, runBudgetMicroUsd: budget }),
    );
    const ledger = { settle: vi.fn(), hourlySpend: vi.fn(async () => spent) } as unknown as SpendLedger;
    const signals = { failTask: vi.fn(async () => 'sent') } as unknown as TaskSignals;
    const deps = {
      runs,
      ledger,
      signals,
      clock,
      stepContent: {} as StepContentStore,
      directory: directoryWith(a),
      pricing,
      slots: new MemoryActiveRuns(),
    };
    return { run, runs, signals, deps };
  };

  // 4 vCPU and 30 GB for an hour: 129,520 + 106,800 of sandbox and a fee of 14,726 = 251,046
  it('ends a run paused past its budget, counting the sandbox time accrued while paused', async () => {
    const over = pausedFor(3_600_000, 251_046);
    expect(await controlOf(over.deps, settings, over.run)).toMatchObject({ action: 'stop' });
    expect(over.runs.stored(over.run.runId)).toMatchObject({ status: 'FAILED', exitReason: 'budget_hit' });
    expect(over.signals.failTask).toHaveBeenCalledWith(
      'approval-wait',
      'Run.BudgetHit',
      expect.stringMatching(/reached its budget: \$0\.251046 of \$0\.251046/),
    );

    const under = pausedFor(3_600_000, 251_047);
    expect(await controlOf(under.deps, settings, under.run)).toEqual({
      action: 'wait',
      reason: 'awaiting approval',
      pollAfterMs: 3000,
    });
    expect(under.runs.stored(under.run.runId).status).toBe('AWAITING_APPROVAL');
    expect(under.signals.failTask).not.toHaveBeenCalled();
  });

  it('ends a paused run whose accrued sandbox time takes its account to a cap, though it added no spend', async () => {
    const capped = account({ dailyCapMicroUsd: 300_000, monthlyCapMicroUsd: 0 });
    const over = pausedFor(3_600_000, 0, capped, [hour('2026-03-01T04', 48_954)]);
    expect(await controlOf(over.deps, settings, over.run)).toMatchObject({ action: 'stop' });
    expect(over.runs.stored(over.run.runId)).toMatchObject({
      status: 'FAILED',
      exitReason: 'budget_hit',
      message: expect.stringMatching(/last 24 hours; its cap is \$0\.300000/),
    });

    const under = pausedFor(3_600_000, 0, capped, [hour('2026-03-01T04', 48_953)]);
    expect(await controlOf(under.deps, settings, under.run)).toMatchObject({ action: 'wait' });
  });

  it("checks the account's caps on the first poll of each minute only, and the run's budget on every poll", async () => {
    const capped = account({ dailyCapMicroUsd: 1, monthlyCapMicroUsd: 0 });
    const halfAMinuteOn = { now: () => new Date(NOW.getTime() + 30_000) };
    const over = pausedFor(3_600_000, 0, capped);
    expect(await controlOf({ ...over.deps, clock: halfAMinuteOn }, settings, over.run)).toMatchObject({
      action: 'wait',
    });
    expect(over.deps.directory.getAccount).not.toHaveBeenCalled();
    const overBudget = pausedFor(3_600_000, 251_046, capped);
    expect(
      await controlOf({ ...overBudget.deps, clock: halfAMinuteOn }, settings, overBudget.run),
    ).toMatchObject({ action: 'stop' });
    // NOW is on the minute: the first poll of it
    expect(await controlOf(over.deps, settings, over.run)).toMatchObject({ action: 'stop' });
  });
});
