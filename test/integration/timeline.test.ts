import { describe, expect, it } from 'vitest';
import type { StepView } from '../../shared/usecases/timeline.js';
import { api, dispatch, waitForRun, waitForTerminal } from './support/api.js';
import { tokenFor } from './support/aws.js';

type StepsPage = { items: StepView[]; nextAfter: number | null };

const steps = (runId: string, query: Record<string, string | number> = {}, token?: string) =>
  api<StepsPage>(
    'GET',
    `/v1/runs/${runId}/steps?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]))}`,
    token === undefined ? {} : { token },
  );

/** Every step from `after` on, page by page. */
const allSteps = async (runId: string, limit: number, after = 0): Promise<StepView[]> => {
  const out: StepView[] = [];
  for (let next: number | null = after; next !== null; ) {
    const page: { status: number; body: StepsPage } = await steps(runId, { after: next, limit });
    expect(page.status).toBe(200);
    expect(page.body.items.length).toBeLessThanOrEqual(limit);
    out.push(...page.body.items);
    next = page.body.nextAfter;
  }
  return out;
};

const BIG_STEP_BYTES = 1_000_000;

describe('GET /v1/runs/{runId}/steps', () => {
  it('returns all 300 steps in seq order, the 1 MB one cut with a link to its whole text', async () => {
    // the plan, 298 execution steps, and the big one: 300 steps
    const { body } = await dispatch({
      config: {
        demo: {
          steps: 298,
          stepDelayMs: 0,
          bigStepBytes: BIG_STEP_BYTES,
          usage: [{ model: 'm-1', inputTokens: 5, outputTokens: 2 }],
        },
      },
    });
    const { run } = await waitForTerminal(body.runId, 90_000);
    expect(run.status).toBe('COMPLETED');

    const timeline = await allSteps(run.runId, 100);
    expect(timeline).toHaveLength(300);
    const seqs = timeline.map((s) => s.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(300);
    expect(timeline[0]).toMatchObject({ kind: 'assistant', content: expect.stringMatching(/^Plan for: /) });
    expect(timeline[1]).toMatchObject({ kind: 'assistant', content: expect.stringMatching(/^Step 1: /) });
    expect(timeline[2]).toMatchObject({ kind: 'tool_call', tool: 'bash', args: { command: 'ls -la' } });
    expect(timeline[3]).toMatchObject({ kind: 'tool_result', tool: 'bash' });
    expect(timeline.filter((s) => s.truncated)).toHaveLength(1);

    const big = timeline.at(-1) as StepView;
    expect(big).toMatchObject({ kind: 'assistant', truncated: true, contentBytes: BIG_STEP_BYTES });
    expect(Buffer.byteLength(big.content)).toBeLessThanOrEqual(32 * 1024);
    expect(big.fullContent).toEqual({
      href: `/v1/runs/${run.runId}/steps/${big.seq}/content`,
      bytes: BIG_STEP_BYTES,
    });
    const whole = await api<string>('GET', big.fullContent?.href as string);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(whole.body).toHaveLength(BIG_STEP_BYTES);
    expect(whole.body.startsWith(big.content)).toBe(true);

    // a step small enough for its record is its own whole content
    const small = await api<string>('GET', `/v1/runs/${run.runId}/steps/${timeline[1]?.seq}/content`);
    expect(small.body).toBe(timeline[1]?.content);
    expect((await api('GET', `/v1/runs/${run.runId}/steps/999999/content`)).status).toBe(404);

    // after= continues from any step
    const tail = await allSteps(run.runId, 100, seqs[250]);
    expect(tail.map((s) => s.seq)).toEqual(seqs.slice(251));
  });

  it('is followed with after= while the run is still working, never skipping a step', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 60, stepDelayMs: 40 } } });
    await waitForRun(body.runId, (r) => r.status === 'RUNNING');
    const followed: number[] = [];
    let after = 0;
    for (let done = false; ; ) {
      const page = (await steps(body.runId, { after, limit: 7 })).body;
      followed.push(...page.items.map((s) => s.seq));
      after = followed.at(-1) ?? after;
      if (done && page.nextAfter === null) break;
      const { body: run } = await api<{ status: string }>('GET', `/v1/runs/${body.runId}`);
      done = !['QUEUED', 'PROVISIONING', 'RUNNING'].includes(run.status);
      if (page.nextAfter === null) await new Promise((r) => setTimeout(r, 50));
    }
    const all = (await allSteps(body.runId, 100)).map((s) => s.seq);
    expect(all).toHaveLength(61);
    expect(followed).toEqual(all);
  });

  it('hides another tenant’s run with 404', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0 } } });
    await waitForTerminal(body.runId);
    const stranger = await tokenFor({ sub: 'mallory', accountId: `acct-other-${Date.now()}` });
    expect((await steps(body.runId, {}, stranger)).status).toBe(404);
    expect((await api('GET', `/v1/runs/${body.runId}/steps/1/content`, { token: stranger })).status).toBe(
      404,
    );
    expect((await steps(body.runId, { limit: 101 })).status).toBe(400);
  });
});
