import { createHmac } from 'node:crypto';
import { GetQueueAttributesCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, endpoints, getRun, waitForRun, waitForTerminal } from './support/api.js';
import { sqs } from './support/aws.js';

/** The run's pull request on the GitHub stand-in, and what happens to it there. */

/** A person's call to the stand-in, with the demo admin's token unless another's is given. */
const github = async <T = Record<string, unknown>>(
  method: string,
  route: string,
  body?: unknown,
  token = endpoints().github.userToken,
) => {
  const res = await fetch(`${endpoints().services.github}${route}`, {
    method,
    headers: {
      authorization: `token ${token}`,
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
  request: { payload: { pull_request?: { number: number }; comment?: { user: { login: string } } } };
  response: { payload: string | null };
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

/** Someone on the stand-in, with read or write access to the organization's repositories. */
const person = async (prefix: string, permission: 'read' | 'write') => {
  const login = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  const { status, body } = await github<{ token: string }>('POST', '/_local/users', { login, permission });
  expect(status).toBe(201);
  return { login, token: body.token };
};

/** Adds a project member with a GitHub login to the demo project (an admin's PUT of the whole project). */
const addMember = async (userId: string, githubLogin: string, role: 'member' | 'viewer' = 'member') => {
  const e = endpoints();
  const { body: project } = await api<{ name: string; repos: string[]; members: unknown[] }>(
    'GET',
    `/v1/projects/${e.projectId}`,
  );
  const { status, body } = await api('PUT', `/v1/projects/${e.projectId}`, {
    body: {
      name: project.name,
      repos: project.repos,
      members: [...project.members, { userId, role, githubLogin }],
    },
  });
  expect(status, JSON.stringify(body)).toBe(200);
};

const openIssue = async (title: string) => {
  const { status, body } = await github<{ number: number; html_url: string }>(
    'POST',
    '/repos/demo/demo-app/issues',
    {
      title,
      body: 'GET /health should answer 200 with {"ok":true}.',
    },
  );
  expect(status).toBe(201);
  return body;
};

interface IssueComment {
  id: number;
  body: string;
  user: { login: string; type: string };
}
const commentsOn = async (issue: number) =>
  (await github<IssueComment[]>('GET', `/repos/demo/demo-app/issues/${issue}/comments`)).body;

/** The App's comments on the issue, once `ready` holds for them. */
const botComments = async (issue: number, ready: (comments: IssueComment[]) => boolean) => {
  for (let i = 0; i < 300; i++) {
    const mine = (await commentsOn(issue)).filter((c) => c.user.type === 'Bot');
    if (ready(mine)) return mine;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `the App's comments on issue ${issue} never got there: ${JSON.stringify(await commentsOn(issue))}`,
  );
};

const runIdIn = (comment: IssueComment) => /\/v1\/runs\/(run_[0-9A-Z]{26})/.exec(comment.body)?.[1] as string;

describe('runs started from GitHub issues', () => {
  it("a member's `@demo-pod` comment starts a mention run as them, answered with its link, then its pull request", async () => {
    const e = endpoints();
    const member = await person('member', 'read');
    await addMember(`user-${member.login}`, member.login);
    const issue = await openIssue('Add a health check');

    const said = await github(
      'POST',
      `/repos/demo/demo-app/issues/${issue.number}/comments`,
      { body: `@${e.podId} add a health check` },
      member.token,
    );
    expect(said.status).toBe(201);
    const [started] = await botComments(issue.number, (mine) => mine.length > 0);
    expect(started?.body).toContain(`@${member.login} started pod \`${e.podId}\``);
    const runId = runIdIn(started as IssueComment);

    // the comment is posted, then recorded on the run
    const { run } = await waitForRun(runId, (r) => r.gitHubIssue?.commentId !== undefined, 15_000);
    expect(run).toMatchObject({
      source: 'mention',
      attribution: `user-${member.login}`,
      podId: e.podId,
      mode: 'autopilot',
      itemId: `demo.demo-app.${issue.number}`,
      gitHubIssue: {
        number: issue.number,
        url: issue.html_url,
        calledBy: member.login,
        commentId: started?.id,
      },
    });
    const { run: ended } = await waitForTerminal(runId, 90_000);
    expect(ended.status, ended.message).toBe('COMPLETED');
    const pullRequestUrl = ended.pullRequest?.url as string;
    expect(pullRequestUrl).toMatch(/\/pull\/\d+$/);

    // one comment, rewritten with the pull request
    const [edited, ...more] = await botComments(
      issue.number,
      (mine) => mine[0]?.body.includes(pullRequestUrl) === true,
    );
    expect(more).toEqual([]);
    expect(edited?.id).toBe(started?.id);
    expect(edited?.body).toContain(`opened ${pullRequestUrl}`);
  });

  it("a stranger's comment gets a reply saying why, once, and starts nothing", async () => {
    const e = endpoints();
    const stranger = await person('stranger', 'read');
    const issue = await openIssue('Stranger danger');
    const said = await github(
      'POST',
      `/repos/demo/demo-app/issues/${issue.number}/comments`,
      { body: `@${e.podId} delete everything` },
      stranger.token,
    );
    expect(said.status).toBe(201);
    const [refusal] = await botComments(issue.number, (mine) => mine.length > 0);
    expect(refusal?.body).toContain(
      `@${stranger.login} only members of a project that includes demo/demo-app`,
    );

    const delivery = (await deliveries()).find(
      (d) =>
        d.event === 'issue_comment' &&
        d.action === 'created' &&
        d.request.payload.comment?.user.login === stranger.login,
    ) as Delivery;
    expect(JSON.parse(delivery.response.payload as string)).toMatchObject({
      outcome: 'refused',
      refusal: 'not_member',
    });
    // sent again, the delivery is not answered twice
    await redeliver(delivery);
    for (let i = 0; i < 100 && (await deliveries()).filter((d) => d.guid === delivery.guid).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await botComments(issue.number, () => true)).length).toBe(1);
    const runs = await api<{ items: Run[] }>('GET', `/v1/runs?source=mention&limit=100`);
    expect(runs.body.items.filter((r) => r.itemId === `demo.demo-app.${issue.number}`)).toEqual([]);
  });

  it('a `pod:<podId>` label added by a member starts a react run', async () => {
    const e = endpoints();
    const issue = await openIssue('Label me');
    const labelled = await github('POST', `/repos/demo/demo-app/issues/${issue.number}/labels`, {
      labels: [`pod:${e.scriptedPodId}`],
    });
    expect(labelled.status).toBe(200);
    const [started] = await botComments(issue.number, (mine) => mine.length > 0);
    const run = await getRun(runIdIn(started as IssueComment));
    expect(run).toMatchObject({
      source: 'react',
      attribution: 'demo-admin',
      podId: e.scriptedPodId,
      itemId: `demo.demo-app.${issue.number}`,
    });
    await waitForTerminal(run.runId, 60_000);
  });

  it('stopped while queued, with no execution to finalize it, rewrites its comment to say so', async () => {
    const QUEUE_DELAY_SECONDS = 15;
    const e = endpoints();
    const queue = sqs();
    const delay = (seconds: number) =>
      queue.send(
        new SetQueueAttributesCommand({
          QueueUrl: e.queueUrl,
          Attributes: { DelaySeconds: String(seconds) },
        }),
      );
    // the run's message waits on the queue, so the run stays QUEUED without an execution
    await delay(QUEUE_DELAY_SECONDS);
    try {
      const issue = await openIssue('Stop me before I start');
      await github('POST', `/repos/demo/demo-app/issues/${issue.number}/labels`, {
        labels: [`pod:${e.scriptedPodId}`],
      });
      const [started] = await botComments(issue.number, (mine) => mine.length > 0);
      const runId = runIdIn(started as IssueComment);
      await waitForRun(runId, (r) => r.gitHubIssue?.commentId !== undefined, 15_000);

      const stopped = await api<Run>('POST', `/v1/runs/${runId}/stop`);
      expect(stopped.body).toMatchObject({ status: 'STOPPED' });
      expect(stopped.body.executionArn).toBeUndefined();
      const [edited, ...more] = await botComments(issue.number, (mine) =>
        Boolean(mine[0]?.body.includes('was stopped')),
      );
      expect(more).toEqual([]);
      expect(edited?.id).toBe(started?.id);
    } finally {
      await delay(0);
      // the stopped run's message comes out of its delay and is dropped: the queue is left empty
      await expect
        .poll(
          async () => {
            const { Attributes = {} } = await queue.send(
              new GetQueueAttributesCommand({ QueueUrl: e.queueUrl, AttributeNames: ['All'] }),
            );
            return ['', 'NotVisible', 'Delayed'].map((kind) =>
              Number(Attributes[`ApproximateNumberOfMessages${kind}` as 'ApproximateNumberOfMessages']),
            );
          },
          { timeout: (QUEUE_DELAY_SECONDS + 15) * 1000, interval: 500 },
        )
        .toEqual([0, 0, 0]);
      queue.destroy();
    }
  });
});
