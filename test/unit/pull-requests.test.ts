import { createHmac } from 'node:crypto';
import { Webhooks } from '@octokit/webhooks';
import { describe, expect, it, vi } from 'vitest';
import { makeHandler as makeWebhooks } from '../../functions/github-webhooks.js';
import { pullRequestFrom, repoOnHost } from '../../shared/adapters/github-app.js';
import { raisePullRequests, settlePullRequest } from '../../shared/domain/commands.js';
import { pullRequestText, runBranch, runIdOfBranch } from '../../shared/domain/pull-request.js';
import { type PullRequest, RUN_STATUSES, type Run } from '../../shared/domain/run.js';
import { uncoveredRepos } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, GitHubApp, RunStore } from '../../shared/ports.js';
import { httpEvent, lambdaContext, runFactory } from '../support/factories.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

const NOW = new Date('2026-01-01T01:00:00.000Z');
const RUN_ID = 'run_01J0000000000000000000000A';
const REPO = 'https://github.com/acme/app.git';
const open: PullRequest = {
  url: 'https://github.com/acme/app/pull/7',
  number: 7,
  state: 'open',
  repo: REPO,
  branch: runBranch('pod-1', RUN_ID),
};
const merged: PullRequest = { ...open, state: 'merged', mergedBy: 'octocat', mergedAt: NOW.toISOString() };
const closed: PullRequest = { ...open, state: 'closed', closedAt: NOW.toISOString() };

describe('a run’s branch', () => {
  it('names the run, and only a run’s branch leads back to one', () => {
    expect(runIdOfBranch(runBranch('pod-1', RUN_ID))).toBe(RUN_ID);
    for (const branch of [
      'main',
      'pods/pod-1',
      `pods/pod-1/${RUN_ID}/x`,
      'pods/pod-1/run_nope',
      `feat/x/${RUN_ID}`,
    ]) {
      expect(runIdOfBranch(branch)).toBeUndefined();
    }
  });
});

describe('raising the pull requests', () => {
  it('records the first as the run’s, each as an artifact, and moves the phase to PR_RAISED, once', () => {
    const run = runFactory({ status: 'RUNNING', phase: 'COMMITTING' });
    const second = { ...open, url: 'https://github.com/acme/lib/pull/2', number: 2 };
    const t = raisePullRequests(run, [open, second], NOW);
    expect(t).toMatchObject({ path: [], patch: { phase: 'PR_RAISED', pullRequest: open } });
    expect(t?.artifacts?.map((a) => [a.kind, a.url])).toEqual([
      ['pull_request', open.url],
      ['pull_request', second.url],
    ]);
    expect(raisePullRequests({ ...run, phase: 'PR_RAISED' }, [open], NOW)).toBeUndefined();
    expect(raisePullRequests(run, [], NOW)).toBeUndefined();
    expect(raisePullRequests({ ...run, status: 'STOPPED' }, [open], NOW)).toBeUndefined();
  });
});

describe('a pull request’s fate', () => {
  const completed = runFactory({ status: 'COMPLETED', pullRequest: open });

  it('closed unmerged: the run becomes PR_REJECTED; merged: DONE, with who merged and when', () => {
    expect(settlePullRequest(completed, closed, NOW)).toMatchObject({
      path: ['PR_REJECTED'],
      patch: { pullRequest: closed },
    });
    expect(settlePullRequest(completed, merged, NOW)).toMatchObject({
      path: ['DONE'],
      patch: { pullRequest: merged, message: 'pull request merged by octocat' },
    });
    // reopened and merged after a rejection
    expect(settlePullRequest({ ...completed, status: 'PR_REJECTED' }, merged, NOW)?.path).toEqual(['DONE']);
  });

  it('never moves a run backwards: late, repeated or out-of-order deliveries change nothing', () => {
    const rejected: Run = { ...completed, status: 'PR_REJECTED', pullRequest: closed };
    const done: Run = { ...completed, status: 'DONE', pullRequest: merged };
    expect(settlePullRequest(rejected, open, NOW)).toBeUndefined();
    expect(settlePullRequest(rejected, closed, NOW)).toBeUndefined();
    expect(settlePullRequest(done, closed, NOW)).toBeUndefined();
    expect(settlePullRequest(done, merged, NOW)).toBeUndefined();
    expect(settlePullRequest(completed, open, NOW)).toBeUndefined();
  });

  it('moves a run only by its own pull request, and only once it has ended', () => {
    const other = { ...closed, url: 'https://github.com/acme/app/pull/8', number: 8 };
    expect(settlePullRequest(completed, other, NOW)).toBeUndefined();
    for (const status of RUN_STATUSES.filter((s) => s !== 'COMPLETED' && s !== 'PR_REJECTED')) {
      expect(settlePullRequest({ ...completed, status }, merged, NOW)).toBeUndefined();
    }
  });
});

describe('GitHub’s pull requests and repositories', () => {
  it('reads a merged, a closed and an open pull request as the run records them', () => {
    const base = { html_url: open.url, number: 7, state: 'closed', head: { ref: open.branch as string } };
    expect(
      pullRequestFrom(
        { ...base, merged: true, merged_at: '2026-01-01T00:00:00Z', merged_by: { login: 'octocat' } },
        REPO,
      ),
    ).toMatchObject({ state: 'merged', mergedBy: 'octocat', mergedAt: '2026-01-01T00:00:00Z' });
    expect(
      pullRequestFrom({ ...base, merged: false, closed_at: '2026-01-02T00:00:00Z' }, REPO),
    ).toMatchObject({
      state: 'closed',
      closedAt: '2026-01-02T00:00:00Z',
    });
    expect(pullRequestFrom({ ...base, state: 'open', draft: true }, REPO)).toMatchObject({
      state: 'open',
      draft: true,
    });
  });

  it('places a clone URL on the App’s host, and tells which repositories an installation does not cover', () => {
    expect(repoOnHost('https://github.com', REPO)).toEqual({ owner: 'acme', name: 'app' });
    expect(repoOnHost('https://github.com/', 'https://github.com/acme/app')).toEqual({
      owner: 'acme',
      name: 'app',
    });
    expect(repoOnHost('https://github.com', 'https://gitlab.com/acme/app.git')).toBeUndefined();
    expect(repoOnHost('https://github.com', 'https://github.com/acme/app/tree/main')).toBeUndefined();
    expect(
      uncoveredRepos(['https://github.com/Acme/App', REPO, 'https://github.com/acme/lib.git'], [REPO]),
    ).toEqual(['https://github.com/acme/lib.git']);
  });

  it('writes a title from the item and a body with the summary, the run, its steps and its cost', () => {
    const run = runFactory({ itemId: 'APP-12', result: { outcome: 'completed', message: 'Added /health.' } });
    const { title, body } = pullRequestText({
      run,
      prompt: 'Add a health check\nwith tests',
      runUrl: `https://api.example/v1/runs/${run.runId}`,
    });
    expect(title).toBe('APP-12: Add a health check');
    expect(body).toContain('Added /health.');
    expect(body).toContain(`https://api.example/v1/runs/${run.runId}/steps`);
    expect(body).toMatch(/Cost so far: \$\d+\.\d{4}/);
    expect(body).not.toContain('Closes');
  });

  it('closes the GitHub issue a run was started from once its pull request is merged', () => {
    const run = runFactory({
      gitHubIssue: {
        repo: REPO,
        fullName: 'acme/app',
        number: 12,
        url: 'https://github.com/acme/app/issues/12',
        calledBy: 'octocat',
      },
    });
    const { body } = pullRequestText({ run, prompt: 'x', runUrl: 'https://api.example/v1/runs/r' });
    expect(body).toContain('Closes acme/app#12.');
  });
});

describe('POST /webhooks/github', () => {
  const SECRET = 'a-webhook-secret-of-some-length';
  const sign = (body: string, secret = SECRET) =>
    `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  const payload = (pr: Record<string, unknown>) =>
    JSON.stringify({
      action: 'closed',
      installation: { id: 42 },
      repository: { clone_url: REPO, full_name: 'acme/app' },
      pull_request: {
        html_url: open.url,
        number: 7,
        state: 'closed',
        merged: false,
        head: { ref: open.branch },
        ...pr,
      },
      sender: { login: 'octocat', type: 'User' },
    });

  const setUp = (run: Run, installationId = 42) => {
    const runs = {
      get: vi.fn(async () => run),
      apply: vi.fn(async (_from: Run, t: { path: string[] }) => ({
        applied: true,
        run: { ...run, status: t.path.at(-1) ?? run.status },
      })),
    } as unknown as RunStore;
    const directory = {
      getAccount: vi.fn(async () => ({ accountId: run.accountId, github: { installationId } })),
    } as unknown as DirectoryRepository;
    const handler = makeWebhooks(
      {
        runs,
        directory,
        clock: { now: () => NOW },
        queue: { enqueue: vi.fn() },
        github: {} as GitHubApp,
        deliveries: { firstTime: vi.fn(async () => true) },
      },
      { publicApiUrl: 'https://api.example.com' },
      (body, signature) => new Webhooks({ secret: SECRET }).verify(body, signature),
    );
    const deliver = (body: string, headers: Record<string, string>) =>
      handler(
        httpEvent('POST /webhooks/github', {
          body,
          headers: { 'x-github-event': 'pull_request', 'x-github-delivery': 'd-1', ...headers },
        }),
        lambdaContext(),
      );
    return { runs, deliver };
  };

  it('refuses a delivery whose signature does not match with 401, and reads nothing', async () => {
    const { runs, deliver } = setUp(runFactory({ runId: RUN_ID, status: 'COMPLETED', pullRequest: open }));
    const body = payload({});
    for (const signature of [sign(body, 'another-secret-entirely'), 'sha256=00', '']) {
      const res = await deliver(body, signature ? { 'x-hub-signature-256': signature } : {});
      expect(res.statusCode).toBe(401);
    }
    const tampered = await deliver(body.replace('"closed"', '"opened"'), {
      'x-hub-signature-256': sign(body),
    });
    expect(tampered.statusCode).toBe(401);
    expect(runs.get).not.toHaveBeenCalled();
  });

  it('settles the run of a signed delivery: closed unmerged → PR_REJECTED', async () => {
    const { runs, deliver } = setUp(runFactory({ runId: RUN_ID, status: 'COMPLETED', pullRequest: open }));
    const body = payload({});
    const res = await deliver(body, { 'x-hub-signature-256': sign(body) });
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ handled: true, runId: RUN_ID, status: 'PR_REJECTED' });
    expect(runs.apply).toHaveBeenCalledTimes(1);
  });

  it('touches no run of another account than the installation’s, and no branch that is not a run’s', async () => {
    const { runs, deliver } = setUp(
      runFactory({ runId: RUN_ID, status: 'COMPLETED', pullRequest: open }),
      99,
    );
    const body = payload({});
    const res = await deliver(body, { 'x-hub-signature-256': sign(body) });
    expect(JSON.parse(res.body)).toMatchObject({ handled: false });
    const feature = payload({ head: { ref: 'feature/x' } });
    expect(JSON.parse((await deliver(feature, { 'x-hub-signature-256': sign(feature) })).body)).toMatchObject(
      {
        handled: false,
        reason: 'not the branch of a run',
      },
    );
    expect(runs.apply).not.toHaveBeenCalled();
  });

  it('answers other events without acting, and a signed body that is not a pull request event with 400', async () => {
    const { deliver } = setUp(runFactory({ runId: RUN_ID, status: 'COMPLETED', pullRequest: open }));
    const ping = '{"zen":"Keep it logically awesome."}';
    const pinged = await deliver(ping, { 'x-hub-signature-256': sign(ping), 'x-github-event': 'ping' });
    expect(pinged.statusCode).toBe(200);
    const bad = '{"action":"closed"}';
    expect((await deliver(bad, { 'x-hub-signature-256': sign(bad) })).statusCode).toBe(400);
  });
});
