import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoRunRepository } from '../../shared/adapters/dynamo-run-repository.js';
import type { Run } from '../../shared/domain/run.js';
import type { StepContentRef } from '../../shared/domain/steps.js';
import type { AgentEvent } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';
import { ownRunFactory, podFactory } from '../support/factories.js';

const table = useTestTable();
let repo: DynamoRunRepository;
beforeAll(() => {
  repo = new DynamoRunRepository(table.doc, table.tableName);
});

const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();

const running = async (): Promise<Run> => {
  const run = ownRunFactory();
  const snapshot = {
    prompt: 'p',
    repos: [],
    request: {},
    pod: podFactory({
      accountId: run.accountId,
      podId: 'pod-a',
      model: 'm',
      approvalWindowSeconds: 900,
      updatedAt: at(0),
    }),
  };
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

describe('DynamoRunRepository steps', () => {
  it('lists steps in seq order page by page, leaving out other events and repeats', async () => {
    const run = await running();
    const events: AgentEvent[] = [];
    for (let seq = 1; seq <= 130; seq++) {
      events.push(seq % 10 === 0 ? { seq, at: at(1), type: 'heartbeat' } : stepEvent(seq));
    }
    // recorded out of order, in two batches, with a batch repeated
    await repo.recordEvents(run.runId, events.slice(60));
    await repo.recordEvents(run.runId, events.slice(0, 60));
    const repeat = await repo.recordEvents(run.runId, events.slice(0, 60));
    expect(repeat.accepted.filter((e) => e.type === 'step')).toEqual([]);

    const seen: number[] = [];
    let afterSeq = 0;
    for (;;) {
      const page = await repo.listSteps(run.runId, { afterSeq, limit: 50, settledOnly: true });
      seen.push(...page.items.map((s) => s.seq));
      const last = page.items.at(-1);
      if (!page.more || !last) break;
      expect(page.items).toHaveLength(50);
      afterSeq = last.seq;
    }
    expect(seen).toEqual(events.filter((e) => e.type === 'step').map((e) => e.seq));
    const [first] = (await repo.listSteps(run.runId, { afterSeq: 0, limit: 1, settledOnly: false })).items;
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
    await repo.recordEvents(
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
      new Map([[1, ref]]),
    );
    const cut = await repo.getStep(run.runId, 1);
    expect(cut).toMatchObject({ truncated: true, contentBytes: 50_000, fullContent: ref });
    expect(cut?.content).toBe(content.slice(0, 32 * 1024));
    expect(await repo.getStep(run.runId, 2)).toMatchObject({ tool: 'bash', args: '{"c":"ls"}' });
    expect(await repo.getStep(run.runId, 2)).not.toHaveProperty('truncated');
    expect(await repo.getStep(run.runId, 3)).toMatchObject({ argsTruncated: true, argsBytes: 9008 });
    expect(await repo.getStep(run.runId, 3)).not.toHaveProperty('truncated');
    expect(await repo.getStep(run.runId, 4)).toBeUndefined();
  });

  it('leaves out, while asked to, a step written beyond the last batch known to be complete', async () => {
    const run = await running();
    await repo.recordEvents(run.runId, [stepEvent(1), stepEvent(2)]);
    // a batch still being written: its seq 4 landed, its seq 3 not yet
    await table.doc.send(
      new PutCommand({
        TableName: table.tableName,
        Item: {
          pk: `RUN#${run.runId}`,
          sk: 'STEP#0000000004',
          seq: 4,
          at: at(4),
          kind: 'assistant',
          content: 'x',
        },
      }),
    );
    const settled = await repo.listSteps(run.runId, { afterSeq: 0, limit: 10, settledOnly: true });
    expect(settled.items.map((s) => s.seq)).toEqual([1, 2]);
    const all = await repo.listSteps(run.runId, { afterSeq: 0, limit: 10, settledOnly: false });
    expect(all.items.map((s) => s.seq)).toEqual([1, 2, 4]);
    await repo.recordEvents(run.runId, [stepEvent(3), stepEvent(4)]);
    const later = await repo.listSteps(run.runId, { afterSeq: 2, limit: 10, settledOnly: true });
    expect(later.items.map((s) => s.seq)).toEqual([3, 4]);
  });

  it('writes an ordinary step with at most 2 write units: its record and the small settled mark', async () => {
    const run = await running();
    const send = vi.spyOn(table.doc, 'send');
    let calls: unknown[][] = [];
    try {
      await repo.recordEvents(run.runId, [
        {
          seq: 1,
          at: at(1),
          type: 'step',
          kind: 'tool_call',
          content: 'npm test',
          tool: 'bash',
          args: { c: 'npm test' },
        },
      ]);
    } finally {
      calls = [...send.mock.calls];
      send.mockRestore();
    }
    const stepWrites = calls
      .map(([command]) => (command as unknown as { input: Record<string, unknown> }).input)
      .filter((input) => {
        const key = (input.Item ?? input.Key) as { sk?: string } | undefined;
        return key?.sk?.startsWith('STEP');
      });
    expect(stepWrites.map((input) => ((input.Item ?? input.Key) as { sk: string }).sk)).toEqual([
      'STEP#0000000001',
      'STEPS',
    ]);
    // one write unit covers an item of up to 1 KB; the mark holds its keys, the run id and a number
    expect(Buffer.byteLength(JSON.stringify(stepWrites[0]?.Item))).toBeLessThan(1024);
  });
});
