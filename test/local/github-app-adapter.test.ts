import { generateKeyPair } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GitServer, seedRepository, startGitServer } from '../../infra/local/git-server.js';
import { type GitHubServer, startGitHubServer } from '../../infra/local/github-server.js';
import { OctokitGitHubApp } from '../../shared/adapters/github-app.js';
import { runBranch } from '../../shared/domain/pull-request.js';
import { git } from '../support/git.js';

/** The control plane's GitHub adapter against the GitHub stand-in and real git. */

const DEMO_SOURCE = fileURLToPath(new URL('../../infra/local/demo-repo', import.meta.url));
const RUN_ID = 'run_01J0000000000000000000000A';
const BRANCH = runBranch('pod-1', RUN_ID);

let dir: string;
let gitServer: GitServer;
let github: GitHubServer;
let app: OctokitGitHubApp;
let repo: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'github-app-'));
  const root = path.join(dir, 'repos');
  const [{ privateKey, publicKey }] = await Promise.all([
    promisify(generateKeyPair)('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    }),
    seedRepository(root, 'demo/app.git', DEMO_SOURCE),
  ]);
  gitServer = await startGitServer({ port: 0, host: '127.0.0.1', root, log: () => undefined });
  github = await startGitHubServer({
    port: 0,
    host: '127.0.0.1',
    git: { url: gitServer.url, root },
    app: { id: 1001, slug: 'execution-runs', publicKeyPem: publicKey },
    organization: { login: 'demo', installationId: 1 },
    admin: { login: 'demo-admin', token: 'ghp_admin' },
    webhook: { secret: 'a-webhook-secret-of-length' },
    log: () => undefined,
  });
  app = new OctokitGitHubApp({ appId: 1001, apiUrl: github.url, webUrl: gitServer.url }, async () => ({
    privateKey,
    webhookSecret: 'a-webhook-secret-of-length',
  }));
  repo = `${gitServer.url}/demo/app.git`;
});

afterAll(async () => {
  await github?.close();
  await gitServer?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the GitHub App adapter', () => {
  it('reads an installation and the clone URLs it covers; an installation it lacks is not found', async () => {
    expect(await app.installation(1)).toEqual({ installationId: 1, login: 'demo', repos: [repo] });
    await expect(app.installation(99)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('mints a token that pushes the run’s branch, and refuses a repository the installation lacks', async () => {
    const credential = await app.mint({ runId: RUN_ID, repos: [repo], ttlSeconds: 3600, installationId: 1 });
    expect(credential).toMatchObject({ username: 'x-access-token', repos: [repo] });
    const clone = path.join(dir, 'clone');
    await git(['clone', '--quiet', repo, clone], { cwd: dir, credential });
    await git(['checkout', '--quiet', '-b', BRANCH], { cwd: clone });
    await writeFile(path.join(clone, 'HEALTH.md'), 'ok\n');
    await git(['add', 'HEALTH.md'], { cwd: clone });
    await git(
      ['-c', 'user.name=pod', '-c', 'user.email=pod@pods.invalid', 'commit', '--quiet', '-m', 'health'],
      {
        cwd: clone,
      },
    );
    await git(['push', '--quiet', 'origin', BRANCH], { cwd: clone, credential });

    await expect(
      app.mint({
        runId: RUN_ID,
        repos: [`${gitServer.url}/demo/nope.git`],
        ttlSeconds: 3600,
        installationId: 1,
      }),
    ).rejects.toMatchObject({ code: 'MissingRepoAccess' });
  });

  it('opens the pull request from the pushed branch once: asked again, it finds the same one', async () => {
    const request = {
      installationId: 1,
      repo,
      branch: BRANCH,
      title: 'APP-1: health',
      body: 'b',
      draft: true,
    };
    const opened = await app.openPullRequest(request);
    expect(opened).toMatchObject({
      state: 'open',
      number: expect.any(Number),
      branch: BRANCH,
      repo,
      draft: true,
    });
    expect(await app.openPullRequest(request)).toEqual(opened);
  });

  it('reads a pull request as it is now: closed by a person, it is closed', async () => {
    const [opened] = await Promise.all([
      app.openPullRequest({ installationId: 1, repo, branch: BRANCH, title: 't', body: 'b', draft: false }),
    ]);
    expect(await app.pullRequest(1, opened)).toMatchObject({ state: 'open', number: opened.number });
    const closing = await fetch(`${github.url}/repos/demo/app/pulls/${opened.number}`, {
      method: 'PATCH',
      headers: { authorization: 'token ghp_admin', 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'closed' }),
    });
    expect(closing.status).toBe(200);
    expect(await app.pullRequest(1, opened)).toMatchObject({ state: 'closed', closedAt: expect.any(String) });
    await expect(app.pullRequest(1, { ...opened, number: 9999 })).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('comments on an issue as the App and rewrites its comment; a comment gone is not found', async () => {
    const opened = await fetch(`${github.url}/repos/demo/app/issues`, {
      method: 'POST',
      headers: { authorization: 'token ghp_admin', 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Add a health check' }),
    });
    const { number } = (await opened.json()) as { number: number };
    const commentId = await app.comment(1, repo, number, 'started');
    await app.editComment(1, repo, commentId, 'ended');
    const listed = await fetch(`${github.url}/repos/demo/app/issues/${number}/comments`, {
      headers: { authorization: 'token ghp_admin' },
    });
    expect(await listed.json()).toEqual([
      expect.objectContaining({
        id: commentId,
        body: 'ended',
        user: expect.objectContaining({ type: 'Bot' }),
      }),
    ]);
    await expect(app.editComment(1, repo, 999_999, 'x')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(app.comment(1, repo, 999_999, 'x')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(app.comment(1, 'https://elsewhere.example/a/b.git', number, 'x')).rejects.toMatchObject({
      code: 'NotFound',
    });
  });
});
