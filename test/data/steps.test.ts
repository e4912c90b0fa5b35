import { beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import { DynamoTimeline } from '../../shared/adapters/dynamo-timeline.js';
import type { Run } from '../../shared/domain/run.js';
import type { StepContentRef } from '../../shared/domain/steps.js';
import type { AgentEvent } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';
import { ownRunFactory, podFactory, snapshotFactory } from '../support/factories.js';
import { recordBatch } from '../support/record-batch.js';

const table = useTestTable();
let repo: DynamoRunStore;
let timeline: DynamoTimeline;
beforeAll(() => {
  repo = new DynamoRunStore(table.doc, table.tableName);
  timeline = new DynamoTimeline(table.doc, table.tableName);
});
const MAX_SEQ = 9_999_999_999;

const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();

const running = async (): Promise<Run> => {
  const run = ownRunFactory();
  const snapshot = snapshotFactory({
    pod: podFactory({
      accountId: run.accountId,
      podId: 'pod-a',
      approvalWindowSeconds: 900,
      updatedAt: at(0),
    }),
  });
  return (await repo.create(run, snapshot)).run;
};

const stepEvent = (seq: number, content = `step ${seq}`): AgentEvent => ({
  seq,
  at: at(seq % 60),
  type: 'step',
  kind: 'assistant',
  content,
  model: 'm1',
  usage: { inputTokens: 10, outputTokens: 2 },
});

describe('the step timeline', () => {
  it('lists steps in seq order page by page, leaving out other events and repeats', async () => {
    const run = await running();
    const events: AgentEvent[] = [];
    for (let seq = 1; seq <= 130; seq++) {
      events.push(seq % 10 === 0 ? { seq, at: at(1), type: 'heartbeat' } : stepEvent(seq));
    }
    // recorded out of order, in two batches, with a batch repeated
    await recordBatch(repo, run.runId, events.slice(60));
    await recordBatch(repo, run.runId, events.slice(0, 60));
    const repeat = await recordBatch(repo, run.runId, events.slice(0, 60));
    expect(repeat.accepted.filter((e) => e.type === 'step')).toEqual([]);

    const seen: number[] = [];
    let afterSeq = 0;
    for (;;) {
      const page = await timeline.listSteps(run.runId, { afterSeq, throughSeq: MAX_SEQ, limit: 50 });
      seen.push(...page.items.map((s) => s.seq));
      const last = page.items.at(-1);
      if (!page.more || !last) break;
      expect(page.items).toHaveLength(50);
      afterSeq = last.seq;
    }
    expect(seen).toEqual(events.filter((e) => e.type === 'step').map((e) => e.seq));
    const [first] = (await timeline.listSteps(run.runId, { afterSeq: 0, throughSeq: 1, limit: 1 })).items;
    expect(first).toEqual({
      seq: 1,
      at: at(1),
      kind: 'assistant',
      content: 'step 1',
      model: 'm1',
      usage: { inputTokens: 10, outputTokens: 2 },
    });
  });

  it('keeps a cut step’s pointer to its whole text, and its tool arguments as JSON text', async () => {
    const run = await running();
    const content = 'a'.repeat(50_000);
    const ref: StepContentRef = {
      logGroup: '/steps',
      logStream: `steps/${run.runId}/1`,
      parts: 1,
      bytes: 50_000,
    };
    await recordBatch(
      repo,
      run.runId,
      [
        { seq: 1, at: at(1), type: 'step', kind: 'assistant', content },
        {
          seq: 2,
          at: at(2),
          type: 'step',
          kind: 'tool_call',
          content: 'ls',
          tool: 'bash',
          args: { c: 'ls' },
        },
        { seq: 3, at: at(3), type: 'step', kind: 'tool_call', content: 'x', args: { c: 'y'.repeat(9000) } },
      ],
      { fullContent: new Map([[1, ref]]) },
    );
    const cut = await timeline.getStep(run.runId, 1);
    expect(cut).toMatchObject({ truncated: true, contentBytes: 50_000, fullContent: ref });
    expect(cut?.content).toBe(content.slice(0, 32 * 1024));
    expect(await timeline.getStep(run.runId, 2)).toMatchObject({ tool: 'bash', args: '{"c":"ls"}' });
    expect(await timeline.getStep(run.runId, 2)).not.toHaveProperty('truncated');
    expect(await timeline.getStep(run.runId, 3)).toMatchObject({ argsTruncated: true, argsBytes: 9008 });
    expect(await timeline.getStep(run.runId, 3)).not.toHaveProperty('truncated');
    expect(await timeline.getStep(run.runId, 4)).toBeUndefined();
  });

  it('reads up to a given seq only, so a follower stops where a batch is still being written', async () => {
    const run = await running();
    await recordBatch(repo, run.runId, [stepEvent(1), stepEvent(2), stepEvent(4)]);
    const upTo = async (throughSeq: number) =>
      (await timeline.listSteps(run.runId, { afterSeq: 0, throughSeq, limit: 10 })).items.map((s) => s.seq);
    expect(await upTo(2)).toEqual([1, 2]);
    expect(await upTo(MAX_SEQ)).toEqual([1, 2, 4]);
    expect(await upTo(0)).toEqual([]);
    expect((await repo.get(run.runId))?.seqs).toEqual([
      [1, 2],
      [4, 4],
    ]);
  });

  it('keeps a batch’s steps in its own transaction, in one item for steps this small', async () => {
    const run = await running();
    const send = vi.spyOn(table.doc, 'send');
    let calls: unknown[][] = [];
    try {
      await recordBatch(
        repo,
        run.runId,
        Array.from({ length: 10 }, (_, i) => stepEvent(i + 1)),
      );
    } finally {
      calls = [...send.mock.calls];
      send.mockRestore();
    }
    const writes = calls
      .map(([command]) => command as { constructor: { name: string }; input: Record<string, unknown> })
      .filter((command) => command.constructor.name !== 'GetCommand');
    expect(writes.map((command) => command.constructor.name)).toEqual(['TransactWriteCommand']);
    const actions = (writes[0]?.input.TransactItems ?? []) as { Put?: { Item: Record<string, unknown> } }[];
    const puts = actions.flatMap((action) => (action.Put ? [action.Put.Item] : []));
    const pack = puts.find((item) => String(item.sk).startsWith('STEPS#'));
    expect(pack).toMatchObject({ sk: 'STEPS#0000000001', first: 1, last: 10 });
    // ten steps for about a write unit each in a transaction of its own would be 20; together, 2
    expect(Buffer.byteLength(JSON.stringify(pack))).toBeLessThan(1024 * 2);
  });
});
