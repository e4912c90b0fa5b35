import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, endpoints, getRun, waitForRun, waitForTerminal } from './support/api.js';

/** The run's pull request on the GitHub stand-in, and what happens to it there. */

/** A person's call to the stand-in, with the demo admin's token. */
const github = async <T = Record<string, unknown>>(method: string, route: string, body?: unknown) => {
  const res = await fetch(`${endpoints().services.github}${route}`, {
    method,
    headers: {
      authorization: `token ${endpoints().github.userToken}`,
      accept: 'application/vnd.github+json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as T };
};

interface Delivery {
  id: number;
  guid: string;
  event: string;
  action: string;
  status_code: number;
  request: { payload: { pull_request?: { number: number } } };
}
const deliveries = async () => (await github<Delivery[]>('GET', '/_local/deliveries')).body;
const deliveryOf = async (number: number, action: string) => {
  for (let i = 0; i < 100; i++) {
    const found = (await deliveries()).find(
      (d) =>
        d.event === 'pull_request' &&
        d.action === action &&
        d.request.payload.pull_request?.number === number,
    );
    if (found && found.status_code !== 0) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${action} delivery for pull request ${number}`);
};
const redeliver = (delivery: Delivery) => github('POST', `/_local/deliveries/${delivery.id}/redeliver`);

/** A completed autopilot run of the scripted pod, which edits the demo repository: it has its pull request. */
const completedWithPullRequest = async (): Promise<
  Run & { pullRequest: { number: number; url: string } }
> => {
  const { body } = await dispatch({ itemId: 'APP-7', prompt: 'Add a health check\nwith a test' });
  const { run } = await waitForTerminal(body.runId, 60_000);
  expect(run.status).toBe('COMPLETED');
  return run as Run & { pullRequest: { number: number; url: string } };
};

describe('a run’s pull request', () => {
  it('is opened by the control plane from the run’s branch, titled from the item, with the run’s link', async () => {
    const run = await completedWithPullRequest();
    expect(run.phase).toBe('PR_RAISED');
    expect(run.pullRequest).toMatchObject({ state: 'open', number: expect.any(Number) });

    const { status, body: pr } = await github<{
      head: { ref: string };
      base: { ref: string };
      title: string;
      body: string;
      user: { login: string };
      html_url: string;
    }>('GET', `/repos/demo/demo-app/pulls/${run.pullRequest.number}`);
    expect(status).toBe(200);
    expect(pr.head.ref).toBe(`pods/${endpoints().scriptedPodId}/${run.runId}`);
    expect(pr.base.ref).toBe('main');
    expect(pr.title).toBe('APP-7: Add a health check');
    expect(pr.body).toContain(`/v1/runs/${run.runId}`);
    expect(pr.user.login).toMatch(/\[bot\]$/);
    expect(pr.html_url).toBe(run.pullRequest.url);
  });

  it('closed unmerged makes the run PR_REJECTED; a repeated or late delivery changes nothing more', async () => {
    const run = await completedWithPullRequest();
    const { number } = run.pullRequest;
    const opened = await deliveryOf(number, 'opened');

    expect((await github('PATCH', `/repos/demo/demo-app/pulls/${number}`, { state: 'closed' })).status).toBe(
      200,
    );
    const { run: rejected } = await waitForRun(run.runId, (r) => r.status === 'PR_REJECTED', 15_000);
    expect(rejected.pullRequest).toMatchObject({ number, state: 'closed', closedAt: expect.any(String) });

    const closed = await deliveryOf(number, 'closed');
    await redeliver(closed);
    await redeliver(opened);
    const sentTwice = async () => {
      for (let i = 0; i < 100; i++) {
        const all = await deliveries();
        const again = [closed, opened].map((d) => all.filter((x) => x.guid === d.guid));
        if (again.every((copies) => copies.length === 2)) return again.flat();
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the redeliveries were not made');
    };
    expect((await sentTwice()).map((d) => d.status_code)).toEqual([200, 200, 200, 200]);
    const still = await getRun(run.runId);
    expect(still.status).toBe('PR_REJECTED');
    expect(still.history.map((h) => h.status)).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RUNNING',
      'COMPLETED',
      'PR_REJECTED',
    ]);
  });

  it('merged makes the run DONE, with who merged and when, and the base branch has its commit', async () => {
    const run = await completedWithPullRequest();
    const { number } = run.pullRequest;

    expect((await github('PUT', `/repos/demo/demo-app/pulls/${number}/merge`, {})).status).toBe(200);
    const { run: done } = await waitForRun(run.runId, (r) => r.status === 'DONE', 15_000);
    expect(done.pullRequest).toMatchObject({
      number,
      state: 'merged',
      mergedBy: endpoints().github.login,
      mergedAt: expect.any(String),
    });
    expect(done.message).toBe(`pull request merged by ${endpoints().github.login}`);
  });
});

describe('POST /webhooks/github', () => {
  it('refuses a forged signature with 401 and changes nothing', async () => {
    const run = await completedWithPullRequest();
    const payload = JSON.stringify({
      action: 'closed',
      installation: { id: endpoints().github.installationId },
      repository: { clone_url: endpoints().demoRepo },
      pull_request: {
        html_url: run.pullRequest.url,
        number: run.pullRequest.number,
        state: 'closed',
        merged: false,
        head: { ref: `pods/${endpoints().scriptedPodId}/${run.runId}` },
      },
    });
    const forged = `sha256=${createHmac('sha256', 'not-the-webhook-secret').update(payload).digest('hex')}`;
    for (const signature of [forged, undefined]) {
      const answer = await api('POST', '/webhooks/github', {
        token: null,
        rawBody: payload,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'pull_request',
          'x-github-delivery': 'forged-1',
          ...(signature ? { 'x-hub-signature-256': signature } : {}),
        },
      });
      expect(answer.status).toBe(401);
    }
    expect((await getRun(run.runId)).status).toBe('COMPLETED');
  });
});
