import { describe, expect, it, vi } from 'vitest';
import { NotFoundError } from '../../shared/domain/errors.js';
import { runBranch } from '../../shared/domain/pull-request.js';
import type { PullRequest, Run } from '../../shared/domain/run.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, GitHubApp, PullRequestRequest, RunList } from '../../shared/ports.js';
import { linkGitHub } from '../../shared/usecases/directory.js';
import { openPullRequests, sweepPullRequests } from '../../shared/usecases/github.js';
import { podFactory, runFactory, snapshotFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');
const clock = { now: () => NOW };
const RUN_ID = 'run_01J0000000000000000000000A';
const REPO = 'https://github.com/acme/app.git';
const settings = { publicApiUrl: 'https://api.example/' };

const account = (linked = true) => ({
  accountId: 'acct-1',
  name: 'a',
  paymentStatus: 'active' as const,
  limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
  updatedAt: 't',
  ...(linked ? { github: { installationId: 42, login: 'acme', linkedBy: 'root', linkedAt: 't' } } : {}),
});

/** A GitHub App that opens a pull request per branch, numbered from 7, and remembers what it was asked. */
const fakeGitHub = () => {
  const asked: PullRequestRequest[] = [];
  const github: GitHubApp = {
    installation: vi.fn(async (installationId: number) => {
      if (installationId !== 42) throw new NotFoundError('GitHub App installation', String(installationId));
      return { installationId, login: 'acme', repos: [REPO] };
    }),
    pullRequest: vi.fn(async (_installationId: number, pr: PullRequest) => pr),
    comment: vi.fn(async () => 1),
    editComment: vi.fn(async () => undefined),
    openPullRequest: vi.fn(async (request: PullRequestRequest): Promise<PullRequest> => {
      asked.push(request);
      return {
        url: `https://github.com/acme/app/pull/${6 + asked.length}`,
        number: 6 + asked.length,
        state: 'open',
        repo: request.repo,
        branch: request.branch,
        draft: request.draft,
      };
    }),
  };
  return { github, asked };
};

const pushed = (over: Parameters<typeof runFactory>[0] = {}) =>
  new MemoryRuns().put(
    runFactory({
      runId: RUN_ID,
      status: 'RUNNING',
      phase: 'COMMITTING',
      itemId: 'APP-12',
      artifacts: [
        {
          kind: 'commit',
          url: `${REPO}/commit/abc`,
          sha: 'abc',
          branch: runBranch('pod-1', RUN_ID),
          repo: REPO,
          at: 't',
        },
      ],
      ...over,
    }),
    {},
    snapshotFactory({ prompt: 'Add a health check', pod: podFactory({ draftPullRequests: true }) }),
  );

describe('opening the run’s pull requests', () => {
  it('opens one per pushed branch as the installation, titled from the item, draft as the pod says; PR_RAISED', async () => {
    const runs = pushed();
    const { github, asked } = fakeGitHub();
    const directory = { getAccount: vi.fn(async () => account()) } as unknown as DirectoryRepository;

    const opened = await openPullRequests({ runs, directory, clock, github }, settings, RUN_ID);

    expect(asked).toEqual([
      expect.objectContaining({
        installationId: 42,
        repo: REPO,
        branch: runBranch('pod-1', RUN_ID),
        title: 'APP-12: Add a health check',
        draft: true,
        body: expect.stringContaining(`https://api.example/v1/runs/${RUN_ID}`),
      }),
    ]);
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'RUNNING',
      phase: 'PR_RAISED',
      pullRequest: opened[0],
      artifacts: [
        expect.objectContaining({ kind: 'commit' }),
        expect.objectContaining({ kind: 'pull_request' }),
      ],
    });
    // a retried step asks again (GitHub finds it by its head) and records nothing twice
    await openPullRequests({ runs, directory, clock, github }, settings, RUN_ID);
    expect(runs.stored(RUN_ID).artifacts).toHaveLength(2);
  });

  it('opens none for a run that pushed nothing, one no longer running, or a deployment without GitHub', async () => {
    const { github } = fakeGitHub();
    const directory = { getAccount: vi.fn(async () => account()) } as unknown as DirectoryRepository;
    for (const runs of [pushed({ artifacts: [] }), pushed({ status: 'STOPPED' })]) {
      expect(await openPullRequests({ runs, directory, clock, github }, settings, RUN_ID)).toEqual([]);
    }
    expect(await openPullRequests({ runs: pushed(), directory, clock }, settings, RUN_ID)).toEqual([]);
    expect(github.openPullRequest).not.toHaveBeenCalled();
  });
});

describe('PUT /v1/account/github', () => {
  const admin: Caller = { accountId: 'acct-1', userId: 'root', accountRole: 'admin' };
  const directoryKeeping = () => {
    let stored = account(false) as ReturnType<typeof account>;
    return {
      getAccount: vi.fn(async () => stored),
      createAccount: vi.fn(),
      setAccountGitHub: vi.fn(
        async (_id: string, github: NonNullable<ReturnType<typeof account>['github']>) => {
          stored = { ...stored, github };
          return stored;
        },
      ),
    } as unknown as DirectoryRepository;
  };

  it('links the installation the App can read, answering the repositories it covers', async () => {
    const directory = directoryKeeping();
    const linked = await linkGitHub({ directory, clock, github: fakeGitHub().github }, admin, 42);
    expect(linked).toMatchObject({
      github: { installationId: 42, login: 'acme', linkedBy: 'root', linkedAt: NOW.toISOString() },
      repositories: [REPO],
    });
  });

  it('refuses an installation the App does not have (400), a member (403), and a deployment without GitHub (501)', async () => {
    const directory = directoryKeeping();
    const { github } = fakeGitHub();
    await expect(linkGitHub({ directory, clock, github }, admin, 7)).rejects.toMatchObject({
      code: 'ValidationError',
      message: 'installationId: the GitHub App has no installation 7',
    });
    await expect(
      linkGitHub({ directory, clock, github }, { ...admin, accountRole: 'member' }, 42),
    ).rejects.toMatchObject({ code: 'Forbidden' });
    await expect(linkGitHub({ directory, clock }, admin, 42)).rejects.toMatchObject({
      code: 'NotConfigured',
    });
    expect(directory.setAccountGitHub).not.toHaveBeenCalled();
  });
});

describe('the daily sweep of open pull requests', () => {
  const open: PullRequest = {
    url: 'https://github.com/acme/app/pull/7',
    number: 7,
    state: 'open',
    repo: REPO,
  };
  const completedRun = (runId: string) =>
    runFactory({
      runId,
      status: 'COMPLETED',
      phase: 'PR_RAISED',
      pullRequest: { ...open, url: `${open.url}${runId.slice(-1)}` },
    });

  it('settles each run by its pull request as GitHub has it now, and leaves one it cannot read to the next day', async () => {
    const runs = new MemoryRuns();
    const [a, b, c, d] = [
      'run_01J0000000000000000000000A',
      'run_01J0000000000000000000000B',
      'run_01J0000000000000000000000C',
      'run_01J0000000000000000000000D',
    ].map(completedRun) as [Run, Run, Run, Run];
    for (const run of [a, b, c, d]) runs.put(run);
    const now: Record<string, PullRequest | Error> = {
      [a.runId]: { ...(a.pullRequest as PullRequest), state: 'closed' },
      [b.runId]: { ...(b.pullRequest as PullRequest), state: 'merged', mergedBy: 'octocat' },
      [c.runId]: new Error('GitHub could not be reached'),
      [d.runId]: a.pullRequest as PullRequest,
    };
    const byUrl = new Map([a, b, c, d].map((run) => [run.pullRequest?.url, now[run.runId]]));
    const { github } = fakeGitHub();
    github.pullRequest = vi.fn(async (_id: number, pr: PullRequest) => {
      const answer = byUrl.get(pr.url);
      if (answer instanceof Error) throw answer;
      return answer as PullRequest;
    });
    const list = { listOpenPullRequests: vi.fn(async () => [a, b, c, d]) } as unknown as RunList;
    const directory = { getAccount: vi.fn(async () => account()) } as unknown as DirectoryRepository;
    const failed: string[] = [];

    const swept = await sweepPullRequests({ runs, list, directory, clock, github }, settings, (runId) =>
      failed.push(runId),
    );

    expect(swept).toEqual({ read: 4, settled: 2 });
    expect(runs.stored(a.runId).status).toBe('PR_REJECTED');
    expect(runs.stored(b.runId)).toMatchObject({ status: 'DONE', pullRequest: { mergedBy: 'octocat' } });
    expect(runs.stored(c.runId).status).toBe('COMPLETED');
    expect(runs.stored(d.runId).status).toBe('COMPLETED');
    expect(failed).toEqual([c.runId]);
  });

  it('reads nothing where the deployment has no GitHub App', async () => {
    const list = { listOpenPullRequests: vi.fn() } as unknown as RunList;
    const directory = {} as DirectoryRepository;
    expect(
      await sweepPullRequests({ runs: new MemoryRuns(), list, directory, clock }, settings, vi.fn()),
    ).toEqual({
      read: 0,
      settled: 0,
    });
    expect(list.listOpenPullRequests).not.toHaveBeenCalled();
  });
});
