import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type CpuArchitecture, loadPriceTable, priceSandbox } from '../../shared/domain/pricing.js';
import { isTerminal, type Run } from '../../shared/domain/run.js';
import type { AccountSpend } from '../../shared/usecases/spend.js';
import { api } from './support/api.js';
import { ledgerItemsOf, tokenFor } from './support/aws.js';

/** An account's limits across its runs: how many run at once, and how far its caps can be overshot. */

// The local cloud's handlers read the same variables from the environment this process passed on.
const prices = loadPriceTable(process.env.PRICE_TABLE);
const architecture = (process.env.POD_CPU_ARCHITECTURE ?? 'ARM64') as CpuArchitecture;
const POD = { cpu: 1024, memoryMiB: 2048 };

/** A tenant of its own, with a pod of the demo agent that pauses at its plan when supervised. */
const tenant = async (prefix: string, limits: Record<string, number>) => {
  const accountId = `${prefix}-${randomUUID().slice(0, 8)}`;
  const token = await tokenFor({ sub: 'owner', accountId, accountRole: 'admin' });
  const put = async (path: string, body: unknown) =>
    expect((await api('PUT', path, { token, body })).status, path).toBe(200);
  await put('/v1/projects/proj', { name: 'P', repos: [] });
  await put('/v1/pods/pod', { name: 'Pod', ...POD, agent: { kind: 'demo' }, checkpoints: ['plan'] });
  await put('/v1/account/limits', { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0, ...limits });
  const dispatch = async (mode: 'autopilot' | 'supervised', demo: Record<string, unknown>) => {
    const answer = await api<Run>('POST', '/v1/projects/proj/runs', {
      token,
      body: { itemId: 'LIMITS-1', podId: 'pod', mode, prompt: 'p', config: { demo } },
    });
    expect(answer.status).toBe(202);
    return answer.body.runId;
  };
  const runOf = async (runId: string) => (await api<Run>('GET', `/v1/runs/${runId}`, { token })).body;
  const waitFor = async (runId: string, done: (run: Run) => boolean, timeout = 90_000) => {
    await expect.poll(async () => done(await runOf(runId)), { timeout, interval: 200 }).toBe(true);
    return runOf(runId);
  };
  return { accountId, token, dispatch, runOf, waitFor };
};

describe("an account's limits across its runs", () => {
  it('keeps the eleventh run over an active-run limit of ten QUEUED with the reason, and starts it when one ends', async () => {
    const account = await tenant('active-limit', { maxActiveRuns: 10 });
    const holding = await Promise.all(
      Array.from({ length: 10 }, () => account.dispatch('supervised', { steps: 1, stepDelayMs: 0 })),
    );
    await Promise.all(
      holding.map((runId) => account.waitFor(runId, (r) => r.status === 'AWAITING_APPROVAL')),
    );

    const eleventh = await account.dispatch('autopilot', { steps: 1, stepDelayMs: 0 });
    const waiting = await account.waitFor(eleventh, (r) => r.waitingFor !== undefined);
    expect(waiting).toMatchObject({
      status: 'QUEUED',
      waitingFor:
        'waiting for a slot: the account has 10 active runs, its limit; the run starts when one ends',
    });
    expect(waiting.executionArn).toBeUndefined();
    const listed = await api<{ items: Run[] }>('GET', '/v1/runs?status=QUEUED', { token: account.token });
    expect(listed.body.items.map((r) => [r.runId, r.waitingFor])).toEqual([[eleventh, waiting.waitingFor]]);

    const [first] = holding as [string];
    expect((await api('POST', `/v1/runs/${first}/stop`, { token: account.token })).status).toBe(200);
    const done = await account.waitFor(eleventh, (r) => isTerminal(r.status));
    expect(done.status).toBe('COMPLETED');
    expect(done.waitingFor).toBeUndefined();
    expect(done.history.map((h) => h.status)).toEqual(['QUEUED', 'PROVISIONING', 'RUNNING', 'COMPLETED']);
    for (const runId of holding.slice(1)) {
      expect((await api('POST', `/v1/runs/${runId}/stop`, { token: account.token })).status).toBe(200);
    }
  });

  it('holds ten concurrent runs of one account to its daily cap, overshooting it by at most a batch and a minute of sandbox a run', async () => {
    const cap = 300_000;
    const account = await tenant('cap-bound', { dailyCapMicroUsd: cap });
    // each step reports 10,000 Sonnet input tokens: $0.03 and its 2 % fee
    const step = { model: 'claude-sonnet-4-5', inputTokens: 10_000, outputTokens: 0 };
    const runIds = await Promise.all(
      Array.from({ length: 10 }, () =>
        account.dispatch('autopilot', { steps: 1000, stepDelayMs: 200, usage: [step] }),
      ),
    );
    const ended = await Promise.all(
      runIds.map((runId) => account.waitFor(runId, (r) => isTerminal(r.status))),
    );
    for (const run of ended) {
      expect([run.status, run.exitReason]).toEqual(
        run.status === 'CANCELLED' ? ['CANCELLED', 'budget_hit'] : ['FAILED', 'budget_hit'],
      );
    }
    // settled: every launched run's sandbox is in the spend
    const launched = ended.filter((run) => run.taskArn !== undefined);
    await Promise.all(
      launched.map((run) => account.waitFor(run.runId, (r) => r.cost.sandboxCpuUsd > 0, 30_000)),
    );
    const spent = (await api<AccountSpend>('GET', '/v1/account/spend?window=24h', { token: account.token }))
      .body.totalMicroUsd;

    // The stated bound: each active run adds at most the event batch whose check stops it (a pod sends
    // one batch at a time, holding the steps it made meanwhile) and its sandbox time until that check
    // (a heartbeat, 60 s, at most); its per-run fee is counted from its launch on, so it is none.
    const minute = priceSandbox(prices, { ...POD, architecture, runningMs: 60_000 });
    const largestBatch = async (runId: string) =>
      Math.max(
        0,
        ...(await ledgerItemsOf(runId))
          .filter((item) => Array.isArray(item.lines))
          .map((item) => Number(item.totalMicroUsd)),
      );
    const batches = await Promise.all(launched.map((run) => largestBatch(run.runId)));
    const bound = batches.reduce(
      (sum, batch) => sum + batch + minute.totalMicroUsd - prices.feePerRunMicroUsd,
      0,
    );
    expect(spent).toBeGreaterThanOrEqual(cap);
    expect(spent - cap).toBeLessThanOrEqual(bound);
  });
});
