import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  hasSeq,
  owedSignal,
  planBatch,
  RUN_LIMITS,
  runAfter,
  withSeqs,
} from '../../shared/domain/agent-batch.js';
import { ValidationError } from '../../shared/domain/errors.js';
import { DEFAULT_PRICE_TABLE, priceTokens, type TokenCounts } from '../../shared/domain/pricing.js';
import type { Run } from '../../shared/domain/run.js';
import type { AgentEvent } from '../../shared/schemas/agent-events.js';
import { runFactory } from '../support/factories.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const price = (model: string, tokens: TokenCounts) => priceTokens(DEFAULT_PRICE_TABLE, model, tokens);
const running = (over: Partial<Run> = {}) => runFactory({ status: 'RUNNING', ...over });
const step = (seq: number, over: Partial<Extract<AgentEvent, { type: 'step' }>> = {}): AgentEvent => ({
  seq,
  at: at(seq),
  type: 'step',
  kind: 'assistant',
  content: `step ${seq}`,
  ...over,
});
const artifact = (
  seq: number,
  over: Partial<Extract<AgentEvent, { type: 'artifact' }>> = {},
): AgentEvent => ({
  seq,
  at: at(seq),
  type: 'artifact',
  kind: 'commit',
  url: `https://git.example/c/${seq}`,
  ...over,
});
const checkpoint = (seq: number): AgentEvent => ({
  seq,
  at: at(seq),
  type: 'checkpoint',
  name: 'plan',
  summary: 'the plan',
});

describe('seq ranges', () => {
  it('merge seqs into sorted, disjoint, inclusive ranges', () => {
    expect(withSeqs([], [3, 1, 2])).toEqual([[1, 3]]);
    expect(withSeqs([[1, 3]], [5, 4, 9])).toEqual([
      [1, 5],
      [9, 9],
    ]);
    expect(
      withSeqs(
        [
          [1, 2],
          [6, 8],
        ],
        [3, 4, 5],
      ),
    ).toEqual([[1, 8]]);
    expect(withSeqs([[1, 5]], [2, 3])).toEqual([[1, 5]]);
    expect(withSeqs([[5, 5]], [7])).toEqual([
      [5, 5],
      [7, 7],
    ]);
  });

  it('hold exactly the seqs added, whatever their order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 60 }), { maxLength: 12 }), { maxLength: 6 }),
        (batches) => {
          let ranges: [number, number][] = [];
          for (const batch of batches) ranges = withSeqs(ranges, batch);
          const added = new Set(batches.flat());
          for (let seq = 0; seq <= 61; seq++) expect(hasSeq(ranges, seq)).toBe(added.has(seq));
          for (const [i, [from, to]] of ranges.entries()) {
            expect(from).toBeLessThanOrEqual(to);
            const next = ranges[i + 1];
            if (next) expect(next[0]).toBeGreaterThan(to + 1);
          }
        },
      ),
    );
  });
});

describe('planBatch', () => {
  it('accepts each new seq once, in seq order, and counts the rest as duplicates', () => {
    const run = running({ seqs: [[1, 2]], lastSeq: 2 });
    const plan = planBatch(run, [step(4), step(2), step(3), step(4, { content: 'again' })], NOW);
    expect(plan.accepted.map((e) => e.seq)).toEqual([3, 4]);
    expect(plan.duplicates).toBe(2);
    expect(plan.steps.map((e) => e.seq)).toEqual([3, 4]);
    expect(plan.steps[1]).toMatchObject({ content: 'step 4' });
    expect(plan.seqs).toEqual([[1, 4]]);
    expect(plan.lastSeq).toBe(4);
    expect(plan.at).toBe(NOW.toISOString());
  });

  it('keeps lastSeq when only older seqs arrive', () => {
    const plan = planBatch(running({ seqs: [[5, 9]], lastSeq: 9 }), [step(2)], NOW);
    expect(plan.lastSeq).toBe(9);
    expect(plan.seqs).toEqual([
      [2, 2],
      [5, 9],
    ]);
  });

  it('starts a provisioned run with its first event, and only a provisioned one', () => {
    const plan = planBatch(runFactory({ status: 'PROVISIONING' }), [step(1)], NOW);
    expect(plan.transition).toMatchObject({
      from: 'PROVISIONING',
      path: ['RUNNING'],
      patch: { startedAt: NOW.toISOString() },
      revokeCredentials: false,
    });
    expect(planBatch(running(), [step(1)], NOW).transition).toBeUndefined();
    expect(planBatch(runFactory({ status: 'RETRYING' }), [step(1)], NOW).transition).toBeUndefined();
    // a batch of repeats starts nothing
    const repeat = runFactory({ status: 'PROVISIONING', seqs: [[1, 1]] });
    expect(planBatch(repeat, [step(1)], NOW).transition).toBeUndefined();
  });

  it('pauses a supervised run at its first new checkpoint, in the same write as the checkpoint', () => {
    const run = running({ mode: 'supervised' });
    const plan = planBatch(run, [step(1), checkpoint(2), checkpoint(3)], NOW);
    expect(plan.transition).toMatchObject({
      from: 'RUNNING',
      path: ['AWAITING_APPROVAL'],
      patch: {
        pendingApproval: { seq: 2, name: 'plan', summary: 'the plan', requestedAt: NOW.toISOString() },
      },
    });
    expect(plan.records.map((e) => e.seq)).toEqual([2, 3]);
    const fromStart = planBatch(
      runFactory({ status: 'PROVISIONING', mode: 'supervised' }),
      [checkpoint(1)],
      NOW,
    );
    expect(fromStart.transition?.path).toEqual(['RUNNING', 'AWAITING_APPROVAL']);
  });

  it.each(['QUEUED', 'RETRYING', 'AWAITING_APPROVAL'] as const)(
    'does not pause a supervised run that is not running (%s)',
    (status) => {
      const run = runFactory({ status, mode: 'supervised' });

      const plan = planBatch(run, [checkpoint(1)], NOW);

      expect(plan.transition).toBeUndefined();
      expect(plan.records.map((e) => e.seq)).toEqual([1]);
    },
  );

  it('does not pause an autopilot run, a run already paused, or for a checkpoint seen before', () => {
    expect(planBatch(running({ mode: 'autopilot' }), [checkpoint(1)], NOW).transition).toBeUndefined();
    const paused = runFactory({
      status: 'AWAITING_APPROVAL',
      mode: 'supervised',
      pendingApproval: { seq: 1, name: 'plan', summary: 's', requestedAt: 't' },
    });
    expect(planBatch(paused, [checkpoint(5)], NOW).transition).toBeUndefined();
    const seen = running({ mode: 'supervised', seqs: [[1, 1]] });
    expect(planBatch(seen, [checkpoint(1)], NOW).transition).toBeUndefined();
  });

  it('records the first result, and keeps a result already on the run', () => {
    const plan = planBatch(
      running(),
      [
        {
          seq: 1,
          at: at(1),
          type: 'result',
          outcome: 'failed',
          exitReason: 'tool_call_failed',
          message: 'm',
        },
        { seq: 2, at: at(2), type: 'result', outcome: 'completed' },
      ],
      NOW,
    );
    expect(plan.patch.result).toEqual({ outcome: 'failed', exitReason: 'tool_call_failed', message: 'm' });
    const decided = running({ result: { outcome: 'completed' } });
    expect(
      planBatch(decided, [{ seq: 1, at: at(1), type: 'result', outcome: 'failed' }], NOW).patch,
    ).not.toHaveProperty('result');
  });

  it('moves the phase only forward, and the heartbeat only later', () => {
    const run = running({ phase: 'PLANNING', lastHeartbeatAt: at(5) });
    const plan = planBatch(
      run,
      [
        { seq: 1, at: at(1), type: 'phase', phase: 'STARTED' },
        { seq: 2, at: at(2), type: 'phase', phase: 'COMMITTING' },
        { seq: 3, at: at(3), type: 'phase', phase: 'EXECUTING' },
        { seq: 4, at: at(3), type: 'heartbeat' },
        { seq: 5, at: at(9), type: 'heartbeat' },
        { seq: 6, at: at(7), type: 'heartbeat' },
      ],
      NOW,
    );
    expect(plan.patch).toMatchObject({ phase: 'COMMITTING', lastHeartbeatAt: at(9) });
    const quiet = planBatch(run, [{ seq: 1, at: at(1), type: 'heartbeat' }], NOW);
    expect(quiet.patch).not.toHaveProperty('lastHeartbeatAt');
    expect(quiet.patch).not.toHaveProperty('phase');
  });

  it('prices each usage line, sums them into the run’s usage and cost, and counts the spend', () => {
    const plan = planBatch(
      running(),
      [
        step(1, { model: 'claude-sonnet-4-5', usage: { inputTokens: 1_000_000, outputTokens: 0 } }),
        {
          seq: 2,
          at: at(2),
          type: 'usage',
          model: 'claude-sonnet-4-5',
          inputTokens: 0,
          outputTokens: 1000,
          cacheReadTokens: 7,
        },
        step(3, { usage: { inputTokens: 5, outputTokens: 1 } }),
      ],
      NOW,
      price,
    );
    expect(plan.ledger.map((l) => [l.seq, l.from, l.model])).toEqual([
      [1, 'step', 'claude-sonnet-4-5'],
      [2, 'usage', 'claude-sonnet-4-5'],
      [3, 'step', 'unknown'],
    ]);
    const charges = plan.ledger.map((l) => l.charge);
    const total = (pick: (c: NonNullable<(typeof charges)[number]>) => number) =>
      charges.reduce((n, c) => n + (c ? pick(c) : 0), 0);
    expect(plan.cost).toEqual({
      tokenUsd: total((c) => c.tokenMicroUsd),
      sandboxCpuUsd: 0,
      sandboxMemoryUsd: 0,
      feeUsd: total((c) => c.feeMicroUsd),
      totalUsd: total((c) => c.totalMicroUsd),
    });
    expect(plan.spendMicroUsd).toBe(plan.cost.totalUsd);
    expect(plan.usage['claude-sonnet-4-5']).toEqual({
      inputTokens: 1_000_000,
      outputTokens: 1000,
      cacheReadTokens: 7,
      cacheWriteTokens: 0,
      costMicroUsd: (charges[0]?.tokenMicroUsd ?? 0) + (charges[1]?.tokenMicroUsd ?? 0),
    });
    const unpriced = planBatch(
      running(),
      [{ seq: 1, at: at(1), type: 'usage', model: 'm', inputTokens: 3, outputTokens: 4 }],
      NOW,
    );
    expect(unpriced.cost.totalUsd).toBe(0);
    expect(unpriced.usage.m).toMatchObject({ inputTokens: 3, outputTokens: 4, costMicroUsd: 0 });
  });

  it('appends artifacts up to the run’s limit', () => {
    const plan = planBatch(
      running(),
      [
        {
          seq: 1,
          at: at(1),
          type: 'artifact',
          kind: 'commit',
          url: 'https://git.example/c/1',
          sha: 'abc',
          branch: 'pods/p/r',
          repo: 'https://git.example/o/r.git',
        },
      ],
      NOW,
    );
    expect(plan.artifacts).toEqual([
      {
        kind: 'commit',
        url: 'https://git.example/c/1',
        sha: 'abc',
        branch: 'pods/p/r',
        repo: 'https://git.example/o/r.git',
        at: at(1),
      },
    ]);
    expect(plan.patch.pullRequest).toBeUndefined();
    const full = running({
      artifacts: Array.from({ length: RUN_LIMITS.artifacts - 1 }, (_, i) => ({
        kind: 'commit' as const,
        url: `https://git.example/c/${i}`,
        at: at(0),
      })),
    });
    const capped = planBatch(
      full,
      [1, 2, 3].map(
        (seq): AgentEvent => ({
          seq,
          at: at(seq),
          type: 'artifact',
          kind: 'commit',
          url: 'https://git.example/x',
        }),
      ),
      NOW,
    );
    expect(capped.artifacts).toHaveLength(1);
    expect(capped.records).toHaveLength(3);
  });

  it('sums every token count of a model over its lines', () => {
    const usage = (seq: number, n: number): AgentEvent => ({
      seq,
      at: at(seq),
      type: 'usage',
      model: 'm',
      inputTokens: n,
      outputTokens: 2 * n,
      cacheReadTokens: 3 * n,
      cacheWriteTokens: 4 * n,
    });

    const plan = planBatch(running(), [usage(1, 1), usage(2, 10)], NOW);

    expect(plan.usage).toEqual({
      m: { inputTokens: 11, outputTokens: 22, cacheReadTokens: 33, cacheWriteTokens: 44, costMicroUsd: 0 },
    });
    expect(plan.ledger.map((l) => l.cacheWriteTokens)).toEqual([4, 40]);
  });

  it('keeps an artifact with only the fields the pod sent', () => {
    const plan = planBatch(running(), [artifact(1), artifact(2)], NOW);

    expect(plan.artifacts).toStrictEqual([
      { kind: 'commit', url: 'https://git.example/c/1', at: at(1) },
      { kind: 'commit', url: 'https://git.example/c/2', at: at(2) },
    ]);
    expect(plan.patch).toStrictEqual({});
  });

  it('refuses a batch that would take the run past its limits, without planning anything', () => {
    const usage = Object.fromEntries(
      Array.from({ length: RUN_LIMITS.models }, (_, i) => [
        `model-${i}`,
        { inputTokens: 1, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, costMicroUsd: 0 },
      ]),
    );
    const crowded = running({ usage });
    const known = {
      seq: 1,
      at: at(1),
      type: 'usage' as const,
      model: 'model-3',
      inputTokens: 1,
      outputTokens: 0,
    };
    expect(() => planBatch(crowded, [known], NOW)).not.toThrow();
    expect(() => planBatch(crowded, [{ ...known, model: 'one-more' }], NOW)).toThrow(ValidationError);
    expect(() => planBatch(crowded, [{ ...known, model: 'one-more' }], NOW)).toThrow(
      `a run reports usage for at most ${RUN_LIMITS.models} models`,
    );
    const gaps = Array.from({ length: RUN_LIMITS.seqRanges }, (_, i) => step(i * 2 + 1));
    expect(() => planBatch(running(), gaps, NOW)).not.toThrow();
    expect(() => planBatch(running(), [...gaps, step(1000)], NOW)).toThrow(/gaps/);
  });

  it('plans nothing to change for a batch of repeats', () => {
    const run = running({ seqs: [[1, 3]], lastSeq: 3 });
    const plan = planBatch(run, [step(1), step(2)], NOW);
    expect(plan).toMatchObject({
      accepted: [],
      duplicates: 2,
      steps: [],
      ledger: [],
      records: [],
      patch: {},
    });
    expect(runAfter(run, plan)).toBe(run);
  });
});

describe('runAfter', () => {
  it('is the run the store holds once the plan is written', () => {
    const run = runFactory({
      status: 'PROVISIONING',
      mode: 'supervised',
      version: 4,
      usage: {
        m: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0, costMicroUsd: 5 },
      },
      cost: { tokenUsd: 5, sandboxCpuUsd: 2, sandboxMemoryUsd: 1, feeUsd: 1, totalUsd: 9 },
      artifacts: [{ kind: 'commit', url: 'https://git.example/c/0', at: at(0) }],
    });
    const plan = planBatch(
      run,
      [
        { seq: 1, at: at(1), type: 'phase', phase: 'PLANNING' },
        { seq: 2, at: at(2), type: 'usage', model: 'claude-haiku-4-5', inputTokens: 1000, outputTokens: 10 },
        { seq: 3, at: at(3), type: 'artifact', kind: 'commit', url: 'https://git.example/c/1' },
        checkpoint(4),
      ],
      NOW,
      price,
    );
    const after = runAfter(run, plan);
    expect(after).toMatchObject({
      status: 'AWAITING_APPROVAL',
      phase: 'PLANNING',
      startedAt: NOW.toISOString(),
      pendingApproval: { seq: 4 },
      seqs: [[1, 4]],
      lastSeq: 4,
      version: 5,
      updatedAt: NOW.toISOString(),
      history: [
        ...run.history,
        { status: 'RUNNING', at: NOW.toISOString() },
        { status: 'AWAITING_APPROVAL', at: NOW.toISOString() },
      ],
    });
    expect(after.artifacts.map((a) => a.url)).toEqual(['https://git.example/c/0', 'https://git.example/c/1']);
    expect(after.usage.m).toEqual(run.usage.m);
    expect(after.usage['claude-haiku-4-5']?.inputTokens).toBe(1000);
    expect(after.cost).toEqual({
      tokenUsd: 5 + plan.cost.tokenUsd,
      sandboxCpuUsd: 2,
      sandboxMemoryUsd: 1,
      feeUsd: 1 + plan.cost.feeUsd,
      totalUsd: 9 + plan.cost.totalUsd,
    });
    expect(run.usage['claude-haiku-4-5']).toBeUndefined();
  });
});

describe('owedSignal: what the state machine is still owed, from the stored run', () => {
  const pending = { seq: 4, name: 'plan', summary: 's', requestedAt: 't' };

  it('is the checkpoint a paused run waits at until its approval is requested', () => {
    expect(owedSignal(runFactory({ status: 'AWAITING_APPROVAL', pendingApproval: pending }))).toEqual({
      outcome: 'checkpoint',
      checkpoint: { seq: 4, name: 'plan' },
    });
    const requested = { ...pending, approvalId: 'a1' };
    expect(
      owedSignal(runFactory({ status: 'AWAITING_APPROVAL', pendingApproval: requested })),
    ).toBeUndefined();
  });

  it('is the pod’s result, unless a person decides first or the run has ended', () => {
    const result = { outcome: 'completed' as const };
    expect(owedSignal(running({ result }))).toEqual(result);
    expect(owedSignal(running())).toBeUndefined();
    expect(
      owedSignal(
        runFactory({ status: 'AWAITING_APPROVAL', pendingApproval: { ...pending, approvalId: 'a' }, result }),
      ),
    ).toBeUndefined();
    expect(owedSignal(runFactory({ status: 'COMPLETED', result }))).toBeUndefined();
    expect(owedSignal(runFactory({ status: 'AWAITING_APPROVAL' }))).toBeUndefined();
  });
});
