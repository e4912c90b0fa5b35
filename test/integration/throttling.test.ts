import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isTerminal, type Run } from '../../shared/domain/run.js';
import { API_REQUEST_WINDOW_SECONDS } from '../../shared/domain/throttle.js';
import type { RunLogPage } from '../../shared/usecases/logs.js';
import { RATE_KEPT_MS } from '../../shared/usecases/throttle.js';
import { api, dispatch, endpoints, getRun, waitForRun } from './support/api.js';
import { tokenFor } from './support/aws.js';

/** Limits per caller: a flood is answered, and whoever it does not come from is still served. */

/** Sends `send` from `lanes` callers at once until `enough` says so, and answers each status seen. */
const flood = async (lanes: number, send: () => Promise<number>, enough: (statuses: number[]) => boolean) => {
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (!enough(statuses)) statuses.push(await send());
    }),
  );
  return statuses;
};

describe('limits per caller', () => {
  it('answers a flood without a token 401 or 429, and the running pod’s batches go on unrefused', async () => {
    const steps = 40;
    const { body: run } = await dispatch({ config: { demo: { steps, stepDelayMs: 100, edit: false } } });
    await waitForRun(run.runId, (r) => r.phase === 'EXECUTING' || isTerminal(r.status));

    let ended = false;
    const watch = (async () => {
      while (!isTerminal((await getRun(run.runId)).status)) await new Promise((r) => setTimeout(r, 200));
      ended = true;
    })();
    const tokenless = (i: number) =>
      i % 2 === 0
        ? api('POST', `/agent/v1/runs/${run.runId}/events`, { token: null, body: { events: [] } })
        : api('GET', `/agent/v1/runs/${run.runId}/control`, { token: null });
    let sent = 0;
    const statuses = await flood(
      16,
      async () => (await tokenless(sent++)).status,
      (seen) => ended || seen.length >= 20_000,
    );
    await watch;

    expect(new Set(statuses)).toEqual(new Set([401, 429]));
    const finished: Run = await getRun(run.runId);
    expect(finished.status).toBe('COMPLETED');
    const { body: stepPage } = await api<{ items: { kind: string }[] }>(
      'GET',
      `/v1/runs/${run.runId}/steps?limit=100`,
    );
    expect(stepPage.items.length).toBeGreaterThanOrEqual(steps);
    // the pod says so in its log whenever the Agent API turns a batch away; it never had to
    const { body: log } = await api<RunLogPage>('GET', `/v1/runs/${run.runId}/logs?limit=1000`);
    expect(log.items.map((l) => l.message).filter((m) => /answered (429|401)|retrying/.test(m))).toEqual([]);
  });

  it('answers an account over its requests a second 429 with Retry-After, while another account is served', async () => {
    const accountId = `busy-${randomUUID().slice(0, 8)}`;
    const busy = await tokenFor({ sub: 'owner', accountId, accountRole: 'admin' });
    const limits = { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 };
    const refused = await api('PUT', '/v1/account/limits', {
      token: busy,
      body: { ...limits, apiRequestsPerSecond: 501 },
    });
    expect(refused.status).toBe(400);
    expect(
      (await api('PUT', '/v1/account/limits', { token: busy, body: { ...limits, apiRequestsPerSecond: 5 } }))
        .status,
    ).toBe(200);
    // a new rate applies within the seconds an instance keeps the last: then 5 a second, 50 in a window
    await new Promise((resolve) => setTimeout(resolve, RATE_KEPT_MS));

    let tooMany: Awaited<ReturnType<typeof api<{ error: { code: string; message: string } }>>> | undefined;
    const statuses = await flood(
      4,
      async () => {
        const answer = await api<{ error: { code: string; message: string } }>('GET', '/v1/pods', {
          token: busy,
        });
        if (answer.status === 429) tooMany ??= answer;
        return answer.status;
      },
      (seen) => seen.filter((s) => s === 429).length >= 20 || seen.length >= 500,
    );
    expect(new Set(statuses)).toEqual(new Set([200, 429]));
    // two windows at most were counted: at most twice the allowance passed
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(2 * 5 * API_REQUEST_WINDOW_SECONDS);
    const retryAfter = Number(tooMany?.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(API_REQUEST_WINDOW_SECONDS);
    expect(tooMany?.body.error).toMatchObject({
      code: 'TooManyRequests',
      message: expect.stringMatching(/over its 5 requests a second/),
    });

    // another tenant is served meanwhile, and the busy one again once its window has passed
    expect((await api('GET', '/v1/pods', { token: endpoints().tokens.outsider })).status).toBe(200);
    expect((await api('GET', '/v1/pods', { token: busy })).status).toBe(429);
    await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000));
    expect((await api('GET', '/v1/pods', { token: busy })).status).toBe(200);
  });
});
