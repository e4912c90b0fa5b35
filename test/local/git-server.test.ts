import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GitServer, seedRepository, startGitServer } from '../../infra/local/git-server.js';
import { gitFailure as failure, git as gitIn } from '../support/git.js';

/** The local git server with the real git client: clone, push and ls-remote, and every refusal. */

const DEMO_SOURCE = fileURLToPath(new URL('../../infra/local/demo-repo', import.meta.url));

let dir: string;
let server: GitServer;
const logged: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'git-server-'));
  const root = path.join(dir, 'repos');
  await seedRepository(root, 'demo/app.git', DEMO_SOURCE);
  await seedRepository(root, 'demo/other.git', DEMO_SOURCE);
  server = await startGitServer({ port: 0, host: '127.0.0.1', root, log: (line) => logged.push(line) });
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const mint = async (body: unknown) => {
  const res = await fetch(`${server.url}/_local/tokens`, { method: 'POST', body: JSON.stringify(body) });
  return {
    status: res.status,
    body: (await res.json()) as { token: string; expiresAt: string; message?: string },
  };
};
const tokenFor = async (repos: string[], ttlSeconds = 600) => (await mint({ repos, ttlSeconds })).body.token;

const git = (args: string[], options: { cwd?: string; token?: string } = {}) =>
  gitIn(args, {
    cwd: options.cwd ?? dir,
    credential: options.token ? { username: 'x-access-token', password: options.token } : undefined,
  });
const urlOf = (repo: string) => `${server.url}/${repo}`;
let clones = 0;
const cloneDir = () => path.join(dir, `clone-${++clones}`);

describe('the local git server', () => {
  it('serves a clone of the seeded repository to a valid token: one commit with a fixed author and date', async () => {
    const token = await tokenFor(['demo/app.git']);
    const into = cloneDir();

    await git(['clone', '--quiet', urlOf('demo/app.git'), into], { token });

    const { stdout } = await git(['log', '--format=%an <%ae> %aI %s', 'main'], { cwd: into });
    expect(stdout.trim()).toBe('Demo <demo@example.com> 2026-01-01T00:00:00+00:00 Initial commit');
    const { stdout: files } = await git(['ls-files'], { cwd: into });
    expect(files.split('\n')).toEqual(
      expect.arrayContaining(['package.json', 'src/app.js', 'test/app.test.js']),
    );
    // the same files make the same commit, in any repository and at any start
    const [app, other] = await Promise.all(
      ['demo/app.git', 'demo/other.git'].map((repo) =>
        git(['--git-dir', path.join(dir, 'repos', repo), 'rev-parse', 'main']),
      ),
    );
    expect(app?.stdout).toBe(other?.stdout);
  });

  it('takes a pushed branch with the same token, which ls-remote then shows and a new seed keeps', async () => {
    const token = await tokenFor(['demo/app.git']);
    const into = cloneDir();
    await git(['clone', '--quiet', urlOf('demo/app.git'), into], { token });
    await git(['checkout', '--quiet', '-b', 'pods/demo-pod/run_1'], { cwd: into });
    await writeFile(path.join(into, 'HEALTH.md'), 'GET /health answers 200.\n');
    await git(['add', 'HEALTH.md'], { cwd: into });
    await git(
      ['-c', 'user.name=Pod', '-c', 'user.email=pod@example.com', 'commit', '--quiet', '-m', 'Health'],
      {
        cwd: into,
      },
    );
    const { stdout: head } = await git(['rev-parse', 'HEAD'], { cwd: into });

    await git(['push', '--quiet', 'origin', 'pods/demo-pod/run_1'], { cwd: into, token });

    const { stdout } = await git(['ls-remote', urlOf('demo/app.git')], { token });
    expect(stdout).toContain(`${head.trim()}\trefs/heads/pods/demo-pod/run_1`);
    // the remote the clone recorded carries no credential
    const { stdout: remote } = await git(['remote', 'get-url', 'origin'], { cwd: into });
    expect(remote.trim()).toBe(urlOf('demo/app.git'));
    await seedRepository(path.join(dir, 'repos'), 'demo/app.git', DEMO_SOURCE);
    expect((await git(['ls-remote', urlOf('demo/app.git')], { token })).stdout).toContain(
      'pods/demo-pod/run_1',
    );
  });

  it('refuses git without a token: 401 with a Basic challenge, and the clone fails', async () => {
    const res = await fetch(`${urlOf('demo/app.git')}/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);

    expect(await failure(git(['clone', urlOf('demo/app.git'), cloneDir()]))).toMatch(
      /could not read Username/,
    );
  });

  it('refuses an expired token, an unknown one and another user name with 401', async () => {
    const expiring = await mint({ repos: ['demo/app.git'], ttlSeconds: 1 });
    expect(Date.parse(expiring.body.expiresAt) - Date.now()).toBeLessThanOrEqual(1000);
    await new Promise((r) => setTimeout(r, Date.parse(expiring.body.expiresAt) - Date.now() + 50));

    expect(
      await failure(git(['clone', urlOf('demo/app.git'), cloneDir()], { token: expiring.body.token })),
    ).toMatch(/could not read Username/);
    expect(logged.join('\n')).toMatch(/refused GET \/demo\/app\.git\/info\/refs.*: the token expired at/);

    const valid = await tokenFor(['demo/app.git']);
    for (const authorization of [
      `Basic ${Buffer.from('x-access-token:lgt_unknown').toString('base64')}`,
      `Basic ${Buffer.from(`someone:${valid}`).toString('base64')}`,
      `Bearer ${valid}`,
    ]) {
      const res = await fetch(`${urlOf('demo/app.git')}/info/refs?service=git-upload-pack`, {
        headers: { authorization },
      });
      expect(res.status, authorization).toBe(401);
    }
  });

  it('refuses, with 403, a repository the token does not name, for reading and for pushing', async () => {
    const token = await tokenFor(['demo/app.git']);
    const res = await fetch(`${urlOf('demo/other.git')}/info/refs?service=git-upload-pack`, {
      headers: { authorization: `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}` },
    });
    expect(res.status).toBe(403);

    expect(await failure(git(['clone', urlOf('demo/other.git'), cloneDir()], { token }))).toMatch(
      /returned error: 403/,
    );
    const into = cloneDir();
    await git(['clone', '--quiet', urlOf('demo/app.git'), into], { token });
    expect(
      await failure(git(['push', urlOf('demo/other.git'), 'main:refs/heads/stolen'], { cwd: into, token })),
    ).toMatch(/returned error: 403/);
  });

  it('lets a read-only token clone and fetch but refuses its push with 403', async () => {
    const { status, body } = await mint({ repos: ['demo/app.git'], ttlSeconds: 600, readOnly: true });
    expect(status).toBe(200);
    const into = cloneDir();

    await git(['clone', '--quiet', urlOf('demo/app.git'), into], { token: body.token });
    await git(['fetch', '--quiet', 'origin'], { cwd: into, token: body.token });

    expect(
      await failure(git(['push', 'origin', 'main:refs/heads/read-only'], { cwd: into, token: body.token })),
    ).toMatch(/returned error: 403/);
    expect(logged.join('\n')).toMatch(
      /refused GET \/demo\/app\.git\/info\/refs\?service=git-receive-pack.*may not push/,
    );
    const { stdout } = await git(['ls-remote', urlOf('demo/app.git')], { token: body.token });
    expect(stdout).not.toContain('refs/heads/read-only');
  });

  it('answers 404 to a path that would leave the repository the token was checked for', async () => {
    const token = await tokenFor(['demo/app.git']);
    const authorization = `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
    // sent as written: fetch would resolve the dots before sending
    const statusOf = (rawPath: string) =>
      new Promise<number | undefined>((resolve, reject) => {
        const { port } = new URL(server.url);
        request({ host: '127.0.0.1', port, path: rawPath, headers: { authorization } }, (res) => {
          res.resume();
          resolve(res.statusCode);
        })
          .on('error', reject)
          .end();
      });

    expect(await statusOf('/demo/app.git/info/refs?service=git-upload-pack')).toBe(200);
    for (const rawPath of [
      '/demo/app.git/../other.git/info/refs?service=git-upload-pack',
      '/demo/app.git/%2e%2e/other.git/info/refs?service=git-upload-pack',
      '/demo/app.git/./info/refs?service=git-upload-pack',
    ]) {
      expect(await statusOf(rawPath), rawPath).toBe(404);
    }
  });

  it('mints only for repositories it has, for an hour at most', async () => {
    expect(await mint({ repos: ['demo/nope.git'], ttlSeconds: 60 })).toMatchObject({
      status: 404,
      body: { message: 'no repository demo/nope.git on the local git server' },
    });
    for (const body of [
      { repos: ['demo/app.git'], ttlSeconds: 3601 },
      { repos: [], ttlSeconds: 60 },
      { repos: ['../demo/app.git'], ttlSeconds: 60 },
      { repos: ['demo/app.git'] },
      { repos: ['demo/app.git'], ttlSeconds: 60, readOnly: 'yes' },
    ]) {
      expect((await mint(body)).status, JSON.stringify(body)).toBe(400);
    }
    const { body } = await mint({ repos: ['demo/app.git'], ttlSeconds: 3600 });
    expect(Date.parse(body.expiresAt) - Date.now()).toBeGreaterThan(3590_000);
  });
});
