import { createPrivateKey, generateKeyPair } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { Webhooks } from '@octokit/webhooks';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GitServer, seedRepository, startGitServer } from '../../infra/local/git-server.js';
import { type GitHubServer, startGitHubServer } from '../../infra/local/github-server.js';
import { gitFailure as failure, git as gitIn } from '../support/git.js';

/**
 * The GitHub stand-in, with the clients the control plane uses (`@octokit/rest` with
 * `@octokit/auth-app`), real git against the local git server, and a webhook receiver that checks
 * every signature with `@octokit/webhooks`.
 */

const DEMO_SOURCE = fileURLToPath(new URL('../../infra/local/demo-repo', import.meta.url));
const APP_ID = 1001;
const INSTALLATION_ID = 1;
const WEBHOOK_SECRET = 'local-webhook-secret';
const ADMIN_TOKEN = 'ghp_local-admin-token';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  signatureValid: boolean;
}

interface Delivery {
  id: number;
  guid: string;
  event: string;
  action: string | null;
  redelivery: boolean;
  status_code: number;
  request: { headers: Record<string, string>; payload: Payload };
}

/** What the tests read of a webhook's payload. */
interface Payload {
  action: string;
  number?: number;
  issue?: { number: number; title: string };
  pull_request?: { merged: boolean };
  [field: string]: unknown;
}

let dir: string;
let root: string;
let persistPath: string;
let gitServer: GitServer;
let github: GitHubServer;
let privateKey: string;
let receiver: Server;
let receiverUrl: string;
/** what the receiver answers: 404 until the route exists, as at first in the local cloud */
let receiverStatus = 204;
const received: Received[] = [];
const webhooks = new Webhooks({ secret: WEBHOOK_SECRET });

const startStandIn = (publicKeyPem: string) =>
  startGitHubServer({
    port: 0,
    host: '127.0.0.1',
    git: { url: gitServer.url, root },
    app: { id: APP_ID, slug: 'execution-runs', publicKeyPem },
    organization: { login: 'demo', installationId: INSTALLATION_ID },
    admin: { login: 'demo-admin', token: ADMIN_TOKEN },
    webhook: { url: receiverUrl, secret: WEBHOOK_SECRET },
    persistPath,
    log: () => undefined,
  });

let publicKeyPem: string;
let otherKey: string;

/** An RSA key pair, the private key a PKCS#1 PEM as GitHub hands out an App's. */
const appKeyPair = () =>
  promisify(generateKeyPair)('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'github-server-'));
  root = path.join(dir, 'repos');
  persistPath = path.join(dir, 'github.json');
  // made while the repositories are seeded: the App's, and another to forge its JWTs with
  const keys = Promise.all([appKeyPair(), appKeyPair()]);
  await Promise.all([
    seedRepository(root, 'demo/app.git', DEMO_SOURCE),
    seedRepository(root, 'demo/other.git', DEMO_SOURCE),
  ]);
  gitServer = await startGitServer({ port: 0, host: '127.0.0.1', root, log: () => undefined });
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const signature = req.headers['x-hub-signature-256'];
      const signatureValid = typeof signature === 'string' && (await webhooks.verify(body, signature));
      received.push({ headers: req.headers, body, signatureValid });
      res.writeHead(receiverStatus).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/github`;
  [{ privateKey, publicKey: publicKeyPem }, { privateKey: otherKey }] = await keys;
  github = await startStandIn(publicKeyPem);
});

afterAll(async () => {
  await github?.close();
  await gitServer?.close();
  await new Promise((resolve) => receiver?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** octokit logs every refusal; the tests expect theirs */
const log = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The App as the control plane will run it: JWTs signed with its private key, tokens minted from them. */
const appClient = () =>
  new Octokit({ baseUrl: github.url, authStrategy: createAppAuth, auth: { appId: APP_ID, privateKey }, log });

const installationToken = async (options: {
  repositoryNames?: string[];
  permissions?: Record<string, string>;
}) => {
  const { token } = (await appClient().auth({
    type: 'installation',
    installationId: INSTALLATION_ID,
    ...options,
  })) as {
    token: string;
  };
  return token;
};

const client = (token: string) => new Octokit({ baseUrl: github.url, auth: token, log });
const asAdmin = () => client(ADMIN_TOKEN);

const statusOf = (request: Promise<unknown>) =>
  request.then(
    () => 200,
    (err: { status: number }) => err.status,
  );

const git = (args: string[], options: { cwd?: string; token?: string } = {}) =>
  gitIn(args, {
    cwd: options.cwd ?? dir,
    credential: options.token ? { username: 'x-access-token', password: options.token } : undefined,
  });
let clones = 0;

/** A clone of demo/app with a new branch of one commit, pushed with the token. */
const pushBranch = async (token: string, branch: string, file = `${branch.replaceAll('/', '-')}.md`) => {
  const into = path.join(dir, `clone-${++clones}`);
  await git(['clone', '--quiet', `${gitServer.url}/demo/app.git`, into], { token });
  await git(['checkout', '--quiet', '-b', branch], { cwd: into });
  await writeFile(path.join(into, file), `${branch}\n`);
  await git(['add', file], { cwd: into });
  await git(['-c', 'user.name=Pod', '-c', 'user.email=pod@example.com', 'commit', '--quiet', '-m', branch], {
    cwd: into,
  });
  await git(['push', '--quiet', 'origin', branch], { cwd: into, token });
  return (await git(['rev-parse', 'HEAD'], { cwd: into })).stdout.trim();
};

const deliveries = async () => (await (await fetch(`${github.url}/_local/deliveries`)).json()) as Delivery[];
/**
 * The deliveries `where` picks, oldest first, once there are `count` of them: deliveries are made
 * after the answers, so a test waits for its own rather than for whatever came last.
 */
const deliveriesWhere = async (where: (payload: Payload, delivery: Delivery) => boolean, count: number) => {
  let found: Delivery[] = [];
  await expect
    .poll(
      async () => {
        found = (await deliveries())
          .filter((delivery) => where(delivery.request.payload, delivery))
          .reverse();
        return found.length;
      },
      { timeout: 5000, interval: 20 },
    )
    .toBeGreaterThanOrEqual(count);
  return found;
};

describe('the GitHub stand-in: the App and its installation tokens', () => {
  it('knows the App and its installation from a JWT, and refuses a JWT signed with another key with 401', async () => {
    const app = appClient();
    const { data: me } = await app.rest.apps.getAuthenticated();
    expect(me).toMatchObject({
      id: APP_ID,
      slug: 'execution-runs',
      events: ['issues', 'issue_comment', 'pull_request'],
    });
    const { data: installation } = await app.rest.apps.getRepoInstallation({ owner: 'demo', repo: 'app' });
    expect(installation).toMatchObject({
      id: INSTALLATION_ID,
      account: { login: 'demo', type: 'Organization' },
      permissions: { contents: 'write', pull_requests: 'write', issues: 'write', metadata: 'read' },
    });

    const forged = new Octokit({
      baseUrl: github.url,
      authStrategy: createAppAuth,
      auth: { appId: APP_ID, privateKey: otherKey },
      log,
    });
    await expect(forged.rest.apps.getAuthenticated()).rejects.toMatchObject({
      status: 401,
      response: { data: { message: 'A JSON web token could not be decoded' } },
    });
    // a JWT that would live past ten minutes is refused too
    const now = Math.floor(Date.now() / 1000);
    const tooLong = await new SignJWT({ iss: String(APP_ID) })
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(createPrivateKey(privateKey));
    const res = await fetch(`${github.url}/app`, { headers: { authorization: `Bearer ${tooLong}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { message: string }).message).toMatch(/'exp'\) is too far in the future/);
  });

  it('mints a contents: write token for one repository that clones and pushes it, but cannot open a pull request or clone another', async () => {
    const token = await installationToken({ repositoryNames: ['app'], permissions: { contents: 'write' } });

    const sha = await pushBranch(token, 'pods/demo-pod/run_contents');

    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    const refused = await client(token)
      .rest.pulls.create({
        owner: 'demo',
        repo: 'app',
        title: 'No',
        head: 'pods/demo-pod/run_contents',
        base: 'main',
      })
      .catch((err: { status: number; response: { data: unknown; headers: Record<string, string> } }) => err);
    expect(refused).toMatchObject({
      status: 403,
      response: { data: { message: 'Resource not accessible by integration' } },
    });
    expect(
      (refused as { response: { headers: Record<string, string> } }).response.headers[
        'x-accepted-github-permissions'
      ],
    ).toBe('pull_requests=write');
    const { data: issue } = await asAdmin().rest.issues.create({
      owner: 'demo',
      repo: 'app',
      title: 'Comment here',
    });
    expect(
      await statusOf(
        client(token).rest.issues.createComment({
          owner: 'demo',
          repo: 'app',
          issue_number: issue.number,
          body: 'No',
        }),
      ),
    ).toBe(403);
    expect(
      await failure(git(['clone', `${gitServer.url}/demo/other.git`, path.join(dir, 'stolen')], { token })),
    ).toMatch(/returned error: 403/);
    // the other repository does not exist, for this token
    expect(await statusOf(client(token).rest.repos.get({ owner: 'demo', repo: 'other' }))).toBe(404);
    const { data } = await client(token).rest.apps.listReposAccessibleToInstallation();
    expect(data.repositories.map((repo) => repo.full_name)).toEqual(['demo/app']);
  });

  it('mints a contents: read token whose push git refuses, and only the permissions and repositories the installation has', async () => {
    const token = await installationToken({ repositoryNames: ['app'], permissions: { contents: 'read' } });
    expect(await failure(pushBranch(token, 'pods/demo-pod/read-only'))).toMatch(/returned error: 403/);

    const app = appClient();
    const mint = (body: Record<string, unknown>) =>
      app.request('POST /app/installations/{installation_id}/access_tokens', {
        installation_id: INSTALLATION_ID,
        ...body,
      });
    await expect(mint({ permissions: { administration: 'write' } })).rejects.toMatchObject({
      status: 422,
      response: { data: { message: 'The permissions requested are not granted to this installation.' } },
    });
    await expect(mint({ permissions: { metadata: 'write' } })).rejects.toMatchObject({ status: 422 });
    await expect(mint({ repositories: ['nope'] })).rejects.toMatchObject({ status: 422 });
    await expect(app.rest.apps.createInstallationAccessToken({ installation_id: 99 })).rejects.toMatchObject({
      status: 404,
    });
    const { data: repo } = await asAdmin().rest.repos.get({ owner: 'demo', repo: 'other' });
    const { data: minted } = await mint({ repository_ids: [repo.id], permissions: { issues: 'read' } });
    expect(minted).toMatchObject({
      permissions: { issues: 'read', metadata: 'read' },
      repository_selection: 'selected',
      repositories: [{ full_name: 'demo/other', clone_url: `${gitServer.url}/demo/other.git` }],
    });
    expect(Date.parse(minted.expires_at) - Date.now()).toBeGreaterThan(3590_000);
  });
});

describe('the GitHub stand-in: pull requests', () => {
  it('opens a pull request from a pushed branch with a pull_requests: write token, refuses a missing head and a second one, and finds it by head', async () => {
    const token = await installationToken({
      repositoryNames: ['app'],
      permissions: { contents: 'write', pull_requests: 'write' },
    });
    const headSha = await pushBranch(token, 'pods/demo-pod/run_pr');
    const pod = client(token);

    const { data: opened, status } = await pod.rest.pulls.create({
      owner: 'demo',
      repo: 'app',
      title: 'Add a health check',
      head: 'pods/demo-pod/run_pr',
      base: 'main',
      body: 'Run run_pr',
    });

    expect(status).toBe(201);
    expect(opened).toMatchObject({
      state: 'open',
      draft: false,
      merged: false,
      merged_at: null,
      head: { ref: 'pods/demo-pod/run_pr', sha: headSha },
      base: { ref: 'main' },
      user: { login: 'execution-runs[bot]', type: 'Bot' },
      html_url: `${github.url}/demo/app/pull/${opened.number}`,
    });
    for (const head of ['pods/demo-pod/missing', 'demo:pods/demo-pod/run_pr']) {
      const refused = await pod.rest.pulls
        .create({ owner: 'demo', repo: 'app', title: 'Again', head, base: 'main' })
        .catch((err: { status: number; response: { data: unknown } }) => err);
      expect(refused, head).toMatchObject({
        status: 422,
        response: { data: { message: 'Validation Failed' } },
      });
    }
    const { data: found } = await pod.rest.pulls.list({
      owner: 'demo',
      repo: 'app',
      head: 'demo:pods/demo-pod/run_pr',
      state: 'all',
    });
    expect(found.map((pull) => pull.number)).toEqual([opened.number]);
    const { data: single } = await pod.rest.pulls.get({
      owner: 'demo',
      repo: 'app',
      pull_number: opened.number,
    });
    expect(single).toMatchObject({ mergeable: true, mergeable_state: 'clean', title: 'Add a health check' });
    const [delivery] = await deliveriesWhere((payload) => payload.number === opened.number, 1);
    expect(delivery).toMatchObject({
      event: 'pull_request',
      action: 'opened',
      status_code: 204,
      request: {
        payload: {
          number: opened.number,
          pull_request: { head: { sha: headSha } },
          repository: { full_name: 'demo/app' },
          installation: { id: INSTALLATION_ID },
          sender: { login: 'execution-runs[bot]', type: 'Bot' },
        },
      },
    });
  });

  it("lets the admin close one pull request unmerged and merge another into main with git, each announced as GitHub's", async () => {
    const token = await installationToken({ repositoryNames: ['app'] });
    const pod = client(token);
    const open = async (branch: string) => {
      const sha = await pushBranch(token, branch);
      const { data } = await pod.rest.pulls.create({
        owner: 'demo',
        repo: 'app',
        title: branch,
        head: branch,
        base: 'main',
      });
      return { number: data.number, sha };
    };
    const rejected = await open('pods/demo-pod/run_rejected');
    const accepted = await open('pods/demo-pod/run_accepted');

    const { data: closed } = await asAdmin().rest.pulls.update({
      owner: 'demo',
      repo: 'app',
      pull_number: rejected.number,
      state: 'closed',
    });
    const { data: merge } = await asAdmin().rest.pulls.merge({
      owner: 'demo',
      repo: 'app',
      pull_number: accepted.number,
    });

    expect(closed).toMatchObject({ state: 'closed', merged: false, merged_by: null });
    expect(closed.closed_at).not.toBeNull();
    expect(merge).toMatchObject({ merged: true, message: 'Pull Request successfully merged' });
    const { data: merged } = await pod.rest.pulls.get({
      owner: 'demo',
      repo: 'app',
      pull_number: accepted.number,
    });
    expect(merged).toMatchObject({
      state: 'closed',
      merged: true,
      merged_by: { login: 'demo-admin' },
      merge_commit_sha: merge.sha,
      head: { sha: accepted.sha },
    });
    // main on the git server is the merge commit, with the head's commit in it
    const gitDir = path.join(root, 'demo/app.git');
    expect((await git(['--git-dir', gitDir, 'rev-parse', 'main'])).stdout.trim()).toBe(merge.sha);
    await git(['--git-dir', gitDir, 'merge-base', '--is-ancestor', accepted.sha, 'main']);
    expect(
      (await git(['--git-dir', gitDir, 'log', '-1', '--format=%P%n%an%n%s', 'main'])).stdout.split('\n'),
    ).toEqual([
      expect.stringContaining(accepted.sha),
      'demo-admin',
      `Merge pull request #${accepted.number} from demo/pods/demo-pod/run_accepted`,
      '',
    ]);
    // once merged, not again; a person with read access may neither merge nor close
    expect(
      await statusOf(
        asAdmin().rest.pulls.merge({ owner: 'demo', repo: 'app', pull_number: accepted.number }),
      ),
    ).toBe(405);
    const stranger = await createPerson('stranger');
    expect(
      await statusOf(
        client(stranger).rest.pulls.update({
          owner: 'demo',
          repo: 'app',
          pull_number: rejected.number,
          state: 'open',
        }),
      ),
    ).toBe(403);
    const ours = (payload: Payload) =>
      payload.number === rejected.number || payload.number === accepted.number;
    const announced = await deliveriesWhere((payload) => ours(payload) && payload.action === 'closed', 2);
    expect(
      announced.map((delivery) => [delivery.event, delivery.action, delivery.request.payload.number]),
    ).toEqual([
      ['pull_request', 'closed', rejected.number],
      ['pull_request', 'closed', accepted.number],
    ]);
    expect(
      announced.map((delivery) => (delivery.request.payload.pull_request as { merged: boolean }).merged),
    ).toEqual([false, true]);
    expect(announced[1]?.request.payload.sender).toMatchObject({ login: 'demo-admin', type: 'User' });

    // reopened, it is announced again
    await asAdmin().rest.pulls.update({
      owner: 'demo',
      repo: 'app',
      pull_number: rejected.number,
      state: 'open',
    });
    const all = await deliveriesWhere(ours, 5);
    expect(all.map((delivery) => `${delivery.action} #${delivery.request.payload.number}`)).toEqual([
      `opened #${rejected.number}`,
      `opened #${accepted.number}`,
      `closed #${rejected.number}`,
      `closed #${accepted.number}`,
      `reopened #${rejected.number}`,
    ]);
  });
});

const createPerson = async (login: string) => {
  const res = await fetch(`${github.url}/_local/users`, { method: 'POST', body: JSON.stringify({ login }) });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
};

describe('the GitHub stand-in: issues, comments, labels and webhooks', () => {
  it('delivers what a person does on an issue as signed issues and issue_comment webhooks, and what the App comments', async () => {
    const { data: me } = await asAdmin().rest.users.getAuthenticated();
    expect(me).toMatchObject({ login: 'demo-admin', type: 'User' });

    const { data: issue } = await asAdmin().rest.issues.create({
      owner: 'demo',
      repo: 'app',
      title: 'The service has no health check',
      body: 'Add GET /health',
    });
    const { data: comment } = await asAdmin().rest.issues.createComment({
      owner: 'demo',
      repo: 'app',
      issue_number: issue.number,
      body: '@demo-pod add a health check',
    });
    const { data: labels } = await asAdmin().rest.issues.addLabels({
      owner: 'demo',
      repo: 'app',
      issue_number: issue.number,
      labels: ['pod:demo-pod'],
    });
    const pod = client(
      await installationToken({ repositoryNames: ['app'], permissions: { issues: 'write' } }),
    );
    const { data: reply } = await pod.rest.issues.createComment({
      owner: 'demo',
      repo: 'app',
      issue_number: issue.number,
      body: 'Run started',
    });
    await pod.rest.issues.updateComment({
      owner: 'demo',
      repo: 'app',
      comment_id: reply.id,
      body: 'Run completed',
    });

    expect(labels.map((label) => label.name)).toEqual(['pod:demo-pod']);
    expect(comment).toMatchObject({
      user: { login: 'demo-admin', type: 'User' },
      author_association: 'MEMBER',
    });
    const { data: thread } = await asAdmin().rest.issues.listComments({
      owner: 'demo',
      repo: 'app',
      issue_number: issue.number,
    });
    expect(thread.map((c) => [c.user?.login, c.body])).toEqual([
      ['demo-admin', '@demo-pod add a health check'],
      ['execution-runs[bot]', 'Run completed'],
    ]);
    const announced = await deliveriesWhere((payload) => payload.issue?.number === issue.number, 5);
    expect(announced.map((delivery) => `${delivery.event}.${delivery.action}`)).toEqual([
      'issues.opened',
      'issue_comment.created',
      'issues.labeled',
      'issue_comment.created',
      'issue_comment.edited',
    ]);
    expect(announced[2]?.request.payload).toMatchObject({
      label: { name: 'pod:demo-pod' },
      issue: { number: issue.number },
    });
    expect(announced[1]?.request.payload).toMatchObject({
      comment: { id: comment.id, body: '@demo-pod add a health check' },
      sender: { login: 'demo-admin', type: 'User' },
    });
    expect(announced[4]?.request.payload).toMatchObject({
      changes: { body: { from: 'Run started' } },
      sender: { login: 'execution-runs[bot]', type: 'Bot' },
    });
    // each arrived as GitHub sends it, signed with the secret
    const arrived = received.filter((r) => announced.some((d) => d.guid === r.headers['x-github-delivery']));
    expect(arrived).toHaveLength(5);
    for (const request of arrived) {
      expect(request.signatureValid).toBe(true);
      expect(request.headers).toMatchObject({
        'content-type': 'application/json',
        'x-github-hook-installation-target-type': 'integration',
        'user-agent': expect.stringMatching(/^GitHub-Hookshot\//),
      });
      expect(request.headers['x-github-delivery']).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('lets a stranger with read access open an issue and comment, but not label it: the labels are dropped', async () => {
    const stranger = client(await createPerson('passer-by'));
    const { data: issue } = await stranger.rest.issues.create({
      owner: 'demo',
      repo: 'app',
      title: 'Please run',
      labels: ['pod:demo-pod'],
    });
    expect(issue).toMatchObject({
      labels: [],
      author_association: 'COLLABORATOR',
      user: { login: 'passer-by' },
    });
    expect(
      await statusOf(
        stranger.rest.issues.addLabels({
          owner: 'demo',
          repo: 'app',
          issue_number: issue.number,
          labels: ['x'],
        }),
      ),
    ).toBe(403);
    expect(await statusOf(client('ghp_unknown').rest.users.getAuthenticated())).toBe(401);
  });

  it('records a delivery the receiver refused with its status, and redelivers it with the same X-GitHub-Delivery', async () => {
    receiverStatus = 404;
    try {
      await asAdmin().rest.issues.create({ owner: 'demo', repo: 'app', title: 'Refused at first' });
      const [refused] = await deliveriesWhere((payload) => payload.issue?.title === 'Refused at first', 1);
      expect(refused).toMatchObject({
        event: 'issues',
        action: 'opened',
        status_code: 404,
        redelivery: false,
      });
      receiverStatus = 204;

      const res = await fetch(`${github.url}/_local/deliveries/${refused?.id}/redeliver`, { method: 'POST' });

      expect(res.status).toBe(202);
      const [, again] = await deliveriesWhere((_, delivery) => delivery.guid === refused?.guid, 2);
      expect(again).toMatchObject({ guid: refused?.guid, redelivery: true, status_code: 204 });
      const arrivals = received.filter((r) => r.headers['x-github-delivery'] === refused?.guid);
      expect(arrivals).toHaveLength(2);
      expect(arrivals[1]?.body).toBe(arrivals[0]?.body);
      expect(arrivals.every((r) => r.signatureValid)).toBe(true);
    } finally {
      receiverStatus = 204;
    }
  });

  it('keeps pull requests, issues, comments, people and deliveries across a restart with a persist path', async () => {
    const { data: issue } = await asAdmin().rest.issues.create({
      owner: 'demo',
      repo: 'other',
      title: 'Kept',
    });
    await asAdmin().rest.issues.createComment({
      owner: 'demo',
      repo: 'other',
      issue_number: issue.number,
      body: 'Still here',
    });
    const person = await createPerson('kept-person');
    await deliveriesWhere((payload) => payload.issue?.title === 'Kept', 2);
    const before = await deliveries();

    await github.close();
    github = await startStandIn(publicKeyPem);

    const { data: comments } = await asAdmin().rest.issues.listComments({
      owner: 'demo',
      repo: 'other',
      issue_number: issue.number,
    });
    expect(comments.map((c) => c.body)).toEqual(['Still here']);
    expect((await client(person).rest.users.getAuthenticated()).data.login).toBe('kept-person');
    expect((await deliveries()).map((d) => d.guid)).toEqual(before.map((d) => d.guid));
    const { data: pulls } = await asAdmin().rest.pulls.list({ owner: 'demo', repo: 'app', state: 'all' });
    expect(pulls.length).toBeGreaterThanOrEqual(3);
    // the numbers go on from where they were, shared by issues and pull requests
    const { data: next } = await asAdmin().rest.issues.create({
      owner: 'demo',
      repo: 'other',
      title: 'Next',
    });
    expect(next.number).toBe(issue.number + 1);
  });
});
