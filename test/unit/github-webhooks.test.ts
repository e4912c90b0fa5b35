import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { Webhooks } from '@octokit/webhooks';
import { describe, expect, it, vi } from 'vitest';
import { makeHandler } from '../../functions/github-webhooks.js';
import { runBranch } from '../../shared/domain/pull-request.js';
import { type Run, statusAfter, type Transition } from '../../shared/domain/run.js';
import type { Account } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, GitHubApp, RunConfigSnapshot, RunStore } from '../../shared/ports.js';
import { httpEvent, lambdaContext, podFactory, projectFactory, runFactory } from '../support/factories.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

/**
 * Every delivery GitHub documents for the events the App subscribes to (issue_comment, issues,
 * pull_request), as GitHub.com and GitHub Enterprise Server record them, through the webhook handler:
 * each is read without a 4xx or 5xx, and does what its event and action call for.
 */

interface Example {
  action: string;
  installation?: { id: number };
  repository: { clone_url: string; full_name: string };
  sender: { login: string; type: string };
  issue?: { number: number; pull_request?: unknown };
  comment?: { body: string };
  label?: { name: string };
  pull_request?: { head: { ref: string }; number: number; html_url: string };
}
const recorded = createRequire(import.meta.url);
const EXAMPLES = ['api.github.com', 'ghes-35'].flatMap((host) =>
  (recorded(`@octokit/webhooks-examples/${host}/index.json`) as { name: string; examples: Example[] }[])
    .filter((event) => ['issue_comment', 'issues', 'pull_request'].includes(event.name))
    .flatMap((event) =>
      event.examples.map((example, i) => ({
        host,
        event: event.name,
        name: `${event.name}.${example.action} #${i}`,
        example,
      })),
    ),
);

const SECRET = 'a-webhook-secret-of-some-length';
const INSTALLATION = 42;
const POD = 'demo-pod';
const RUN_ID = 'run_01J0000000000000000000000A';

/** The example as the App receives it: every App delivery names its installation. */
const asAppDelivery = (example: Example, changes: Partial<Example> = {}) =>
  JSON.stringify({ ...example, installation: { id: INSTALLATION }, ...changes });

const setUp = (example: Example) => {
  const account: Account = {
    accountId: 'acct-1',
    name: 'a',
    paymentStatus: 'active',
    limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
    github: { installationId: INSTALLATION, login: 'org', linkedBy: 'root', linkedAt: 't' },
    updatedAt: 't',
  };
  // the sender is a member of a project that includes the example's repository
  const project = projectFactory({
    repos: [example.repository.clone_url],
    members: [{ userId: 'user-1', role: 'member', githubLogin: example.sender.login }],
  });
  const directory = {
    accountOfInstallation: vi.fn(async () => account),
    getAccount: vi.fn(async () => account),
    listPods: vi.fn(async () => [podFactory({ podId: POD })]),
    listProjects: vi.fn(async () => [project]),
    getProject: vi.fn(async () => project),
    getPod: vi.fn(async () => podFactory({ podId: POD })),
  } as unknown as DirectoryRepository;
  const created: Run[] = [];
  const runs = {
    create: vi.fn(async (run: Run, _snapshot: RunConfigSnapshot) => {
      created.push(run);
      return { run, created: true };
    }),
    // the run whose branch a pull request comes from, its pull request still open on record
    get: vi.fn(async () =>
      runFactory({
        runId: RUN_ID,
        status: 'COMPLETED',
        phase: 'PR_RAISED',
        ...(example.pull_request
          ? {
              pullRequest: {
                url: example.pull_request.html_url,
                number: example.pull_request.number,
                state: 'open',
                repo: example.repository.clone_url,
                branch: runBranch(POD, RUN_ID),
              },
            }
          : {}),
      }),
    ),
    apply: vi.fn(async (from: Run, t: Transition) => ({
      applied: true,
      run: { ...from, status: statusAfter(t), ...t.patch },
    })),
    recordFacts: vi.fn(async () => undefined),
  } as unknown as RunStore;
  const github = {
    comment: vi.fn(async () => 1001),
    editComment: vi.fn(async () => undefined),
  } as unknown as GitHubApp;
  const handler = makeHandler(
    {
      runs,
      directory,
      queue: { enqueue: vi.fn(async () => undefined) },
      clock: { now: () => new Date('2026-01-01T00:00:00.000Z') },
      github,
      deliveries: { firstTime: vi.fn(async () => true) },
    },
    { publicApiUrl: 'https://api.example.com' },
    (body, signature) => new Webhooks({ secret: SECRET }).verify(body, signature),
  );
  const deliver = async (event: string, body: string) => {
    const res = await handler(
      httpEvent('POST /webhooks/github', {
        body,
        headers: {
          'x-github-event': event,
          'x-github-delivery': `d-${Math.random()}`,
          'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
        },
      }),
      lambdaContext(),
    );
    return { status: res.statusCode, outcome: JSON.parse(res.body as string) as Record<string, unknown> };
  };
  return { deliver, created, github };
};

describe('every recorded GitHub delivery of the subscribed events', () => {
  it('covers each event and the actions that act', () => {
    const names = new Set(EXAMPLES.map(({ event, example }) => `${event}.${example.action}`));
    for (const needed of ['issue_comment.created', 'issues.labeled', 'pull_request.closed']) {
      expect(names).toContain(needed);
    }
  });

  it.each(EXAMPLES)(
    '$host $name is read and answered 200, acting only where it should',
    async ({ event, example }) => {
      const { deliver, created, github } = setUp(example);
      const { status, outcome } = await deliver(event, asAppDelivery(example));
      expect(status, JSON.stringify(outcome)).toBe(200);
      // none of GitHub's examples calls a pod or comes from a run's branch
      expect(outcome.handled).toBe(false);
      expect(created).toEqual([]);
      expect(github.comment).not.toHaveBeenCalled();
    },
  );

  const issueComments = EXAMPLES.filter(
    ({ event, example }) => event === 'issue_comment' && example.action === 'created',
  );
  it.each(issueComments)(
    '$host $name calling the pod starts a mention run, except on a pull request',
    async ({ example }) => {
      const { deliver, created, github } = setUp(example);
      const comment = { ...example.comment, body: `@${POD} ${example.comment?.body}` };
      const { outcome } = await deliver('issue_comment', asAppDelivery(example, { comment }));
      if (example.issue?.pull_request !== undefined) {
        expect(outcome).toEqual({ handled: false, reason: "a comment on a pull request's conversation" });
        expect(created).toEqual([]);
        return;
      }
      expect(outcome).toMatchObject({ handled: true, outcome: 'dispatched', created: true });
      expect(created).toEqual([
        expect.objectContaining({
          source: 'mention',
          podId: POD,
          attribution: 'user-1',
          gitHubIssue: expect.objectContaining({
            number: example.issue?.number,
            calledBy: example.sender.login,
          }),
        }),
      ]);
      expect(github.comment).toHaveBeenCalledTimes(1);
    },
  );

  const labels = EXAMPLES.filter(({ event, example }) => event === 'issues' && example.action === 'labeled');
  it.each(labels)('$host $name with `pod:<podId>` starts a react run', async ({ example }) => {
    const { deliver, created } = setUp(example);
    const { outcome } = await deliver('issues', asAppDelivery(example, { label: { name: `pod:${POD}` } }));
    expect(outcome).toMatchObject({ handled: true, outcome: 'dispatched' });
    expect(created).toEqual([expect.objectContaining({ source: 'react', podId: POD })]);
  });

  const closed = EXAMPLES.filter(
    ({ event, example }) => event === 'pull_request' && example.action === 'closed',
  );
  it.each(closed)("$host $name of a run's branch settles the run", async ({ example }) => {
    const { deliver } = setUp(example);
    const pullRequest = {
      ...example.pull_request,
      head: { ...example.pull_request?.head, ref: runBranch(POD, RUN_ID) },
    };
    const { outcome } = await deliver(
      'pull_request',
      asAppDelivery(example, { pull_request: pullRequest } as Partial<Example>),
    );
    const merged = (example.pull_request as { merged?: boolean }).merged === true;
    expect(outcome).toEqual({ handled: true, runId: RUN_ID, status: merged ? 'DONE' : 'PR_REJECTED' });
  });
});
