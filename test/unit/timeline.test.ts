import { describe, expect, it, vi } from 'vitest';
import type { StepEvent } from '../../shared/domain/agent-batch.js';
import { NotFoundError } from '../../shared/domain/errors.js';
import type { Run } from '../../shared/domain/run.js';
import type { Step, StepContentRef } from '../../shared/domain/steps.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { RunStore, StepContentStore, Timeline } from '../../shared/ports.js';
import { stepsQuerySchema } from '../../shared/schemas/timeline.js';
import { getStepContent, keepFullStepContent, listSteps } from '../../shared/usecases/timeline.js';
import { directoryOf, runFactory } from '../support/factories.js';

const caller: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };
const RUN_ID = 'run_01J0000000000000000000000A';
const ref: StepContentRef = {
  logGroup: '/steps',
  logStream: `steps/${RUN_ID}/0000000004`,
  parts: 1,
  bytes: 40_000,
};

const step = (seq: number, over: Partial<Step> = {}): Step => ({
  seq,
  at: '2026-01-01T00:00:00.000Z',
  kind: 'assistant',
  content: `step ${seq}`,
  ...over,
});

/** The run store and the timeline of one run. */
const fakeRuns = (run: Run, steps: Step[], more = false) => {
  const runs = { get: vi.fn(async (runId: string) => (runId === run.runId ? run : undefined)) };
  const timeline = {
    listSteps: vi.fn(async () => ({ items: steps, more })),
    getStep: vi.fn(async (_: string, seq: number) => steps.find((s) => s.seq === seq)),
  };
  return {
    runs: runs as unknown as RunStore,
    directory: directoryOf(),
    timeline: timeline satisfies Timeline,
  };
};

const fakeStore = (texts: Record<string, string> = {}) => {
  const store = {
    put: vi.fn(async (runId: string, seq: number, content: string): Promise<StepContentRef> => {
      const kept = { ...ref, logStream: `steps/${runId}/${seq}`, bytes: Buffer.byteLength(content) };
      texts[kept.logStream] = content;
      return kept;
    }),
    get: vi.fn(async (r: StepContentRef) => texts[r.logStream]),
  };
  return store satisfies StepContentStore;
};

describe('listSteps', () => {
  it('shows steps in order with their arguments as sent and a link to the whole content of a cut one', async () => {
    const run = runFactory({ runId: RUN_ID, status: 'COMPLETED' });
    const deps = fakeRuns(run, [
      step(2, {
        kind: 'tool_call',
        tool: 'bash',
        args: '{"command":"ls"}',
        usage: { inputTokens: 3, outputTokens: 1 },
      }),
      step(3, { kind: 'tool_result', args: '{"command":"ca', argsTruncated: true, argsBytes: 9000 }),
      step(4, { content: 'x'.repeat(10), truncated: true, contentBytes: 40_000, fullContent: ref }),
    ]);
    const page = await listSteps(deps, caller, RUN_ID, stepsQuerySchema.parse({ after: '1', limit: '3' }));
    expect(deps.timeline.listSteps).toHaveBeenCalledWith(RUN_ID, {
      afterSeq: 1,
      throughSeq: 9_999_999_999,
      limit: 3,
    });
    expect(page.items.map((s) => s.seq)).toEqual([2, 3, 4]);
    expect(page.items[0]).toMatchObject({ tool: 'bash', args: { command: 'ls' }, usage: { inputTokens: 3 } });
    expect(page.items[1]).toMatchObject({ argsPreview: '{"command":"ca', argsTruncated: true });
    expect(page.items[1]).not.toHaveProperty('args');
    expect(page.items[2]?.fullContent).toEqual({ href: `/v1/runs/${RUN_ID}/steps/4/content`, bytes: 40_000 });
    expect(JSON.stringify(page.items[2])).not.toContain('/steps"');
    expect(page.nextAfter).toBeNull();
  });

  it('says where the next page starts, and reads a running run only up to the first gap in its seqs', async () => {
    // seqs 1–12 are recorded; 13 (a batch still being written) is not, 14–20 are
    const run = runFactory({
      runId: RUN_ID,
      status: 'RUNNING',
      seqs: [
        [1, 12],
        [14, 20],
      ],
    });
    const deps = fakeRuns(run, [step(5), step(9)], true);
    const page = await listSteps(deps, caller, RUN_ID, stepsQuerySchema.parse({}));
    expect(deps.timeline.listSteps).toHaveBeenCalledWith(RUN_ID, { afterSeq: 0, throughSeq: 12, limit: 50 });
    expect(page.nextAfter).toBe(9);
    const fresh = fakeRuns(runFactory({ runId: RUN_ID, status: 'PROVISIONING' }), []);
    await listSteps(fresh, caller, RUN_ID, stepsQuerySchema.parse({}));
    expect(fresh.timeline.listSteps).toHaveBeenCalledWith(RUN_ID, { afterSeq: 0, throughSeq: 0, limit: 50 });
  });

  it('hides another tenant’s run', async () => {
    const deps = fakeRuns(runFactory({ runId: RUN_ID, accountId: 'acct-2' }), [step(1)]);
    await expect(listSteps(deps, caller, RUN_ID, stepsQuerySchema.parse({}))).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(deps.timeline.listSteps).not.toHaveBeenCalled();
  });

  it('refuses a limit above 100 and a negative after', () => {
    expect(() => stepsQuerySchema.parse({ limit: '101' })).toThrow();
    expect(() => stepsQuerySchema.parse({ after: '-1' })).toThrow();
  });
});

describe('getStepContent', () => {
  const run = runFactory({ runId: RUN_ID, status: 'COMPLETED' });
  const steps = [
    step(1, { content: 'short' }),
    step(4, { content: 'cut', truncated: true, contentBytes: 40_000, fullContent: ref }),
    step(6, { content: 'cut, never kept', truncated: true, contentBytes: 40_000 }),
  ];

  it('answers a whole step from its record and a cut one from where its text was kept', async () => {
    const stepContent = fakeStore({ [ref.logStream]: 'the whole text' });
    const deps = { ...fakeRuns(run, steps), stepContent };
    expect(await getStepContent(deps, caller, RUN_ID, 1)).toBe('short');
    expect(await getStepContent(deps, caller, RUN_ID, 4)).toBe('the whole text');
    expect(stepContent.get).toHaveBeenCalledTimes(1);
  });

  it('answers 404 for a missing step, expired text, text never kept, or another tenant’s run', async () => {
    const deps = { ...fakeRuns(run, steps), stepContent: fakeStore() };
    await expect(getStepContent(deps, caller, RUN_ID, 2)).rejects.toBeInstanceOf(NotFoundError);
    await expect(getStepContent(deps, caller, RUN_ID, 4)).rejects.toBeInstanceOf(NotFoundError);
    await expect(getStepContent(deps, caller, RUN_ID, 6)).rejects.toBeInstanceOf(NotFoundError);
    await expect(getStepContent(deps, { ...caller, accountId: 'acct-2' }, RUN_ID, 1)).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});

describe('keepFullStepContent', () => {
  const at = '2026-01-01T00:00:00.000Z';
  const big = 'é'.repeat(20_000);

  it('keeps only the steps above 32 KB, by seq', async () => {
    const stepContent = fakeStore();
    const steps: StepEvent[] = [
      { seq: 1, at, type: 'step', kind: 'assistant', content: 'x'.repeat(32 * 1024) },
      { seq: 2, at, type: 'step', kind: 'tool_result', content: big },
    ];
    const kept = await keepFullStepContent({ stepContent }, RUN_ID, steps);
    expect([...kept.keys()]).toEqual([2]);
    expect(stepContent.put).toHaveBeenCalledWith(RUN_ID, 2, big);
  });
});
