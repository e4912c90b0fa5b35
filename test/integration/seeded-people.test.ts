import { describe, expect, it } from 'vitest';
import { api, dispatch, endpoints, waitForTerminal } from './support/api.js';

/** The people `npm start` signs in: the demo project's admin, a member of it, and an outsider. */

describe('the seeded tokens', () => {
  it('let the member read and dispatch in the demo project but not act as its admin, and show the outsider nothing', async () => {
    const { tokens, projectId, scriptedPodId } = endpoints();
    expect(tokens.admin).toBe(endpoints().token);
    const { body: run } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0 } } }, undefined);
    await waitForTerminal(run.runId);

    expect((await api('GET', `/v1/runs/${run.runId}`, { token: tokens.member })).status).toBe(200);
    const mine = await api<{ runId: string }>('POST', `/v1/projects/${projectId}/runs`, {
      token: tokens.member,
      body: {
        itemId: 'MEMBER-1',
        podId: scriptedPodId,
        mode: 'autopilot',
        prompt: 'p',
        config: { demo: { steps: 0 } },
      },
    });
    expect(mine.status).toBe(202);
    await waitForTerminal(mine.body.runId);
    // a script is for the demo agent only: on the Claude Code pod it would fake the run's usage
    const scriptedReal = await api<{ error: { message: string } }>('POST', `/v1/projects/${projectId}/runs`, {
      token: tokens.member,
      body: {
        itemId: 'MEMBER-2',
        podId: endpoints().podId,
        mode: 'autopilot',
        prompt: 'p',
        config: {
          demo: { usage: [{ model: 'claude-sonnet-4-5', inputTokens: 1_000_000, outputTokens: 0 }] },
        },
      },
    });
    expect(scriptedReal.status).toBe(400);
    expect(scriptedReal.body.error.message).toMatch(/config\.demo scripts the demo agent/);
    // closing a run is the project admin's
    expect((await api('POST', `/v1/runs/${run.runId}/done`, { token: tokens.member })).status).toBe(403);

    expect((await api('GET', `/v1/runs/${run.runId}`, { token: tokens.outsider })).status).toBe(404);
    expect((await api('GET', `/v1/projects/${projectId}`, { token: tokens.outsider })).status).toBe(404);
    const listed = await api<{ items: unknown[] }>('GET', '/v1/runs', { token: tokens.outsider });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toEqual([]);
  });
});
