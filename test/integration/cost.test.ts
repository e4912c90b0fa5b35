import { randomUUID } from 'node:crypto';
import { DescribeTasksCommand, ListTasksCommand } from '@aws-sdk/client-ecs';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import {
  type CpuArchitecture,
  loadPriceTable,
  priceSandbox,
  priceTokens,
  type TokenCounts,
} from '../../shared/domain/pricing.js';
import { type Run, TERMINAL_STATUSES } from '../../shared/domain/run.js';
import type { AccountSpend } from '../../shared/usecases/spend.js';
import { api, endpoints, waitForQuietPod, waitForTerminal } from './support/api.js';
import { waitForApproval } from './support/approvals.js';
import { dynamo, ecs, ledgerLinesOf, takeOverPod, tokenFor, waitForTaskStopped } from './support/aws.js';

// The local cloud's handlers read the same variables from the environment this process passed on.
const prices = loadPriceTable(process.env.PRICE_TABLE);
const architecture = (process.env.POD_CPU_ARCHITECTURE ?? 'ARM64') as CpuArchitecture;
const DEMO_POD = { cpu: 1024, memoryMiB: 2048 };

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

const ledgerOf = ledgerLinesOf;

const sum = <T extends object>(items: T[], field: keyof T & string) =>
  items.reduce((n, item) => n + Number(item[field] ?? 0), 0);

/** The run's cost as its ledger adds it up. */
const costFromLedger = (ledger: Record<string, unknown>[]) => ({
  tokenUsd: sum(ledger, 'costMicroUsd'),
  sandboxCpuUsd: sum(ledger, 'cpuMicroUsd'),
  sandboxMemoryUsd: sum(ledger, 'memoryMicroUsd'),
  feeUsd: sum(ledger, 'feeMicroUsd'),
  totalUsd: sum(ledger, 'totalMicroUsd'),
});

const runOf = async (runId: string, token?: string) =>
  (await api<Run>('GET', `/v1/runs/${runId}`, { token })).body;

/** waitForTerminal, for a run of any tenant. */
const waitForEnd = async (runId: string, token?: string) => {
  let run: Run | undefined;
  await expect
    .poll(
      async () => {
        run = await runOf(runId, token);
        return TERMINAL_STATUSES.has(run.status);
      },
      { timeout: 60_000, interval: 100 },
    )
    .toBe(true);
  return { run: run as Run };
};

/** Finalize writes the terminal status, then settles the sandbox: wait for both. */
const waitForSettled = async (runId: string, token?: string) => {
  await waitForEnd(runId, token);
  await expect.poll(async () => (await ledgerOf(runId)).some((e) => e.sk === 'USAGE#SETTLEMENT')).toBe(true);
  return { run: await runOf(runId, token) };
};

const tasksStartedFor = async (runId: string) => {
  const arns: string[] = [];
  for (const desiredStatus of ['RUNNING', 'STOPPED'] as const) {
    const out = await ecs().send(
      new ListTasksCommand({ cluster: endpoints().clusterArn, startedBy: runId, desiredStatus }),
    );
    arns.push(...(out.taskArns ?? []));
  }
  return arns;
};

const describeTask = async (taskArn: string) =>
  (await ecs().send(new DescribeTasksCommand({ cluster: endpoints().clusterArn, tasks: [taskArn] })))
    .tasks?.[0];

const tokens = (u: Partial<TokenCounts>): TokenCounts => ({
  inputTokens: u.inputTokens ?? 0,
  outputTokens: u.outputTokens ?? 0,
  cacheReadTokens: u.cacheReadTokens ?? 0,
  cacheWriteTokens: u.cacheWriteTokens ?? 0,
});

/** A tenant of its own, set up through the API by its account admin. */
const tenant = async (prefix: string) => {
  const accountId = unique(prefix);
  const token = await tokenFor({ sub: 'owner', accountId, accountRole: 'admin' });
  const projectId = 'proj';
  const podId = 'pod';
  expect(
    (await api('PUT', `/v1/projects/${projectId}`, { token, body: { name: 'P', repos: [] } })).status,
  ).toBe(200);
  expect((await api('PUT', `/v1/pods/${podId}`, { token, body: podBody() })).status).toBe(200);
  const dispatchRun = (demo: Record<string, unknown>) =>
    api<Run>('POST', `/v1/projects/${projectId}/runs`, {
      token,
      body: { itemId: 'COST-1', podId, mode: 'autopilot', prompt: 'spend', config: { demo } },
    });
  return { accountId, token, projectId, podId, dispatchRun };
};

const podBody = (over: Record<string, unknown> = {}) => ({
  name: 'Costed pod',
  cpu: DEMO_POD.cpu,
  memoryMiB: DEMO_POD.memoryMiB,
  agent: { kind: 'demo' },
  ...over,
});

/** Each step costs 10,000 Sonnet input tokens: $0.03 plus the fee. */
const EXPENSIVE_STEPS = {
  steps: 1000,
  stepDelayMs: 200,
  usage: [{ model: 'claude-sonnet-4-5', inputTokens: 10_000, outputTokens: 0 }],
};

const expectCancelledBeforeLaunch = async (runId: string, exitReason: string, token?: string) => {
  const { run } = await waitForEnd(runId, token);
  expect(run.status).toBe('CANCELLED');
  expect(run.exitReason).toBe(exitReason);
  expect(run.history.map((h) => h.status)).toEqual(['QUEUED', 'CANCELLED']);
  expect(run.taskArn).toBeUndefined();
  expect(await tasksStartedFor(runId)).toEqual([]);
  expect((await runOf(runId, token)).cost.totalUsd).toBe(0);
  expect(await ledgerOf(runId)).toEqual([]);
};

describe('what runs cost', () => {
  it('ends a demo run with scripted usage with exactly the expected breakdown', async () => {
    const usage = [
      {
        model: 'claude-sonnet-4-5',
        inputTokens: 12_345,
        outputTokens: 678,
        cacheReadTokens: 9_000,
        cacheWriteTokens: 1_234,
      },
      { model: 'claude-haiku-4-5-20251001', inputTokens: 5_555, outputTokens: 333 },
    ];
    const steps = 4;
    const { body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      body: {
        itemId: 'COST-1',
        podId: endpoints().scriptedPodId,
        mode: 'autopilot',
        prompt: 'Count the cost',
        config: { demo: { steps, stepDelayMs: 20, usage } },
      },
    });
    const { run } = await waitForSettled(body.runId);
    expect(run.status).toBe('COMPLETED');

    const entries = usage.map((u) => priceTokens(prices, u.model, tokens(u)));
    const sandbox = priceSandbox(prices, {
      ...DEMO_POD,
      architecture,
      runningMs: Date.parse(run.completedAt ?? '') - Date.parse(run.startedAt ?? ''),
    });
    const tokenUsd = steps * sum(entries, 'tokenMicroUsd');
    const tokenFees = steps * sum(entries, 'feeMicroUsd');
    expect(run.cost).toEqual({
      tokenUsd,
      sandboxCpuUsd: sandbox.cpuMicroUsd,
      sandboxMemoryUsd: sandbox.memoryMicroUsd,
      feeUsd: tokenFees + sandbox.feeMicroUsd,
      totalUsd: tokenUsd + tokenFees + sandbox.totalMicroUsd,
    });
    expect(run.usage).toEqual(
      Object.fromEntries(
        usage.map((u, i) => [
          u.model,
          {
            inputTokens: steps * u.inputTokens,
            outputTokens: steps * u.outputTokens,
            cacheReadTokens: steps * (u.cacheReadTokens ?? 0),
            cacheWriteTokens: steps * (u.cacheWriteTokens ?? 0),
            costMicroUsd: steps * (entries[i]?.tokenMicroUsd ?? 0),
          },
        ]),
      ),
    );
    const ledger = await ledgerOf(body.runId);
    expect(ledger).toHaveLength(steps * usage.length + 1);
    expect(ledger.every((e) => e.priceTableVersion === prices.version)).toBe(true);
    expect(costFromLedger(ledger)).toEqual(run.cost);
  });

  it('keeps the totals equal to the ledger when 10 event batches for one run arrive at once', async () => {
    const { body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      body: {
        itemId: 'COST-2',
        podId: endpoints().scriptedPodId,
        mode: 'autopilot',
        prompt: 'Concurrent batches',
        // the pod goes quiet once it has started, so the test can play the pod
        config: { demo: { steps: 1, stepDelayMs: 0, failure: 'hang' } },
      },
    });
    await waitForQuietPod(body.runId);
    const agentToken = await takeOverPod(body.runId);

    const models = ['claude-opus-4-1', 'claude-sonnet-4-5', 'some-unlisted-model'];
    const batches = Array.from({ length: 10 }, (_, b) =>
      Array.from({ length: 40 }, (_, i) => {
        const seq = 1_000_000 + b * 40 + i;
        const at = new Date().toISOString();
        const counts = { inputTokens: 1000 + (seq % 997), outputTokens: 3 * i, cacheReadTokens: b * 11 };
        return i % 4 === 0
          ? {
              seq,
              at,
              type: 'step',
              kind: 'assistant',
              content: `batch ${b}`,
              model: models[b % 3],
              usage: counts,
            }
          : { seq, at, type: 'usage', model: models[(b + i) % 3], ...counts };
      }),
    );
    const answers = await Promise.all(
      batches.map((events) =>
        fetch(`${endpoints().apiUrl}/agent/v1/runs/${body.runId}/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ events }),
        }).then(async (res) => ({ status: res.status, body: (await res.json()) as { accepted: number } })),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(
      sum(
        answers.map((a) => a.body),
        'accepted',
      ),
    ).toBe(400);

    const ledger = await ledgerOf(body.runId);
    const ours = ledger.filter((e) => Number(e.seq) >= 1_000_000);
    expect(ours).toHaveLength(400);
    const run = await runOf(body.runId);
    expect(run.cost).toEqual(costFromLedger(ledger));
    for (const model of models) {
      const entries = ledger.filter((e) => e.model === model);
      expect(run.usage[model]?.costMicroUsd).toBe(sum(entries, 'costMicroUsd'));
      expect(run.usage[model]?.inputTokens).toBe(sum(entries, 'inputTokens'));
    }

    expect((await api('POST', `/v1/runs/${body.runId}/stop`)).status).toBe(200);
    const { run: settled } = await waitForSettled(body.runId);
    expect(settled.status).toBe('STOPPED');
    expect(settled.cost).toEqual(costFromLedger(await ledgerOf(body.runId)));
  });

  it('fails a run that crosses its budget as budget_hit, and no pod process is left 5 s later', async () => {
    const podId = unique('budget-pod');
    expect(
      (await api('PUT', `/v1/pods/${podId}`, { body: podBody({ runBudgetMicroUsd: 50_000 }) })).status,
    ).toBe(200);
    const { body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      body: {
        itemId: 'COST-3',
        podId,
        mode: 'autopilot',
        prompt: 'Spend a lot',
        config: { demo: EXPENSIVE_STEPS },
      },
    });
    const { run: failed } = await waitForTerminal(body.runId);
    expect(failed.status).toBe('FAILED');
    expect(failed.exitReason).toBe('budget_hit');
    expect(failed.history.map((h) => h.status)).toEqual(['QUEUED', 'PROVISIONING', 'RUNNING', 'FAILED']);
    await waitForTaskStopped(failed.taskArn as string, 5000);
    const task = await describeTask(failed.taskArn as string);
    expect(task?.lastStatus).toBe('STOPPED');
    expect(
      (task?.stoppedAt?.getTime() ?? Number.POSITIVE_INFINITY) - Date.parse(failed.completedAt ?? ''),
    ).toBeLessThan(5000);

    const { run } = await waitForSettled(body.runId);
    expect(run.cost.totalUsd).toBeGreaterThanOrEqual(50_000);
    expect(run.cost).toEqual(costFromLedger(await ledgerOf(body.runId)));
    // It stopped within a step or two of crossing, out of a thousand.
    expect(run.usage['claude-sonnet-4-5']?.inputTokens).toBeLessThanOrEqual(40_000);
  });

  it('fails a supervised run paused past its budget as budget_hit, and stops its sandbox', async () => {
    const podId = unique('paused-budget-pod');
    // the fee and the first minute of sandbox (about $0.0107) fit; an hour of sandbox (about $0.05) does not
    const pod = podBody({ runBudgetMicroUsd: 20_000, checkpoints: ['plan'] });
    expect((await api('PUT', `/v1/pods/${podId}`, { body: pod })).status).toBe(200);
    const { body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      body: {
        itemId: 'COST-PAUSED',
        podId,
        mode: 'supervised',
        prompt: 'Plan, then wait',
        config: { demo: { steps: 1, stepDelayMs: 0 } },
      },
    });
    const { run: paused } = await waitForApproval(body.runId);
    expect(paused.cost.totalUsd).toBeLessThan(20_000);
    // An hour paused without waiting one: the sandbox's start moves back as the clock would move on.
    await dynamo().send(
      new UpdateCommand({
        TableName: endpoints().tableName,
        Key: { pk: `RUN#${body.runId}`, sk: 'RUN' },
        UpdateExpression: 'SET startedAt = :anHourAgo',
        ExpressionAttributeValues: { ':anHourAgo': new Date(Date.now() - 3_600_000).toISOString() },
      }),
    );

    // the pod's next ask for control finds the run over its budget
    const { run: failed } = await waitForTerminal(body.runId);
    expect(failed).toMatchObject({ status: 'FAILED', exitReason: 'budget_hit' });
    expect(failed.message).toMatch(/reached its budget/);
    expect(failed.history.map((h) => h.status)).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RUNNING',
      'AWAITING_APPROVAL',
      'FAILED',
    ]);
    await waitForTaskStopped(failed.taskArn as string, 15_000);
    const { run } = await waitForSettled(body.runId);
    expect(run.cost.totalUsd).toBeGreaterThanOrEqual(20_000);
    expect(run.cost).toEqual(costFromLedger(await ledgerOf(body.runId)));
  });

  it('cancels a run of a disabled pod before anything is launched', async () => {
    const podId = unique('off-pod');
    expect((await api('PUT', `/v1/pods/${podId}`, { body: podBody({ enabled: false }) })).status).toBe(200);
    const { body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      body: { itemId: 'COST-4', podId, mode: 'autopilot', prompt: 'Never runs' },
    });
    await expectCancelledBeforeLaunch(body.runId, 'cancelled');
  });

  it('cancels a run of an account without a valid payment method before anything is launched', async () => {
    const unpaid = await tenant('unpaid');
    // Payment standing is the billing system's to set; here it is written as that system would.
    await dynamo().send(
      new UpdateCommand({
        TableName: endpoints().tableName,
        Key: { pk: `ACCT#${unpaid.accountId}`, sk: 'ACCOUNT' },
        UpdateExpression: 'SET paymentStatus = :status',
        ExpressionAttributeValues: { ':status': 'payment_required' },
      }),
    );
    const { body } = await unpaid.dispatchRun({ steps: 1 });
    await expectCancelledBeforeLaunch(body.runId, 'payment_required', unpaid.token);
  });

  it("stops a run that takes its account over its cap mid-run, then cancels the account's next run", async () => {
    const capped = await tenant('capped');
    const spendOf = async (window: '24h' | '30d') =>
      (await api<AccountSpend>('GET', `/v1/account/spend?window=${window}`, { token: capped.token })).body;

    const { body: first } = await capped.dispatchRun({
      steps: 2,
      stepDelayMs: 10,
      usage: [{ model: 'claude-haiku-4-5', inputTokens: 1000, outputTokens: 100 }],
    });
    const { run: firstRun } = await waitForSettled(first.runId, capped.token);
    expect(firstRun.status).toBe('COMPLETED');
    const afterFirst = await spendOf('24h');
    expect(afterFirst).toMatchObject({
      accountId: capped.accountId,
      window: '24h',
      totalMicroUsd: firstRun.cost.totalUsd,
      byProject: [{ projectId: capped.projectId, totalMicroUsd: firstRun.cost.totalUsd }],
      byPod: [{ podId: capped.podId, totalMicroUsd: firstRun.cost.totalUsd }],
    });

    const cap = firstRun.cost.totalUsd + 20_000;
    const limits = await api('PUT', '/v1/account/limits', {
      token: capped.token,
      body: { dailyCapMicroUsd: cap, monthlyCapMicroUsd: 0 },
    });
    expect(limits.status).toBe(200);

    const { body: second } = await capped.dispatchRun(EXPENSIVE_STEPS);
    const { run: failed } = await waitForEnd(second.runId, capped.token);
    expect(failed.status).toBe('FAILED');
    expect(failed.exitReason).toBe('budget_hit');
    expect(failed.message).toMatch(/last 24 hours/);
    await waitForTaskStopped(failed.taskArn as string, 5000);
    const { run: secondRun } = await waitForSettled(second.runId, capped.token);

    const { body: third } = await capped.dispatchRun({ steps: 1 });
    await expectCancelledBeforeLaunch(third.runId, 'budget_hit', capped.token);

    const spent = firstRun.cost.totalUsd + secondRun.cost.totalUsd;
    expect(spent).toBeGreaterThanOrEqual(cap);
    expect(await spendOf('24h')).toMatchObject({ totalMicroUsd: spent, capMicroUsd: cap });
    expect(await spendOf('30d')).toMatchObject({ totalMicroUsd: spent, capMicroUsd: 0 });
    expect((await api('GET', '/v1/account/spend?window=7d', { token: capped.token })).status).toBe(400);
  });
});
