import { describe, expect, it, vi } from 'vitest';
import { OctokitGitHubApp } from '../../shared/adapters/github-app.js';
import { RUN_STATUSES } from '../../shared/domain/run.js';
import type { DirectoryRepository, GitCredentialRequest, GitCredentials } from '../../shared/ports.js';
import { gitCredentialFor } from '../../shared/usecases/agent.js';
import { runFactory } from '../support/factories.js';

const REPOS = ['http://git.local:4518/demo/demo-app.git', 'http://git.local:4518/demo/lib.git'];

/** A credential source that mints whatever it is asked for, and remembers what. */
const fakeSource = () => {
  const requests: GitCredentialRequest[] = [];
  const source: GitCredentials = {
    mint: vi.fn(async (request: GitCredentialRequest) => {
      requests.push(request);
      return {
        username: 'x-access-token',
        password: 'secret',
        expiresAt: '2026-01-01T01:00:00.000Z',
        repos: request.repos,
      };
    }),
  };
  return { source, requests };
};

/** The run's account, linked to GitHub installation 42 unless `linked` is false. */
const directoryWith = (linked = true) =>
  ({
    getAccount: vi.fn(async (accountId: string) => ({
      accountId,
      ...(linked ? { github: { installationId: 42, login: 'demo', linkedBy: 'root', linkedAt: 'x' } } : {}),
    })),
  }) as unknown as DirectoryRepository;
const depsWith = (gitCredentials: GitCredentials | undefined, linked = true) => ({
  gitCredentials,
  directory: directoryWith(linked),
});

describe('the pod’s git credential', () => {
  it.each(['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'] as const)(
    'is minted while the run is %s, for its repositories only, for an hour',
    async (status) => {
      const { source, requests } = fakeSource();
      const run = runFactory({ status, repos: REPOS });

      const credential = await gitCredentialFor(depsWith(source), run);

      expect(requests).toEqual([{ runId: run.runId, repos: REPOS, ttlSeconds: 3600, installationId: 42 }]);
      expect(credential).toEqual({
        username: 'x-access-token',
        password: 'secret',
        expiresAt: '2026-01-01T01:00:00.000Z',
        repos: REPOS,
      });
    },
  );

  it.each(RUN_STATUSES.filter((s) => !['PROVISIONING', 'RUNNING', 'AWAITING_APPROVAL'].includes(s)))(
    'is refused while the run is %s, when no sandbox of it works',
    async (status) => {
      const { source } = fakeSource();
      await expect(
        gitCredentialFor(depsWith(source), runFactory({ status, repos: REPOS })),
      ).rejects.toMatchObject({
        code: 'Conflict',
        details: { status },
      });
      expect(source.mint).not.toHaveBeenCalled();
    },
  );

  it('is refused for a run without repositories, which a GitHub App would read as all of them', async () => {
    const { source } = fakeSource();
    await expect(
      gitCredentialFor(depsWith(source), runFactory({ status: 'RUNNING', repos: [] })),
    ).rejects.toMatchObject({
      code: 'Conflict',
      message: 'the run has no repositories',
    });
    expect(source.mint).not.toHaveBeenCalled();
  });

  it('is asked for without an installation for an account that linked none', async () => {
    const { source, requests } = fakeSource();
    const run = runFactory({ status: 'RUNNING', repos: REPOS });
    await gitCredentialFor(depsWith(source, false), run);
    expect(requests).toEqual([{ runId: run.runId, repos: REPOS, ttlSeconds: 3600 }]);
  });

  it('is unavailable, and says so, when the deployment has no git provider', async () => {
    await expect(
      gitCredentialFor(depsWith(undefined), runFactory({ status: 'RUNNING', repos: REPOS })),
    ).rejects.toMatchObject({
      code: 'NotConfigured',
      message: expect.stringMatching(/no git provider/),
    });
  });
});

describe('the GitHub App’s credentials', () => {
  const app = new OctokitGitHubApp(
    { appId: 1, apiUrl: 'http://github.invalid', webUrl: 'https://github.com' },
    async () => {
      throw new Error('no key is read before the request is checked');
    },
  );

  it('are refused, naming the repositories, for an account without an installation or a repository elsewhere', async () => {
    const request = { runId: 'run_1', repos: ['https://github.com/acme/app.git'], ttlSeconds: 3600 };
    await expect(app.mint(request)).rejects.toMatchObject({
      code: 'MissingRepoAccess',
      message: 'the account has linked no GitHub App installation',
    });
    const elsewhere = {
      ...request,
      installationId: 42,
      repos: [...request.repos, 'https://gitlab.com/acme/lib.git'],
    };
    await expect(app.mint(elsewhere)).rejects.toMatchObject({
      code: 'MissingRepoAccess',
      message: 'not on https://github.com: https://gitlab.com/acme/lib.git',
    });
  });
});
