import { createHash, createHmac, createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { errors, jwtVerify } from 'jose';
import { z } from 'zod';
import { GITHUB_LOGIN } from '../../shared/schemas/api.js';
import { readBody } from './emulators/json-protocol.js';
import { loadState, saveState } from './emulators/persistence.js';
import { git, repositoriesOf } from './git-server.js';

/**
 * The local cloud's GitHub: the part of GitHub's REST API that the control plane (as a GitHub App)
 * and a person's client use, over the local git server's repositories, and the webhooks GitHub
 * sends for what they do. Answers, errors and status codes are GitHub's, so `@octokit/rest` with
 * `@octokit/auth-app` works against it as against api.github.com.
 *
 * - One organization owns the repositories under `<git root>/<organization>/`, and has the App
 *   installed on all of them with `INSTALLATION_PERMISSIONS`.
 * - The App authenticates with an RS256 JWT (`iss` its id, at most ten minutes between `iat` and
 *   `exp`) on `/app...` and `/repos/{owner}/{repo}/installation`, and mints installation tokens:
 *   for an hour, narrowed to some repositories and permissions if asked. A token with `contents`
 *   is also the git server's: it clones those repositories, and pushes with `contents: write`.
 * - Installation tokens and people's tokens (`Authorization: token <t>` or `Bearer <t>`) reach the
 *   repository, pull request, issue, comment and label routes, each checking what GitHub checks: a
 *   repository the token does not cover is a 404, a permission it lacks a 403.
 * - People: the organization's admin, and more from `POST /_local/users {login, permission?}`,
 *   with the `permission` GitHub gives a collaborator (`read`, the default, opens issues and
 *   comments; `write` also labels, closes and merges; `none` sees nothing).
 * - Every change GitHub would announce to the App is delivered after the answer, as a signed POST
 *   to the webhook URL, and recorded as GitHub records it: `GET /_local/deliveries` (newest first),
 *   `POST /_local/deliveries/{id}/redeliver` (the same request again, same `X-GitHub-Delivery`).
 */

export interface GitHubServerOptions {
  port: number;
  host: string;
  /** the local git server: its URL (clone URLs, installation tokens' git side) and its bare repositories */
  git: { url: string; root: string };
  /** the GitHub App: its bot is `<slug>[bot]`; it signs its JWTs with the private key of this public one */
  app: { id: number; slug: string; publicKeyPem: string };
  /** the organization that owns the repositories, and the id of the App's installation on it */
  organization: { login: string; installationId: number };
  /** the organization's admin, a person with a personal token */
  admin: { login: string; token: string };
  /** where the App's webhooks go (none are sent without a URL), signed with the secret */
  webhook: { url?: string; secret: string };
  /** a JSON file the state is loaded from at start and saved to at close (`--persist`) */
  persistPath?: string;
  log: (line: string) => void;
}

export interface GitHubServer {
  /** the REST API's base URL, for octokit's `baseUrl` */
  url: string;
  /** where webhooks go from now on: the control plane's URL may be known only after this starts */
  setWebhookUrl(url: string): void;
  close(): Promise<void>;
}

type Level = 'read' | 'write';

/** What the App's installation was granted, and so the most a token minted from it may have. */
export const INSTALLATION_PERMISSIONS = {
  contents: 'write',
  pull_requests: 'write',
  issues: 'write',
  metadata: 'read',
} as const satisfies Record<string, Level>;
type PermissionName = keyof typeof INSTALLATION_PERMISSIONS;
type Permissions = Partial<Record<PermissionName, Level>>;

/** The events the App subscribes to. */
const EVENTS = ['issues', 'issue_comment', 'pull_request'];

/** A person's access to the organization's repositories, as GitHub's collaborator `permission`. */
const PERMISSIONS = ['none', 'read', 'write', 'admin'] as const;
type Permission = (typeof PERMISSIONS)[number];

const atLeast = (permission: Permission, needed: Permission) =>
  PERMISSIONS.indexOf(permission) >= PERMISSIONS.indexOf(needed);

const TOKEN_TTL_SECONDS = 3600;
/** GitHub waits that long for a webhook's answer. */
const DELIVERY_TIMEOUT_MS = 10_000;
/** GitHub keeps deliveries three days. */
const DELIVERIES_KEPT_MS = 3 * 86_400_000;
const DOCS = 'https://docs.github.com/rest';
/** When the organization, the App and its installation came to be: fixed, as the seeded commit's date. */
const CREATED_AT = '2026-01-01T00:00:00Z';
/** User ids: the organization, the App's bot and the admin; people made later count on from there. */
const ORGANIZATION_ID = 1;
const BOT_ID = 2;
const ADMIN_ID = 3;

interface Person {
  login: string;
  id: number;
  permission: Permission;
  tokenHash: string;
}

interface InstallationToken {
  /** repository names, or every repository of the organization */
  repositories: string[] | 'all';
  permissions: Permissions;
  /** epoch ms */
  expiresAt: number;
}

interface PullRequest {
  id: number;
  /** the shas as last seen: an open pull request shows its branches' current ones */
  head: { ref: string; sha: string };
  base: { ref: string; sha: string };
  draft: boolean;
  mergedAt: string | null;
  mergedBy: string | null;
  mergeCommitSha: string | null;
}

/** An issue, or a pull request: on GitHub every pull request is an issue too, numbered alike. */
interface Issue {
  id: number;
  number: number;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  /** logins */
  user: string;
  labels: string[];
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  pull?: PullRequest;
}

interface Comment {
  id: number;
  issueNumber: number;
  body: string;
  user: string;
  createdAt: string;
  updatedAt: string;
}

interface RepositoryRecord {
  nextNumber: number;
  issues: Issue[];
  comments: Comment[];
  labels: { id: number; name: string; color: string }[];
}

/** A delivery as GitHub's API shows one (`hook-delivery`). */
interface Delivery {
  id: number;
  guid: string;
  delivered_at: string;
  redelivery: boolean;
  /** seconds */
  duration: number;
  status: string;
  status_code: number;
  event: string;
  action: string | null;
  installation_id: number;
  repository_id: number | null;
  url: string;
  request: { headers: Record<string, string>; payload: Record<string, unknown> };
  response: { headers: Record<string, string> | null; payload: string | null };
}

interface State {
  /** ids of issues, pull requests, comments, labels and deliveries */
  nextId: number;
  nextUserId: number;
  people: Person[];
  /** installation tokens by their hash: only hashes are kept */
  tokens: Record<string, InstallationToken>;
  /** by full name */
  repositories: Record<string, RepositoryRecord>;
  /** oldest first */
  deliveries: Delivery[];
}

class GitHubError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: { errors?: Record<string, string>[]; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }
}

const notFound = () => new GitHubError(404, 'Not Found');
const JWT_UNDECODABLE = 'A JSON web token could not be decoded';
/** For an App: the permissions that would do, alternatives separated by `;` as GitHub sends them. */
const notAccessibleByIntegration = (accepted?: string) =>
  new GitHubError(
    403,
    'Resource not accessible by integration',
    accepted ? { headers: { 'x-accepted-github-permissions': accepted } } : {},
  );
const validationFailed = (error: Record<string, string>) =>
  new GitHubError(422, 'Validation Failed', { errors: [error] });
const notMergeable = () => new GitHubError(405, 'Pull Request is not mergeable');

/** A body as the route's schema wants it, or GitHub's 422 for one it does not. */
const parse = <T extends z.ZodType>(schema: T, body: unknown): z.infer<T> => {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`);
  throw new GitHubError(422, `Invalid request.\n\n${problems.join('\n')}`);
};

const labelList = z.array(z.union([z.string().min(1), z.object({ name: z.string().min(1) })]));
const labelNames = (labels: z.infer<typeof labelList>) => [
  ...new Set(labels.map((label) => (typeof label === 'string' ? label : label.name))),
];

const accessTokenRequest = z.object({
  repositories: z.array(z.string()).optional(),
  repository_ids: z.array(z.number().int()).optional(),
  permissions: z.record(z.string(), z.enum(['read', 'write'])).optional(),
});
const newPullRequest = z.object({
  title: z.string().min(1),
  head: z.string().min(1),
  base: z.string().min(1),
  body: z.string().nullish(),
  draft: z.boolean().optional(),
});
const pullRequestUpdate = z.object({
  title: z.string().min(1).optional(),
  body: z.string().nullish(),
  state: z.enum(['open', 'closed']).optional(),
  base: z.string().min(1).optional(),
});
const mergeRequest = z.object({
  commit_title: z.string().optional(),
  commit_message: z.string().optional(),
  sha: z.string().optional(),
  merge_method: z.enum(['merge', 'squash', 'rebase']).optional(),
});
const newIssue = z.object({
  title: z.union([z.string().min(1), z.number()]).transform(String),
  body: z.string().nullish(),
  labels: labelList.optional(),
});
const commentBody = z.object({ body: z.string().min(1) });
const labelsToAdd = z.union([labelList, z.object({ labels: labelList })]);
const newPerson = z
  .object({
    login: z.string().regex(GITHUB_LOGIN, 'a login is letters, digits and single inner hyphens, at most 39'),
    permission: z.enum(PERMISSIONS).optional(),
  })
  .strict();

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');
/** GitHub's timestamps: ISO 8601 to the second. */
const timestamp = (ms = Date.now()) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
/** A repository's id, the same for its full name at every start. */
const repositoryIdOf = (fullName: string) =>
  Number.parseInt(createHash('sha256').update(fullName).digest('hex').slice(0, 8), 16);

/** A bare repository's branches and their shas. */
const branchHeads = async (gitDir: string): Promise<Map<string, string>> => {
  const { stdout } = await git([
    '--git-dir',
    gitDir,
    'for-each-ref',
    '--format=%(objectname) %(refname)',
    'refs/heads/',
  ]);
  const heads = new Map<string, string>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const space = line.indexOf(' ');
    heads.set(line.slice(space + 1 + 'refs/heads/'.length), line.slice(0, space));
  }
  return heads;
};

/** The tree of `head` merged into `base`, or undefined when they conflict (merge-tree exits 1). */
const mergedTree = async (gitDir: string, base: string, head: string): Promise<string | undefined> => {
  try {
    const { stdout } = await git(['--git-dir', gitDir, 'merge-tree', '--write-tree', base, head]);
    return stdout.split('\n')[0];
  } catch (err) {
    if ((err as { code?: unknown }).code === 1) return undefined;
    throw err;
  }
};

/** The branch a bare repository's HEAD names. */
const defaultBranchOf = async (gitDir: string) =>
  (await readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim().replace(/^ref: refs\/heads\//, '');

interface Repository {
  name: string;
  fullName: string;
  id: number;
  gitDir: string;
  defaultBranch: string;
  record: RepositoryRecord;
  /** REST and HTML URLs */
  api: string;
  html: string;
}

type Caller =
  | { kind: 'app' }
  | { kind: 'installation'; token: InstallationToken }
  | { kind: 'user'; person: Person };

/** What a route takes: the App's JWT, or an installation token or a person's token. */
type Audience = 'app' | 'token';

/** What a call needs: one of these App permissions at the level, or a person's permission. */
interface Need {
  app: PermissionName[];
  level: Level;
  person: Permission;
}

interface Announcement {
  event: string;
  action: string;
  repositoryId: number;
  payload: Record<string, unknown>;
}

interface Call {
  caller: Caller;
  params: Record<string, string>;
  query: URLSearchParams;
  path: string;
  body: unknown;
  /** a webhook, delivered once the answer is sent */
  announce(repository: Repository, event: string, fields: Record<string, unknown> & { action: string }): void;
}

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

type Handler = (call: Call) => Promise<Answer> | Answer;

interface Route {
  method: string;
  pattern: RegExp;
  /** GitHub's documentation of the route, under https://docs.github.com/rest/ */
  docs: string;
  audience: Audience;
  handle: Handler;
}

interface ControlRoute {
  method: string;
  pattern: RegExp;
  handle(call: { params: Record<string, string>; body: unknown }): Promise<Answer> | Answer;
}

const matchRoute = <R extends { method: string; pattern: RegExp }>(
  routes: R[],
  method: string | undefined,
  pathname: string,
): { route: R; params: Record<string, string> } | undefined => {
  for (const route of routes) {
    const match = route.method === method ? route.pattern.exec(pathname) : null;
    if (match) {
      try {
        const params = Object.entries(match.groups ?? {}).map(([name, value]) => [
          name,
          decodeURIComponent(value),
        ]);
        return { route, params: Object.fromEntries(params) };
      } catch {
        // a malformed escape names nothing
        return undefined;
      }
    }
  }
  return undefined;
};

/** `/repos/{owner}/{repo}` → a pattern whose groups are the named parameters. */
const compile = (template: string) =>
  new RegExp(`^${template.replace(/\{(\w+)\}/g, (_, name: string) => `(?<${name}>[^/]+)`)}$`);

const ok = (body: unknown, headers?: Record<string, string>): Answer => ({ status: 200, body, headers });
const created = (body: unknown): Answer => ({ status: 201, body });

export const startGitHubServer = async (options: GitHubServerOptions): Promise<GitHubServer> => {
  const { app, log } = options;
  const org = options.organization.login;
  const { installationId } = options.organization;
  const publicKey = createPublicKey(options.app.publicKeyPem);
  const botLogin = `${app.slug}[bot]`;
  const admin: Person = {
    login: options.admin.login,
    id: ADMIN_ID,
    permission: 'admin',
    tokenHash: hashOf(options.admin.token),
  };
  let webhookUrl = options.webhook.url;
  const persisted = options.persistPath ? await loadState<State>(options.persistPath) : undefined;
  const state: State = persisted ?? {
    nextId: 1,
    nextUserId: ADMIN_ID + 1,
    people: [],
    tokens: {},
    repositories: {},
    deliveries: [],
  };
  const nextId = () => state.nextId++;
  let url = '';

  // ---- who is calling

  const personByLogin = (login: string) =>
    login === admin.login ? admin : state.people.find((person) => person.login === login);
  const personByToken = (token: string) => {
    const hash = hashOf(token);
    return hash === admin.tokenHash ? admin : state.people.find((person) => person.tokenHash === hash);
  };
  const gitDirOf = (name: string) => path.join(options.git.root, `${org}/${name}.git`);
  const loginOf = (caller: Caller) => (caller.kind === 'user' ? caller.person.login : botLogin);

  const forgetExpiredTokens = () => {
    for (const [hash, token] of Object.entries(state.tokens))
      if (token.expiresAt <= Date.now()) delete state.tokens[hash];
  };

  /** The App's JWT, checked as GitHub checks it, with the messages octokit's App auth looks for. */
  const verifyAppJwt = async (jwt: string) => {
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(jwt, publicKey, { algorithms: ['RS256'], clockTolerance: 60 }));
    } catch (err) {
      if (err instanceof errors.JWTExpired) {
        throw new GitHubError(
          401,
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
      }
      throw new GitHubError(401, JWT_UNDECODABLE);
    }
    if (String(payload.iss) !== String(app.id)) throw new GitHubError(401, JWT_UNDECODABLE);
    const nowSeconds = Math.floor(Date.now() / 1000);
    if (typeof payload.iat !== 'number' || payload.iat > nowSeconds + 60) {
      throw new GitHubError(
        401,
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
      );
    }
    if (typeof payload.exp !== 'number' || payload.exp - payload.iat > 600) {
      throw new GitHubError(401, "'Expiration time' claim ('exp') is too far in the future");
    }
  };

  const authenticate = async (authorization: string | undefined): Promise<Caller> => {
    if (!authorization) throw new GitHubError(401, 'Requires authentication');
    const match = /^(?:token|bearer)\s+(\S+)$/i.exec(authorization.trim());
    if (!match?.[1]) throw new GitHubError(401, 'Bad credentials');
    const credential = match[1];
    if (credential.split('.').length === 3) {
      await verifyAppJwt(credential);
      return { kind: 'app' };
    }
    const token = state.tokens[hashOf(credential)];
    if (token && token.expiresAt > Date.now()) return { kind: 'installation', token };
    const person = personByToken(credential);
    if (person) return { kind: 'user', person };
    throw new GitHubError(401, 'Bad credentials');
  };

  /** The App's JWT only on the App's routes, and only tokens elsewhere. */
  const admit = (caller: Caller, audience: Audience) => {
    if (audience === 'app' && caller.kind !== 'app') throw new GitHubError(401, JWT_UNDECODABLE);
    if (audience === 'token' && caller.kind === 'app') throw notAccessibleByIntegration();
  };

  /** A repository the caller can see (else 404), and may act on as `need` says (else 403). */
  const repositoryFor = async (call: Call, need?: Need): Promise<Repository> => {
    const { owner = '', repo: name = '' } = call.params;
    const names = owner === org ? await repositoriesOf(options.git.root, org) : [];
    const { caller } = call;
    const visible =
      names.includes(name) &&
      (caller.kind === 'installation'
        ? caller.token.repositories === 'all' || caller.token.repositories.includes(name)
        : caller.kind === 'user' && caller.person.permission !== 'none');
    if (!visible) throw notFound();
    if (need) authorize(caller, need);
    const fullName = `${org}/${name}`;
    state.repositories[fullName] ??= { nextNumber: 1, issues: [], comments: [], labels: [] };
    const gitDir = gitDirOf(name);
    return {
      name,
      fullName,
      id: repositoryIdOf(fullName),
      gitDir,
      defaultBranch: await defaultBranchOf(gitDir),
      record: state.repositories[fullName],
      api: `${url}/repos/${fullName}`,
      html: `${url}/${fullName}`,
    };
  };

  const authorize = (caller: Caller, need: Need) => {
    if (caller.kind === 'installation') {
      const { permissions } = caller.token;
      const granted = need.app.some(
        (name) => permissions[name] === 'write' || (need.level === 'read' && permissions[name] === 'read'),
      );
      if (!granted)
        throw notAccessibleByIntegration(need.app.map((name) => `${name}=${need.level}`).join('; '));
    } else if (caller.kind === 'user') {
      if (!atLeast(caller.person.permission, need.person)) {
        throw new GitHubError(403, `Must have ${need.person} access to repository`);
      }
    }
  };

  /** On GitHub an issue that is a pull request answers to either permission. */
  const needOn = (issue: Issue, level: Level, person: Permission): Need => ({
    app: issue.pull ? ['issues', 'pull_requests'] : ['issues'],
    level,
    person,
  });

  const issueNumbered = (repository: Repository, number: string | undefined) => {
    const issue = /^\d+$/.test(number ?? '')
      ? repository.record.issues.find((candidate) => candidate.number === Number(number))
      : undefined;
    if (!issue) throw notFound();
    return issue;
  };
  const pullNumbered = (repository: Repository, number: string | undefined) => {
    const issue = issueNumbered(repository, number);
    if (!issue.pull) throw notFound();
    return { issue, pull: issue.pull };
  };
  const commentsOn = (repository: Repository, issue: Issue) =>
    repository.record.comments.filter((comment) => comment.issueNumber === issue.number);
  const openPullFor = (repository: Repository, head: string, base: string) =>
    repository.record.issues.find(
      (issue) => issue.state === 'open' && issue.pull?.head.ref === head && issue.pull.base.ref === base,
    );

  // ---- objects, shaped as GitHub's

  const userObject = (login: string, id: number, type: 'User' | 'Organization' | 'Bot') => ({
    login,
    id,
    avatar_url: '',
    url: `${url}/users/${login}`,
    html_url: `${url}/${login}`,
    type,
    site_admin: false,
  });
  const organizationObject = () => userObject(org, ORGANIZATION_ID, 'Organization');
  const actorObject = (login: string) =>
    login === botLogin
      ? userObject(botLogin, BOT_ID, 'Bot')
      : userObject(login, personByLogin(login)?.id ?? 0, 'User');
  /** The admin is a member of the organization; other people are collaborators, the bot neither. */
  const associationOf = (login: string) => {
    if (login === admin.login) return 'MEMBER';
    const person = personByLogin(login);
    return person && person.permission !== 'none' ? 'COLLABORATOR' : 'NONE';
  };

  const appObject = () => ({
    id: app.id,
    slug: app.slug,
    owner: organizationObject(),
    name: app.slug,
    description: null,
    external_url: url,
    html_url: `${url}/apps/${app.slug}`,
    created_at: CREATED_AT,
    updated_at: CREATED_AT,
    permissions: INSTALLATION_PERMISSIONS,
    events: EVENTS,
    installations_count: 1,
  });

  const installationObject = () => ({
    id: installationId,
    account: organizationObject(),
    repository_selection: 'all',
    access_tokens_url: `${url}/app/installations/${installationId}/access_tokens`,
    repositories_url: `${url}/installation/repositories`,
    html_url: `${url}/organizations/${org}/settings/installations/${installationId}`,
    app_id: app.id,
    app_slug: app.slug,
    target_id: ORGANIZATION_ID,
    target_type: 'Organization',
    permissions: INSTALLATION_PERMISSIONS,
    events: EVENTS,
    created_at: CREATED_AT,
    updated_at: CREATED_AT,
    single_file_name: null,
    suspended_by: null,
    suspended_at: null,
  });

  const repositoryObject = (name: string, defaultBranch: string) => {
    const fullName = `${org}/${name}`;
    const record = state.repositories[fullName];
    return {
      id: repositoryIdOf(fullName),
      name,
      full_name: fullName,
      owner: organizationObject(),
      private: true,
      visibility: 'private',
      html_url: `${url}/${fullName}`,
      description: null,
      fork: false,
      url: `${url}/repos/${fullName}`,
      clone_url: `${options.git.url}/${fullName}.git`,
      default_branch: defaultBranch,
      open_issues_count: record?.issues.filter((issue) => issue.state === 'open').length ?? 0,
      has_issues: true,
      archived: false,
      disabled: false,
      allow_merge_commit: true,
      allow_squash_merge: false,
      allow_rebase_merge: false,
      delete_branch_on_merge: false,
    };
  };
  const describeRepository = async (name: string) =>
    repositoryObject(name, await defaultBranchOf(gitDirOf(name)));

  const labelObject = (repository: Repository, name: string) => {
    const label = repository.record.labels.find((candidate) => candidate.name === name);
    return {
      id: label?.id ?? 0,
      url: `${repository.api}/labels/${encodeURIComponent(name)}`,
      name,
      color: label?.color ?? 'ededed',
      default: false,
      description: null,
    };
  };

  const issueObject = (repository: Repository, issue: Issue) => {
    const html = `${repository.html}/${issue.pull ? 'pull' : 'issues'}/${issue.number}`;
    const api = `${repository.api}/issues/${issue.number}`;
    return {
      url: api,
      repository_url: repository.api,
      labels_url: `${api}/labels{/name}`,
      comments_url: `${api}/comments`,
      html_url: html,
      id: issue.id,
      number: issue.number,
      title: issue.title,
      user: actorObject(issue.user),
      labels: issue.labels.map((name) => labelObject(repository, name)),
      state: issue.state,
      locked: false,
      assignee: null,
      assignees: [],
      comments: commentsOn(repository, issue).length,
      created_at: issue.createdAt,
      updated_at: issue.updatedAt,
      closed_at: issue.closedAt,
      author_association: associationOf(issue.user),
      body: issue.body,
      ...(issue.pull
        ? {
            pull_request: {
              url: `${repository.api}/pulls/${issue.number}`,
              html_url: html,
              diff_url: `${html}.diff`,
              patch_url: `${html}.patch`,
              merged_at: issue.pull.mergedAt,
            },
          }
        : {}),
    };
  };

  /**
   * `heads`: the repository's branches now, which an open pull request shows; `mergeable` is worked
   * out only for a single open pull request, as GitHub leaves it null in lists and events.
   */
  const pullObject = (
    repository: Repository,
    issue: Issue,
    pull: PullRequest,
    heads: Map<string, string>,
    mergeable: boolean | null = null,
  ) => {
    const repo = repositoryObject(repository.name, repository.defaultBranch);
    const side = ({ ref, sha }: { ref: string; sha: string }) => ({
      label: `${org}:${ref}`,
      ref,
      sha: (issue.state === 'open' && heads.get(ref)) || sha,
      user: organizationObject(),
      repo,
    });
    const html = `${repository.html}/pull/${issue.number}`;
    const api = `${repository.api}/pulls/${issue.number}`;
    return {
      url: api,
      id: pull.id,
      html_url: html,
      diff_url: `${html}.diff`,
      patch_url: `${html}.patch`,
      issue_url: `${repository.api}/issues/${issue.number}`,
      comments_url: `${repository.api}/issues/${issue.number}/comments`,
      number: issue.number,
      state: issue.state,
      locked: false,
      title: issue.title,
      user: actorObject(issue.user),
      body: issue.body,
      labels: issue.labels.map((name) => labelObject(repository, name)),
      created_at: issue.createdAt,
      updated_at: issue.updatedAt,
      closed_at: issue.closedAt,
      merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      head: side(pull.head),
      base: side(pull.base),
      author_association: associationOf(issue.user),
      draft: pull.draft,
      merged: pull.mergedAt !== null,
      mergeable,
      mergeable_state: mergeable === null ? 'unknown' : mergeable ? 'clean' : 'dirty',
      merged_by: pull.mergedBy ? actorObject(pull.mergedBy) : null,
      comments: commentsOn(repository, issue).length,
    };
  };

  const commentObject = (repository: Repository, issue: Issue, comment: Comment) => ({
    url: `${repository.api}/issues/comments/${comment.id}`,
    html_url: `${repository.html}/${issue.pull ? 'pull' : 'issues'}/${issue.number}#issuecomment-${comment.id}`,
    issue_url: `${repository.api}/issues/${issue.number}`,
    id: comment.id,
    user: actorObject(comment.user),
    created_at: comment.createdAt,
    updated_at: comment.updatedAt,
    author_association: associationOf(comment.user),
    body: comment.body,
    performed_via_github_app: comment.user === botLogin ? appObject() : null,
  });

  /** GitHub's pages: `per_page` (30, at most 100) and `page`, with a `Link` to the next and last. */
  const paged = <T>(call: Call, items: T[]): { items: T[]; headers: Record<string, string> } => {
    const perPage = Math.min(100, Math.max(1, Number(call.query.get('per_page')) || 30));
    const page = Math.max(1, Number(call.query.get('page')) || 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (target: number, rel: string) => {
      const query = new URLSearchParams(call.query);
      query.set('per_page', String(perPage));
      query.set('page', String(target));
      return `<${url}${call.path}?${query}>; rel="${rel}"`;
    };
    const links = [
      ...(page > 1 ? [link(page - 1, 'prev'), link(1, 'first')] : []),
      ...(page < last ? [link(page + 1, 'next'), link(last, 'last')] : []),
    ];
    return {
      items: items.slice((page - 1) * perPage, page * perPage),
      headers: links.length > 0 ? { link: links.join(', ') } : {},
    };
  };

  // ---- installation tokens, which are the git server's too

  /** A token of the git server's for those repositories: read-only without `contents: write`. */
  const mintGitToken = async (names: string[], readOnly: boolean): Promise<string> => {
    const response = await fetch(`${options.git.url}/_local/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        repos: names.map((name) => `${org}/${name}.git`),
        ttlSeconds: TOKEN_TTL_SECONDS,
        readOnly,
      }),
    });
    const body = (await response.json()) as { token?: string; message?: string };
    if (!response.ok || !body.token) throw new Error(`the git server minted no token: ${body.message}`);
    return body.token;
  };

  const createAccessToken = async (call: Call): Promise<Answer> => {
    if (call.params.installation_id !== String(installationId)) throw notFound();
    const input = parse(accessTokenRequest, call.body);
    const names = await repositoriesOf(options.git.root, org);
    const selected = new Set(input.repositories);
    for (const id of input.repository_ids ?? []) {
      selected.add(names.find((name) => repositoryIdOf(`${org}/${name}`) === id) ?? `#${id}`);
    }
    if ([...selected].some((name) => !names.includes(name))) {
      throw new GitHubError(
        422,
        'There is at least one repository that does not exist or is not accessible to the parent installation.',
      );
    }
    const requested = input.permissions ?? INSTALLATION_PERMISSIONS;
    const permissions: Permissions = { metadata: 'read' };
    for (const [name, level] of Object.entries(requested)) {
      const allowed = INSTALLATION_PERMISSIONS[name as PermissionName] as Level | undefined;
      if (!allowed || (level === 'write' && allowed === 'read')) {
        throw new GitHubError(422, 'The permissions requested are not granted to this installation.');
      }
      permissions[name as PermissionName] = level;
    }
    // An empty list, as none, means every repository of the installation.
    const repositories = selected.size > 0 ? [...selected].sort() : 'all';
    const expiresAt = Date.now() + TOKEN_TTL_SECONDS * 1000;
    // The git side covers the repositories there are now: one made later is the REST side's only.
    const gitNames = repositories === 'all' ? names : repositories;
    const token =
      permissions.contents && gitNames.length > 0
        ? await mintGitToken(gitNames, permissions.contents !== 'write')
        : `ghs_${randomBytes(30).toString('base64url')}`;
    forgetExpiredTokens();
    state.tokens[hashOf(token)] = { repositories, permissions, expiresAt };
    return created({
      token,
      expires_at: timestamp(expiresAt),
      permissions,
      repository_selection: repositories === 'all' ? 'all' : 'selected',
      ...(repositories === 'all'
        ? {}
        : { repositories: await Promise.all(repositories.map(describeRepository)) }),
    });
  };

  const listInstallationRepositories = async (call: Call): Promise<Answer> => {
    if (call.caller.kind !== 'installation') {
      throw new GitHubError(
        403,
        'You must authenticate with an installation access token in order to list repositories for an installation.',
      );
    }
    const { repositories } = call.caller.token;
    const names = await repositoriesOf(options.git.root, org);
    const covered = repositories === 'all' ? names : names.filter((name) => repositories.includes(name));
    const { items, headers } = paged(call, covered);
    return ok(
      {
        total_count: covered.length,
        repository_selection: repositories === 'all' ? 'all' : 'selected',
        repositories: await Promise.all(items.map(describeRepository)),
      },
      headers,
    );
  };

  // ---- pull requests

  /** An issue, or the issue a pull request is (they share the repository's numbers), opened by the caller. */
  const openIssue = (
    repository: Repository,
    call: Call,
    input: { title: string; body?: string | null },
    pull?: PullRequest,
  ): Issue => {
    const now = timestamp();
    const issue: Issue = {
      id: nextId(),
      number: repository.record.nextNumber++,
      title: input.title,
      body: input.body ?? null,
      state: 'open',
      user: loginOf(call.caller),
      labels: [],
      createdAt: now,
      updatedAt: now,
      closedAt: null,
      ...(pull ? { pull } : {}),
    };
    repository.record.issues.push(issue);
    return issue;
  };

  const createPull = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['pull_requests'], level: 'write', person: 'write' });
    const input = parse(newPullRequest, call.body);
    const heads = await branchHeads(repository.gitDir);
    // `branch` or `owner:branch`; a fork's branch cannot be here
    const [headOwner, headRef] = input.head.includes(':') ? input.head.split(/:(.*)/) : [org, input.head];
    const headSha = headOwner === org && headRef ? heads.get(headRef) : undefined;
    if (!headRef || !headSha)
      throw validationFailed({ resource: 'PullRequest', field: 'head', code: 'invalid' });
    const baseSha = heads.get(input.base);
    if (!baseSha) throw validationFailed({ resource: 'PullRequest', field: 'base', code: 'invalid' });
    const ahead = await git([
      '--git-dir',
      repository.gitDir,
      'rev-list',
      '--count',
      `${baseSha}..${headSha}`,
    ]);
    if (Number(ahead.stdout.trim()) === 0) {
      throw validationFailed({
        resource: 'PullRequest',
        code: 'custom',
        message: `No commits between ${input.base} and ${headRef}`,
      });
    }
    if (openPullFor(repository, headRef, input.base)) {
      throw validationFailed({
        resource: 'PullRequest',
        code: 'custom',
        message: `A pull request already exists for ${org}:${headRef}.`,
      });
    }
    const pull: PullRequest = {
      id: nextId(),
      head: { ref: headRef, sha: headSha },
      base: { ref: input.base, sha: baseSha },
      draft: input.draft ?? false,
      mergedAt: null,
      mergedBy: null,
      mergeCommitSha: null,
    };
    const issue = openIssue(repository, call, input, pull);
    const body = pullObject(repository, issue, pull, heads);
    call.announce(repository, 'pull_request', { action: 'opened', number: issue.number, pull_request: body });
    return { status: 201, body, headers: { location: body.url } };
  };

  const listPulls = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['pull_requests'], level: 'read', person: 'read' });
    const wanted = call.query.get('state') ?? 'open';
    const head = call.query.get('head');
    const base = call.query.get('base');
    const matching = repository.record.issues
      .flatMap((issue) => (issue.pull ? [{ issue, pull: issue.pull }] : []))
      .filter(
        ({ issue, pull }) =>
          (wanted === 'all' || issue.state === wanted) &&
          (!head || `${org}:${pull.head.ref}` === head) &&
          (!base || pull.base.ref === base),
      )
      .sort((a, b) => b.issue.number - a.issue.number);
    const { items, headers } = paged(call, matching);
    const heads = await branchHeads(repository.gitDir);
    return ok(
      items.map(({ issue, pull }) => pullObject(repository, issue, pull, heads)),
      headers,
    );
  };

  const getPull = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['pull_requests'], level: 'read', person: 'read' });
    const { issue, pull } = pullNumbered(repository, call.params.pull_number);
    const heads = await branchHeads(repository.gitDir);
    const head = heads.get(pull.head.ref);
    const base = heads.get(pull.base.ref);
    const mergeable =
      issue.state !== 'open' ? null : !!head && !!base && !!(await mergedTree(repository.gitDir, base, head));
    return ok(pullObject(repository, issue, pull, heads, mergeable));
  };

  const updatePull = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['pull_requests'], level: 'write', person: 'write' });
    const { issue, pull } = pullNumbered(repository, call.params.pull_number);
    const input = parse(pullRequestUpdate, call.body);
    const heads = await branchHeads(repository.gitDir);
    // everything is checked before anything changes
    const base = input.base !== undefined && input.base !== pull.base.ref ? input.base : undefined;
    const baseSha = base === undefined ? undefined : heads.get(base);
    if (base !== undefined && !baseSha) {
      throw validationFailed({ resource: 'PullRequest', field: 'base', code: 'invalid' });
    }
    const closing = input.state === 'closed' && issue.state === 'open';
    const reopening = input.state === 'open' && issue.state === 'closed';
    if (reopening) {
      const cannot = (why: string) =>
        validationFailed({
          resource: 'PullRequest',
          field: 'state',
          code: 'custom',
          message: `state cannot be changed. ${why}`,
        });
      if (pull.mergedAt) throw cannot('The pull request has been merged.');
      if (!heads.has(pull.head.ref)) throw cannot(`The ${pull.head.ref} branch has been deleted.`);
      if (openPullFor(repository, pull.head.ref, base ?? pull.base.ref)) {
        throw cannot(`A pull request already exists for ${org}:${pull.head.ref}.`);
      }
    }
    const changes: Record<string, unknown> = {};
    if (input.title !== undefined && input.title !== issue.title) {
      changes.title = { from: issue.title };
      issue.title = input.title;
    }
    if (input.body !== undefined && (input.body ?? null) !== issue.body) {
      changes.body = { from: issue.body };
      issue.body = input.body ?? null;
    }
    if (base !== undefined && baseSha) {
      changes.base = { ref: { from: pull.base.ref }, sha: { from: pull.base.sha } };
      pull.base = { ref: base, sha: baseSha };
    }
    const now = timestamp();
    if (closing) {
      // a closed pull request keeps the shas it had
      pull.head.sha = heads.get(pull.head.ref) ?? pull.head.sha;
      pull.base.sha = heads.get(pull.base.ref) ?? pull.base.sha;
      issue.state = 'closed';
      issue.closedAt = now;
    } else if (reopening) {
      issue.state = 'open';
      issue.closedAt = null;
    }
    const edited = Object.keys(changes).length > 0;
    if (edited || closing || reopening) issue.updatedAt = now;
    const body = pullObject(repository, issue, pull, heads);
    if (edited) {
      call.announce(repository, 'pull_request', {
        action: 'edited',
        number: issue.number,
        changes,
        pull_request: body,
      });
    }
    if (closing || reopening) {
      const action = closing ? 'closed' : 'reopened';
      call.announce(repository, 'pull_request', { action, number: issue.number, pull_request: body });
    }
    return ok(body);
  };

  /** A merge commit of the head on the base branch, made with git in the bare repository, as GitHub makes it. */
  const mergePull = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['contents'], level: 'write', person: 'write' });
    const { issue, pull } = pullNumbered(repository, call.params.pull_number);
    const input = parse(mergeRequest, call.body);
    if (input.merge_method === 'squash' || input.merge_method === 'rebase') {
      const method = input.merge_method === 'squash' ? 'Squash' : 'Rebase';
      throw new GitHubError(405, `${method} merges are not allowed on this repository.`);
    }
    if (issue.state !== 'open') throw notMergeable();
    const heads = await branchHeads(repository.gitDir);
    const headSha = heads.get(pull.head.ref);
    const baseSha = heads.get(pull.base.ref);
    if (!headSha || !baseSha) throw notMergeable();
    if (input.sha && input.sha !== headSha) {
      throw new GitHubError(409, 'Head branch was modified. Review and try the merge again.');
    }
    const tree = await mergedTree(repository.gitDir, baseSha, headSha);
    if (!tree) throw notMergeable();
    const login = loginOf(call.caller);
    const id = call.caller.kind === 'user' ? call.caller.person.id : BOT_ID;
    const title = input.commit_title ?? `Merge pull request #${issue.number} from ${org}/${pull.head.ref}`;
    const { stdout } = await git(
      [
        ...['--git-dir', repository.gitDir, 'commit-tree', tree, '-p', baseSha, '-p', headSha],
        ...['-m', title, '-m', input.commit_message ?? issue.title],
      ],
      {
        GIT_AUTHOR_NAME: login,
        GIT_AUTHOR_EMAIL: `${id}+${login}@users.noreply.github.com`,
        GIT_COMMITTER_NAME: 'GitHub',
        GIT_COMMITTER_EMAIL: 'noreply@github.com',
      },
    );
    const sha = stdout.trim();
    // only over the base it merged into: a push in between is not lost
    await git([
      '--git-dir',
      repository.gitDir,
      'update-ref',
      `refs/heads/${pull.base.ref}`,
      sha,
      baseSha,
    ]).catch(() => {
      throw new GitHubError(405, 'Base branch was modified. Review and try the merge again.');
    });
    const now = timestamp();
    pull.head.sha = headSha;
    pull.base.sha = baseSha;
    pull.mergedAt = now;
    pull.mergedBy = login;
    pull.mergeCommitSha = sha;
    issue.state = 'closed';
    issue.closedAt = now;
    issue.updatedAt = now;
    call.announce(repository, 'pull_request', {
      action: 'closed',
      number: issue.number,
      pull_request: pullObject(repository, issue, pull, heads),
    });
    return ok({ sha, merged: true, message: 'Pull Request successfully merged' });
  };

  // ---- issues, comments and labels

  /** Labels the repository does not have yet are made, as GitHub makes them when they are first used. */
  const addLabels = (repository: Repository, issue: Issue, names: string[]) => {
    const added = names.filter((name) => !issue.labels.includes(name));
    for (const name of added) {
      if (!repository.record.labels.some((label) => label.name === name)) {
        repository.record.labels.push({ id: nextId(), name, color: 'ededed' });
      }
      issue.labels.push(name);
    }
    return added;
  };

  /** `labeled` for each label added: of `pull_request` for a pull request, of `issues` for an issue. */
  const announceLabels = async (call: Call, repository: Repository, issue: Issue, added: string[]) => {
    if (added.length === 0) return;
    const fields = issue.pull
      ? {
          number: issue.number,
          pull_request: pullObject(repository, issue, issue.pull, await branchHeads(repository.gitDir)),
        }
      : { issue: issueObject(repository, issue) };
    for (const name of added) {
      call.announce(repository, issue.pull ? 'pull_request' : 'issues', {
        action: 'labeled',
        ...fields,
        label: labelObject(repository, name),
      });
    }
  };

  const createIssue = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call, { app: ['issues'], level: 'write', person: 'read' });
    const input = parse(newIssue, call.body);
    const issue = openIssue(repository, call, input);
    // GitHub drops the labels of someone who may not label, rather than refusing the issue
    const mayLabel =
      call.caller.kind === 'installation' ||
      (call.caller.kind === 'user' && atLeast(call.caller.person.permission, 'write'));
    const added = mayLabel ? addLabels(repository, issue, labelNames(input.labels ?? [])) : [];
    call.announce(repository, 'issues', { action: 'opened', issue: issueObject(repository, issue) });
    await announceLabels(call, repository, issue, added);
    return created(issueObject(repository, issue));
  };

  const getIssue = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call);
    const issue = issueNumbered(repository, call.params.issue_number);
    authorize(call.caller, needOn(issue, 'read', 'read'));
    return ok(issueObject(repository, issue));
  };

  const createComment = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call);
    const issue = issueNumbered(repository, call.params.issue_number);
    authorize(call.caller, needOn(issue, 'write', 'read'));
    const input = parse(commentBody, call.body);
    const now = timestamp();
    const comment: Comment = {
      id: nextId(),
      issueNumber: issue.number,
      body: input.body,
      user: loginOf(call.caller),
      createdAt: now,
      updatedAt: now,
    };
    repository.record.comments.push(comment);
    const body = commentObject(repository, issue, comment);
    call.announce(repository, 'issue_comment', {
      action: 'created',
      issue: issueObject(repository, issue),
      comment: body,
    });
    return created(body);
  };

  const listComments = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call);
    const issue = issueNumbered(repository, call.params.issue_number);
    authorize(call.caller, needOn(issue, 'read', 'read'));
    const { items, headers } = paged(call, commentsOn(repository, issue));
    return ok(
      items.map((comment) => commentObject(repository, issue, comment)),
      headers,
    );
  };

  const updateComment = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call);
    const comment = repository.record.comments.find(
      (candidate) => String(candidate.id) === call.params.comment_id,
    );
    if (!comment) throw notFound();
    const issue = issueNumbered(repository, String(comment.issueNumber));
    // a person edits their own comments, and with write access anyone's
    const own = comment.user === loginOf(call.caller);
    authorize(call.caller, needOn(issue, 'write', own ? 'read' : 'write'));
    const input = parse(commentBody, call.body);
    const from = comment.body;
    comment.body = input.body;
    comment.updatedAt = timestamp();
    const body = commentObject(repository, issue, comment);
    call.announce(repository, 'issue_comment', {
      action: 'edited',
      changes: { body: { from } },
      issue: issueObject(repository, issue),
      comment: body,
    });
    return ok(body);
  };

  const labelIssue = async (call: Call): Promise<Answer> => {
    const repository = await repositoryFor(call);
    const issue = issueNumbered(repository, call.params.issue_number);
    authorize(call.caller, needOn(issue, 'write', 'write'));
    const input = parse(labelsToAdd, call.body);
    const added = addLabels(repository, issue, labelNames(Array.isArray(input) ? input : input.labels));
    if (added.length > 0) issue.updatedAt = timestamp();
    await announceLabels(call, repository, issue, added);
    return ok(issue.labels.map((name) => labelObject(repository, name)));
  };

  // ---- the local control routes

  const createPerson = ({ body }: { body: unknown }): Answer => {
    const input = parse(newPerson, body);
    if (personByLogin(input.login) || input.login === org) {
      throw validationFailed({ resource: 'User', field: 'login', code: 'already_exists' });
    }
    const token = `ghp_${randomBytes(30).toString('base64url')}`;
    const person: Person = {
      login: input.login,
      id: state.nextUserId++,
      permission: input.permission ?? 'read',
      tokenHash: hashOf(token),
    };
    state.people.push(person);
    return created({ login: person.login, id: person.id, permission: person.permission, token });
  };

  // ---- webhooks

  const closing = new AbortController();
  /** One delivery after another, in the order of the changes. */
  let sending: Promise<void> = Promise.resolve();

  const sign = (algorithm: 'sha1' | 'sha256', body: string) =>
    createHmac(algorithm, options.webhook.secret).update(body).digest('hex');

  /** POSTs the request to the webhook URL and records the attempt with its answer. */
  const attempt = async (
    delivery: Pick<Delivery, 'guid' | 'event' | 'action' | 'repository_id' | 'redelivery' | 'request'>,
  ) => {
    const target = webhookUrl;
    if (!target) return;
    const started = Date.now();
    let status: string;
    let statusCode = 0;
    let response: Delivery['response'] = { headers: null, payload: null };
    try {
      const answer = await fetch(target, {
        method: 'POST',
        headers: delivery.request.headers,
        body: JSON.stringify(delivery.request.payload),
        signal: AbortSignal.any([AbortSignal.timeout(DELIVERY_TIMEOUT_MS), closing.signal]),
      });
      statusCode = answer.status;
      response = { headers: Object.fromEntries(answer.headers), payload: await answer.text() };
      status = answer.ok ? 'OK' : `Invalid HTTP Response: ${answer.status}`;
    } catch (err) {
      status = (err as Error).name === 'TimeoutError' ? 'timed out' : 'failed to connect to host';
    }
    state.deliveries = state.deliveries.filter(
      (kept) => Date.parse(kept.delivered_at) > Date.now() - DELIVERIES_KEPT_MS,
    );
    state.deliveries.push({
      ...delivery,
      id: nextId(),
      delivered_at: timestamp(started),
      duration: (Date.now() - started) / 1000,
      status,
      status_code: statusCode,
      installation_id: installationId,
      url: target,
      response,
    });
    if (status !== 'OK') log(`GitHub stand-in: ${delivery.event} ${delivery.action} to ${target}: ${status}`);
  };

  const deliver = (delivery: Parameters<typeof attempt>[0]) => {
    sending = sending.then(() => attempt(delivery));
  };

  /** A delivery's request as GitHub makes it: its headers, the signatures of its body among them. */
  const requestFor = (event: string, guid: string, payload: Record<string, unknown>): Delivery['request'] => {
    const body = JSON.stringify(payload);
    return {
      headers: {
        accept: '*/*',
        'content-type': 'application/json',
        'user-agent': 'GitHub-Hookshot/local',
        'x-github-delivery': guid,
        'x-github-event': event,
        'x-github-hook-installation-target-id': String(app.id),
        'x-github-hook-installation-target-type': 'integration',
        'x-hub-signature': `sha1=${sign('sha1', body)}`,
        'x-hub-signature-256': `sha256=${sign('sha256', body)}`,
      },
      payload,
    };
  };

  // ---- the routes

  const restRoute = (
    audience: Audience,
    method: string,
    template: string,
    docs: string,
    handle: Handler,
  ): Route => ({
    method,
    pattern: compile(template),
    docs,
    audience,
    handle,
  });
  const routes: Route[] = [
    restRoute('app', 'GET', '/app', 'apps/apps#get-the-authenticated-app', () => ok(appObject())),
    restRoute(
      'app',
      'GET',
      '/app/installations',
      'apps/apps#list-installations-for-the-authenticated-app',
      () => ok([installationObject()]),
    ),
    restRoute(
      'app',
      'GET',
      '/app/installations/{installation_id}',
      'apps/apps#get-an-installation-for-the-authenticated-app',
      (call) => {
        if (call.params.installation_id !== String(installationId)) throw notFound();
        return ok(installationObject());
      },
    ),
    restRoute(
      'app',
      'POST',
      '/app/installations/{installation_id}/access_tokens',
      'apps/apps#create-an-installation-access-token-for-an-app',
      createAccessToken,
    ),
    restRoute(
      'app',
      'GET',
      '/repos/{owner}/{repo}/installation',
      'apps/apps#get-a-repository-installation-for-the-authenticated-app',
      async (call) => {
        const { owner, repo = '' } = call.params;
        if (owner !== org || !(await repositoriesOf(options.git.root, org)).includes(repo)) throw notFound();
        return ok(installationObject());
      },
    ),
    restRoute(
      'token',
      'GET',
      '/installation/repositories',
      'apps/installations#list-repositories-accessible-to-the-app-installation',
      listInstallationRepositories,
    ),
    restRoute('token', 'GET', '/user', 'users/users#get-the-authenticated-user', (call) => {
      if (call.caller.kind !== 'user') throw notAccessibleByIntegration();
      return ok({ ...actorObject(call.caller.person.login), name: null, email: null });
    }),
    restRoute('token', 'GET', '/repos/{owner}/{repo}', 'repos/repos#get-a-repository', async (call) => {
      const repository = await repositoryFor(call, { app: ['metadata'], level: 'read', person: 'read' });
      return ok(repositoryObject(repository.name, repository.defaultBranch));
    }),
    restRoute(
      'token',
      'POST',
      '/repos/{owner}/{repo}/pulls',
      'pulls/pulls#create-a-pull-request',
      createPull,
    ),
    restRoute('token', 'GET', '/repos/{owner}/{repo}/pulls', 'pulls/pulls#list-pull-requests', listPulls),
    restRoute(
      'token',
      'GET',
      '/repos/{owner}/{repo}/pulls/{pull_number}',
      'pulls/pulls#get-a-pull-request',
      getPull,
    ),
    restRoute(
      'token',
      'PATCH',
      '/repos/{owner}/{repo}/pulls/{pull_number}',
      'pulls/pulls#update-a-pull-request',
      updatePull,
    ),
    restRoute(
      'token',
      'PUT',
      '/repos/{owner}/{repo}/pulls/{pull_number}/merge',
      'pulls/pulls#merge-a-pull-request',
      mergePull,
    ),
    restRoute('token', 'POST', '/repos/{owner}/{repo}/issues', 'issues/issues#create-an-issue', createIssue),
    restRoute(
      'token',
      'GET',
      '/repos/{owner}/{repo}/issues/{issue_number}',
      'issues/issues#get-an-issue',
      getIssue,
    ),
    restRoute(
      'token',
      'POST',
      '/repos/{owner}/{repo}/issues/{issue_number}/comments',
      'issues/comments#create-an-issue-comment',
      createComment,
    ),
    restRoute(
      'token',
      'GET',
      '/repos/{owner}/{repo}/issues/{issue_number}/comments',
      'issues/comments#list-issue-comments',
      listComments,
    ),
    restRoute(
      'token',
      'PATCH',
      '/repos/{owner}/{repo}/issues/comments/{comment_id}',
      'issues/comments#update-an-issue-comment',
      updateComment,
    ),
    restRoute(
      'token',
      'POST',
      '/repos/{owner}/{repo}/issues/{issue_number}/labels',
      'issues/labels#add-labels-to-an-issue',
      labelIssue,
    ),
  ];

  /** Not GitHub's: for tests and people, without credentials, as the other local control routes. */
  const controlRoutes: ControlRoute[] = [
    { method: 'POST', pattern: compile('/_local/users'), handle: createPerson },
    {
      method: 'GET',
      pattern: compile('/_local/deliveries'),
      handle: () => ok([...state.deliveries].reverse()),
    },
    {
      method: 'POST',
      pattern: compile('/_local/deliveries/{delivery_id}/redeliver'),
      handle: ({ params }) => {
        const delivery = state.deliveries.find((candidate) => String(candidate.id) === params.delivery_id);
        if (!delivery) throw notFound();
        const { guid, event, action, repository_id, request } = delivery;
        deliver({ guid, event, action, repository_id, request, redelivery: true });
        return { status: 202, body: {} };
      },
    },
  ];

  /** Changes are made one request at a time, so no two see the same state and both act on it. */
  let changing: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(change: () => Promise<T>): Promise<T> => {
    const result = changing.then(change);
    changing = result.catch(() => undefined);
    return result;
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };

  const sendError = (res: ServerResponse, err: GitHubError, documentation: string) =>
    send(
      res,
      err.status,
      {
        message: err.message,
        ...(err.details.errors ? { errors: err.details.errors } : {}),
        documentation_url: documentation,
        status: String(err.status),
      },
      err.details.headers,
    );

  /** The request's JSON body, if any. */
  const bodyOf = async (req: IncomingMessage): Promise<unknown> => {
    const raw = await readBody(req);
    try {
      return raw ? JSON.parse(raw) : undefined;
    } catch {
      throw new GitHubError(400, 'Problems parsing JSON');
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const requestUrl = new URL(req.url ?? '/', 'http://local');
    const control = matchRoute(controlRoutes, req.method, requestUrl.pathname);
    const matched = control ? undefined : matchRoute(routes, req.method, requestUrl.pathname);
    const documentation = matched ? `${DOCS}/${matched.route.docs}` : DOCS;
    const announcements: Announcement[] = [];
    try {
      if (control) {
        const { route, params } = control;
        const answer = await oneAtATime(async () => route.handle({ params, body: await bodyOf(req) }));
        return send(res, answer.status, answer.body, answer.headers);
      }
      if (!matched) throw notFound();
      const { route, params } = matched;
      const caller = await authenticate(req.headers.authorization);
      admit(caller, route.audience);
      const call: Call = {
        caller,
        params,
        query: requestUrl.searchParams,
        path: requestUrl.pathname,
        body: await bodyOf(req),
        announce: (repository, event, fields) =>
          announcements.push({
            event,
            action: fields.action,
            repositoryId: repository.id,
            payload: {
              ...fields,
              repository: repositoryObject(repository.name, repository.defaultBranch),
              organization: organizationObject(),
              installation: { id: installationId },
              sender: actorObject(loginOf(caller)),
            },
          }),
      };
      const answer =
        req.method === 'GET' ? await route.handle(call) : await oneAtATime(async () => route.handle(call));
      // GitHub answers first and delivers after
      res.once('finish', () => {
        for (const { event, action, repositoryId, payload } of announcements) {
          const guid = randomUUID();
          const request = requestFor(event, guid, payload);
          deliver({ guid, event, action, repository_id: repositoryId, redelivery: false, request });
        }
      });
      send(res, answer.status, answer.body, answer.headers);
    } catch (err) {
      if (!(err instanceof GitHubError)) throw err;
      sendError(res, err, documentation);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log(`GitHub stand-in: ${req.method} ${req.url} failed: ${err.stack ?? err.message}`);
      if (!res.headersSent) send(res, 500, { message: 'Server Error', documentation_url: DOCS });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  url = `http://${options.host}:${(server.address() as AddressInfo).port}`;

  return {
    url,
    setWebhookUrl: (target) => {
      webhookUrl = target;
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      // deliveries under way end as failed ones, and are recorded so
      closing.abort();
      await sending;
      if (options.persistPath) {
        forgetExpiredTokens();
        await saveState(options.persistPath, state);
      }
    },
  };
};
