import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { sendChoice } from '../../cli/commands.js';
import type { FollowEvent } from '../../cli/follow.js';
import { askChoice, parseChoice, phaseProgress, WatchRenderer } from '../../cli/watch.js';
import type { Run } from '../../shared/domain/run.js';
import type { StepView } from '../../shared/schemas/wire.js';
import { runCli, sink } from '../support/cli.js';
import { runFactory } from '../support/factories.js';

const RUN_ID = 'run_01J0000000000000000000000A';
const NOW = new Date('2026-01-01T01:00:00.000Z');
const cost = (totalUsd: number) => ({
  tokenUsd: 0,
  sandboxCpuUsd: 0,
  sandboxMemoryUsd: 0,
  feeUsd: 0,
  totalUsd,
});
const usage = (inputTokens: number, outputTokens: number) => ({
  m: { inputTokens, outputTokens, cacheReadTokens: 0, cacheWriteTokens: 0, costMicroUsd: 0 },
});
const step = (seq: number, over: Partial<StepView> = {}): StepView => ({
  seq,
  at: NOW.toISOString(),
  kind: 'assistant',
  content: `step ${seq}`,
  ...over,
});

const render = (events: FollowEvent[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const renderer = new WatchRenderer(
    (l) => out.push(l),
    (l) => err.push(l),
    () => NOW,
  );
  for (const event of events) renderer.onEvent(event);
  return { out, err };
};

const run = (over: Partial<Run>): FollowEvent => ({
  type: 'run',
  run: runFactory({ runId: RUN_ID, ...over }),
});

describe('WatchRenderer', () => {
  it('shows the run, its status changes, phases, steps, tokens and cost as they grow, and the end', () => {
    const { out } = render([
      run({ status: 'QUEUED' }),
      run({ status: 'RUNNING', phase: 'PLANNING', version: 2 }),
      { type: 'step', step: step(3) },
      run({ status: 'RUNNING', phase: 'EXECUTING', usage: usage(1000, 200), cost: cost(12_200), version: 3 }),
      { type: 'step', step: step(5, { kind: 'tool_call', tool: 'bash', content: 'ls -la\nsecond line' }) },
      run({
        status: 'COMPLETED',
        phase: 'PR_RAISED',
        exitReason: 'completed',
        usage: usage(1000, 200),
        cost: cost(35_200),
        durationMs: 2260,
        message: 'Added a line.',
        pullRequest: { url: 'https://github.com/o/r/pull/1', state: 'open' },
        version: 4,
      }),
    ]);
    expect(out).toEqual([
      'run_01J0000000000000000000000A  ITEM-1 on pod-1 (autopilot)',
      'status QUEUED',
      'status RUNNING',
      'phase PLANNING  [PLANNING] > EXECUTING > COMMITTING > PR_RAISED',
      '  #3 assistant  step 3',
      'phase EXECUTING  PLANNING > [EXECUTING] > COMMITTING > PR_RAISED',
      'tokens 1,000 in · 200 out · cost $0.0122',
      '  #5 tool_call bash  ls -la',
      'phase PR_RAISED  PLANNING > EXECUTING > [PR_RAISED]',
      'tokens 1,000 in · 200 out · cost $0.0352',
      'pull request https://github.com/o/r/pull/1',
      'status COMPLETED (completed) · 2.2s · $0.0352 · Added a line.',
    ]);
  });

  it('shows a checkpoint’s name and summary once', () => {
    const pendingApproval = {
      seq: 9,
      name: 'plan',
      summary: 'I will add a route.\nThen a test.',
      requestedAt: NOW.toISOString(),
    };
    const { out } = render([
      run({ status: 'RUNNING' }),
      run({ status: 'AWAITING_APPROVAL', pendingApproval, version: 2 }),
      run({
        status: 'AWAITING_APPROVAL',
        pendingApproval: { ...pendingApproval, approvalId: 'a'.repeat(24) },
        version: 3,
      }),
      run({ status: 'RUNNING', version: 4 }),
    ]);
    expect(out.slice(1)).toEqual([
      'status RUNNING',
      'status AWAITING_APPROVAL at checkpoint plan',
      '  I will add a route.',
      '  Then a test.',
      'status RUNNING',
    ]);
  });

  it('shows the next checkpoint when the run went on between two without a poll seeing it', () => {
    const plan = { seq: 9, name: 'plan', summary: 'the plan', requestedAt: NOW.toISOString() };
    const { out } = render([
      run({ status: 'AWAITING_APPROVAL', pendingApproval: plan }),
      run({
        status: 'AWAITING_APPROVAL',
        pendingApproval: { ...plan, seq: 20, name: 'commit', summary: 'the commit' },
        version: 2,
      }),
    ]);
    expect(out.slice(1)).toEqual([
      'status AWAITING_APPROVAL at checkpoint plan',
      '  the plan',
      'status AWAITING_APPROVAL at checkpoint commit',
      '  the commit',
    ]);
  });

  it('says on stderr when it lost contact and tries again', () => {
    const { out, err } = render([
      { type: 'retrying', message: 'could not reach http://api/v1/runs/x: ECONNREFUSED', delayMs: 2000 },
    ]);
    expect(out).toEqual([]);
    expect(err).toEqual(['could not reach http://api/v1/runs/x: ECONNREFUSED; trying again in 2.0s']);
  });

  it('shows the cost alone while no tokens were used', () => {
    const { out } = render([
      run({ status: 'RUNNING' }),
      run({ status: 'FAILED', phase: 'FAILED', cost: cost(10_700), version: 2 }),
    ]);
    expect(out.slice(2)).toEqual(['phase FAILED', 'cost $0.0107', 'status FAILED · $0.0107']);
  });

  it('draws the phases seen and those ahead', () => {
    expect(phaseProgress([])).toBe('');
    expect(phaseProgress(['STARTED'])).toBe('[STARTED] > PLANNING > EXECUTING > COMMITTING > PR_RAISED');
    expect(phaseProgress(['STARTED', 'EXECUTING', 'FAILED'])).toBe('STARTED > EXECUTING > FAILED');
  });
});

describe('the checkpoint prompt', () => {
  it('reads approve or cancel in the words people use', () => {
    for (const word of ['a', 'approve', 'Y', ' yes ']) expect(parseChoice(word)).toBe('approve');
    for (const word of ['c', 'CANCEL', 'n', 'no']) expect(parseChoice(word)).toBe('cancel');
    for (const word of ['', 'maybe', 'ap']) expect(parseChoice(word)).toBeUndefined();
  });

  it('asks again until the answer is a decision', async () => {
    const input = new PassThrough();
    const output = sink();
    const asking = askChoice({ input, output }, 'approve or cancel checkpoint plan? (a/c) ');
    input.write('maybe\n');
    input.write('a\n');
    await expect(asking).resolves.toBe('approve');
    expect(output.text).toBe(
      'approve or cancel checkpoint plan? (a/c) please answer approve or cancel (a/c): ',
    );
  });

  it('decides nothing when the input ends or the question is withdrawn', async () => {
    const ended = new PassThrough();
    const asking = askChoice({ input: ended, output: sink() }, '? ');
    ended.end();
    await expect(asking).resolves.toBeUndefined();

    const controller = new AbortController();
    const withdrawn = askChoice({ input: new PassThrough(), output: sink() }, '? ', controller.signal);
    controller.abort();
    await expect(withdrawn).resolves.toBeUndefined();
  });

  it('waits for the approval to be requested before sending the decision', async () => {
    const pending = { seq: 9, name: 'plan', summary: 's', requestedAt: NOW.toISOString() };
    const runs = [
      runFactory({ status: 'AWAITING_APPROVAL', pendingApproval: pending }),
      runFactory({
        status: 'AWAITING_APPROVAL',
        pendingApproval: { ...pending, approvalId: 'a'.repeat(24) },
      }),
    ];
    const client = {
      get: vi.fn(async () => runs.shift()),
      post: vi.fn(async () => ({ approval: { decision: { decision: 'approved' } }, run: runFactory() })),
    };
    await sendChoice(client as never, RUN_ID, 'approve', undefined, 1);
    expect(client.get).toHaveBeenCalledTimes(2);
    expect(client.post).toHaveBeenCalledWith(`/v1/runs/${RUN_ID}/approve`, { signal: undefined });
  });

  it('sends nothing for a run that stopped waiting', async () => {
    const client = { get: vi.fn(async () => runFactory({ status: 'RUNNING' })), post: vi.fn() };
    await expect(sendChoice(client as never, RUN_ID, 'cancel')).rejects.toThrow(
      'the run no longer waits for a decision; it is RUNNING',
    );
    expect(client.post).not.toHaveBeenCalled();
  });
});

describe('runs watch at a checkpoint', () => {
  const pending = {
    seq: 9,
    name: 'plan',
    summary: 'Add a route',
    requestedAt: NOW.toISOString(),
    approvalId: 'a'.repeat(24),
  };

  /** A supervised run that waits at its plan until it is decided, then completes or ends ABANDONED. */
  const supervisedRun = () => {
    let decision: 'approve' | 'cancel' | undefined;
    let polls = 0;
    return (request: { method: string; path: string }) => {
      if (request.method === 'POST') {
        decision = request.path.endsWith('/approve') ? 'approve' : 'cancel';
        return {
          body: {
            approval: {
              checkpoint: { name: 'plan' },
              decision: { decision: decision === 'approve' ? 'approved' : 'cancelled' },
            },
            run: runFactory({ runId: RUN_ID, status: 'RUNNING' }),
          },
        };
      }
      if (request.path.endsWith('/steps')) return { body: { items: [], nextAfter: null } };
      polls++;
      if (!decision) {
        return {
          body: runFactory({
            runId: RUN_ID,
            status: polls < 2 ? 'RUNNING' : 'AWAITING_APPROVAL',
            pendingApproval: polls < 2 ? undefined : pending,
            version: polls < 2 ? 1 : 2,
          }),
        };
      }
      const status = decision === 'approve' ? 'COMPLETED' : 'ABANDONED';
      return { body: runFactory({ runId: RUN_ID, status, version: 3 }) };
    };
  };

  const terminal = () => Object.assign(new PassThrough(), { isTTY: true });

  /** what was posted besides asking for a ticket to the stream (the fake API has none) */
  const decisions = (requests: { method: string; path: string }[]) =>
    requests.filter((r) => r.method === 'POST' && r.path !== '/v1/stream/tickets').map((r) => r.path);

  it('asks on a terminal, sends the approval and exits by the outcome', async () => {
    const stdin = terminal();
    const asked = runCli(['watch', RUN_ID], supervisedRun(), { stdin });
    await vi.waitFor(() => expect(stdin.listenerCount('data')).toBeGreaterThan(0));
    stdin.write('approve\n');
    const { code, stdout, stderr, requests } = await asked;
    expect(code).toBe(0);
    expect(decisions(requests)).toEqual([`/v1/runs/${RUN_ID}/approve`]);
    expect(stderr).toContain('approve or cancel checkpoint plan? (a/c) ');
    expect(stderr).toContain('approved checkpoint plan');
    expect(stdout).toContain('status AWAITING_APPROVAL at checkpoint plan');
    expect(stdout).toContain('status COMPLETED');
  });

  it('sends a cancel, and the run ends ABANDONED: exit 2', async () => {
    const stdin = terminal();
    const asked = runCli(['watch', RUN_ID], supervisedRun(), { stdin });
    await vi.waitFor(() => expect(stdin.listenerCount('data')).toBeGreaterThan(0));
    stdin.write('c\n');
    const { code, requests } = await asked;
    expect(code).toBe(2);
    expect(decisions(requests)).toEqual([`/v1/runs/${RUN_ID}/cancel`]);
  });

  it('without a terminal, says how to decide and asks nothing', async () => {
    let polls = 0;
    const { code, stdout, requests } = await runCli(['watch', RUN_ID], (request) => {
      if (request.path.endsWith('/steps')) return { body: { items: [], nextAfter: null } };
      polls++;
      return {
        body:
          polls < 3
            ? runFactory({ runId: RUN_ID, status: 'AWAITING_APPROVAL', pendingApproval: pending })
            : runFactory({ runId: RUN_ID, status: 'ABANDONED', version: 2 }),
      };
    });
    expect(code).toBe(2);
    expect(stdout).toContain(`decide with "runs approve ${RUN_ID}" or "runs cancel ${RUN_ID}"`);
    expect(decisions(requests)).toEqual([]);
  });
});
