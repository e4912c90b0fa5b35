import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { devNull, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { INSTALLATION_TOKEN_USERNAME } from '../../shared/adapters/github-app.js';
import { readBody } from './emulators/json-protocol.js';
import { loadState, saveState } from './emulators/persistence.js';

/**
 * The local cloud's git server: real git over smart HTTP, served by git's own `git http-backend`
 * (CGI) behind a wrapper that checks a token on every request, as GitHub checks an App installation
 * token. Clone, fetch, ls-remote and push work as against GitHub, with HTTP Basic
 * `x-access-token:<token>`.
 *
 * - `POST /_local/tokens` `{repos, ttlSeconds, readOnly?}` → `{token, expiresAt}`: a token for those
 *   repositories (paths such as `demo/demo-app.git`), read and push (or read only, as an installation
 *   token without `contents: write`), for at most an hour. A repository the server does not have is
 *   a 404.
 * - `/<owner>/<name>.git/...`: git. Without a token, or with an unknown or expired one, 401 (git
 *   then says "Authentication failed"); with a token that does not name the repository, or a push
 *   with a read-only token, 403.
 */

export interface GitServerOptions {
  port: number;
  host: string;
  /** where the bare repositories are: `<root>/<owner>/<name>.git` */
  root: string;
  /** a JSON file the tokens are loaded from at start and saved to at close (`--persist`) */
  persistPath?: string;
  log: (line: string) => void;
}

export interface GitServer {
  url: string;
  close(): Promise<void>;
}

/**
 * `owner/name.git`, and what git asks for in it (`/info/refs`, `/git-upload-pack`, `/objects/...`):
 * every segment starts with a letter, digit, `_` or `-`, so no `.`, `..` or encoded path escapes the
 * repository the token was checked for.
 */
const SEGMENT = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
const REPO = `${SEGMENT}/${SEGMENT}\\.git`;
const REPO_PATH = new RegExp(`^${REPO}$`);
const GIT_REQUEST = new RegExp(`^/(${REPO})((?:/${SEGMENT})*)(?:\\?(.*))?$`);
const MAX_TTL_SECONDS = 3600;

const tokenRequest = z
  .object({
    repos: z.array(z.string().regex(REPO_PATH, 'a repository is a path such as demo/demo-app.git')).min(1),
    ttlSeconds: z.number().int().min(1).max(MAX_TTL_SECONDS),
    readOnly: z.boolean().optional(),
  })
  .strict();

interface Grant {
  repos: string[];
  /** epoch ms */
  expiresAt: number;
  /** clone and fetch only; absent in tokens minted before there were read-only ones, which may push */
  readOnly?: boolean;
}

/** Only the tokens' hashes are kept, in memory and on disk. */
const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');

/** Git's own configuration only: nothing from the machine's or the user's. */
const ISOLATED_GIT = { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: devNull };

const run = promisify(execFile);
/** git on the server's side, e.g. on a bare repository with `--git-dir` */
export const git = (args: string[], env: Record<string, string> = {}) =>
  run('git', args, { env: { PATH: process.env.PATH, ...ISOLATED_GIT, ...env }, encoding: 'utf8' });

const isRepository = (gitDir: string) =>
  access(path.join(gitDir, 'HEAD')).then(
    () => true,
    () => false,
  );

/** The names of the repositories `<root>/<owner>/<name>.git`, sorted. */
export const repositoriesOf = async (root: string, owner: string): Promise<string[]> => {
  const entries = await readdir(path.join(root, owner), { withFileTypes: true }).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    },
  );
  const names: string[] = [];
  for (const entry of entries) {
    const gitDir = path.join(root, owner, entry.name);
    if (entry.isDirectory() && REPO_PATH.test(`${owner}/${entry.name}`) && (await isRepository(gitDir)))
      names.push(entry.name.slice(0, -'.git'.length));
  }
  return names.sort();
};

/** The author and date of the seeded commit: fixed, so the same files always make the same commit. */
const SEED_IDENTITY = {
  GIT_AUTHOR_NAME: 'Demo',
  GIT_AUTHOR_EMAIL: 'demo@example.com',
  GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'Demo',
  GIT_COMMITTER_EMAIL: 'demo@example.com',
  GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
};

/**
 * A bare repository `<root>/<repo>` whose `main` is one commit of the files in `sourceDir`. A
 * repository already there is left as it is, with whatever was pushed to it (`--persist`).
 */
export const seedRepository = async (root: string, repo: string, sourceDir: string): Promise<void> => {
  const gitDir = path.join(root, repo);
  if (await isRepository(gitDir)) return;
  // Built beside its place and moved there whole, so a seed cut short leaves no half repository.
  const building = `${gitDir}.seeding`;
  await rm(building, { recursive: true, force: true });
  await mkdir(path.dirname(gitDir), { recursive: true });
  await git(['init', '--quiet', '--bare', '--initial-branch=main', building]);
  // An index of its own, so the files are committed where they are, without a work tree to copy.
  const scratch = await mkdtemp(path.join(tmpdir(), 'git-seed-'));
  try {
    const env = { ...SEED_IDENTITY, GIT_INDEX_FILE: path.join(scratch, 'index') };
    const inRepo = ['--git-dir', building, '--work-tree', sourceDir];
    await git([...inRepo, 'add', '--all'], env);
    const tree = (await git([...inRepo, 'write-tree'], env)).stdout.trim();
    const commit = (
      await git(['--git-dir', building, 'commit-tree', tree, '-m', 'Initial commit'], env)
    ).stdout.trim();
    await git(['--git-dir', building, 'update-ref', 'refs/heads/main', commit]);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  await rename(building, gitDir);
};

const sendText = (
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
) => {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
  res.end(`${message}\n`);
};

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** The token of an HTTP Basic `x-access-token:<token>` header; undefined when there is none. */
const basicToken = (authorization: string | undefined): { user: string; token: string } | undefined => {
  if (!authorization?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), token: decoded.slice(colon + 1) };
};

/** The end of a CGI answer's header block, and the length of the blank line that ends it. */
const headerEnd = (data: Buffer): { at: number; length: number } | undefined => {
  const crlf = data.indexOf('\r\n\r\n');
  if (crlf >= 0) return { at: crlf, length: 4 };
  const lf = data.indexOf('\n\n');
  return lf >= 0 ? { at: lf, length: 2 } : undefined;
};

/** A CGI header block: `Status: 404 Not Found` sets the status; every other line is a header. */
const parseCgiHead = (head: string) => {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[name] = value;
  }
  return { status, headers };
};

export const startGitServer = async (options: GitServerOptions): Promise<GitServer> => {
  const { root, log } = options;
  await mkdir(root, { recursive: true });
  const grants = new Map<string, Grant>(
    Object.entries(
      (options.persistPath && (await loadState<Record<string, Grant>>(options.persistPath))) || {},
    ),
  );
  const forgetExpired = () => {
    const now = Date.now();
    for (const [hash, grant] of grants) if (grant.expiresAt <= now) grants.delete(hash);
  };

  const mintToken = async (req: IncomingMessage, res: ServerResponse) => {
    let input: z.infer<typeof tokenRequest>;
    try {
      input = tokenRequest.parse(JSON.parse((await readBody(req)) || '{}'));
    } catch (err) {
      const message =
        err instanceof z.ZodError ? err.issues.map((i) => i.message).join('; ') : 'invalid JSON';
      return sendJson(res, 400, { message });
    }
    for (const repo of input.repos) {
      if (!(await isRepository(path.join(root, repo)))) {
        return sendJson(res, 404, { message: `no repository ${repo} on the local git server` });
      }
    }
    forgetExpired();
    const token = `lgt_${randomBytes(32).toString('base64url')}`;
    const expiresAt = Date.now() + input.ttlSeconds * 1000;
    grants.set(hashOf(token), {
      repos: [...new Set(input.repos)],
      expiresAt,
      ...(input.readOnly ? { readOnly: true } : {}),
    });
    sendJson(res, 200, { token, expiresAt: new Date(expiresAt).toISOString() });
  };

  /** Why a git request is refused, as git expects it: 401 asks for (other) credentials, 403 does not. */
  const refusal = (
    req: IncomingMessage,
    repo: string,
    pushing: boolean,
  ): { status: 401 | 403; message: string } | undefined => {
    const credentials = basicToken(req.headers.authorization);
    if (!credentials) {
      return {
        status: 401,
        message: `authentication required: user ${INSTALLATION_TOKEN_USERNAME}, a token as password`,
      };
    }
    const grant = grants.get(hashOf(credentials.token));
    if (credentials.user !== INSTALLATION_TOKEN_USERNAME || !grant)
      return { status: 401, message: 'invalid credentials' };
    if (grant.expiresAt <= Date.now()) {
      return { status: 401, message: `the token expired at ${new Date(grant.expiresAt).toISOString()}` };
    }
    if (!grant.repos.includes(repo)) return { status: 403, message: `the token does not grant ${repo}` };
    if (pushing && grant.readOnly) return { status: 403, message: `the token may not push to ${repo}` };
    return undefined;
  };

  /** Hands the request to `git http-backend` as CGI and streams its answer back. */
  const serveGit = (req: IncomingMessage, res: ServerResponse, repo: string, rest: string, query: string) => {
    const passed: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      // the CGI variables below carry these; the credential stays here
      if (['authorization', 'content-type', 'content-length'].includes(name) || value === undefined) continue;
      passed[`HTTP_${name.toUpperCase().replace(/-/g, '_')}`] = Array.isArray(value)
        ? value.join(', ')
        : value;
    }
    const backend = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        ...ISOLATED_GIT,
        ...passed,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        // Every request that gets here carries a token that grants the repository, and a push one
        // that may push.
        REMOTE_USER: INSTALLATION_TOKEN_USERNAME,
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: 'http.receivepack',
        GIT_CONFIG_VALUE_0: 'true',
        GATEWAY_INTERFACE: 'CGI/1.1',
        SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: `/${repo}${rest}`,
        QUERY_STRING: query,
        REMOTE_ADDR: req.socket.remoteAddress ?? '',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      },
    });
    const what = `${req.method} /${repo}${rest}`;
    let stderr = '';
    backend.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = headerEnd(head);
      if (!end) return;
      backend.stdout.off('data', onHead);
      const { status, headers } = parseCgiHead(head.subarray(0, end.at).toString('latin1'));
      res.writeHead(status, headers);
      res.write(head.subarray(end.at + end.length));
      backend.stdout.pipe(res);
    };
    backend.stdout.on('data', onHead);
    backend.on('error', (err) => {
      log(`git server: ${what}: git http-backend did not start: ${err.message}`);
      if (!res.headersSent) sendText(res, 500, 'git http-backend did not start');
    });
    backend.on('close', (code) => {
      if (code !== 0 || stderr.trim())
        log(`git server: ${what}: git http-backend exited ${code}: ${stderr.trim()}`);
      if (!res.headersSent) sendText(res, 500, 'git http-backend gave no answer');
      else if (!res.writableEnded) res.end();
    });
    // A request cut short ends its git process; the exit status and stderr say what happened to it.
    backend.stdin.on('error', () => undefined);
    res.on('close', () => {
      if (!res.writableFinished && backend.exitCode === null) backend.kill();
    });
    req.pipe(backend.stdin);
  };

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/_local/tokens' && req.method === 'POST') {
      void mintToken(req, res).catch((err: Error) => {
        log(`git server: minting a token failed: ${err.message}`);
        if (!res.headersSent) sendJson(res, 500, { message: err.message });
      });
      return;
    }
    const match = GIT_REQUEST.exec(url);
    if (!match) return sendText(res, 404, 'not a repository path: /<owner>/<name>.git/...');
    const [, repo = '', rest = '', query = ''] = match;
    // a push asks for git-receive-pack: its refs first, then the pack
    const pushing =
      rest === '/git-receive-pack' || new URLSearchParams(query).get('service') === 'git-receive-pack';
    const refused = refusal(req, repo, pushing);
    if (refused) {
      // git asks without credentials first, and is answered 401: only refused credentials are news
      if (req.headers.authorization) log(`git server: refused ${req.method} ${url}: ${refused.message}`);
      const challenge: Record<string, string> =
        refused.status === 401 ? { 'www-authenticate': 'Basic realm="local git server"' } : {};
      // a request with a body is read to its end, so the client sees the answer rather than a reset
      req.resume();
      return sendText(res, refused.status, refused.message, challenge);
    }
    serveGit(req, res, repo, rest, query);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${options.host}:${port}`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      if (options.persistPath) {
        forgetExpired();
        await saveState(options.persistPath, Object.fromEntries(grants));
      }
    },
  };
};
