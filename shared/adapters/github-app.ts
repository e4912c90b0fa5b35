import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/core';
import { NotFoundError, RepoAccessDeniedError, ServiceUnavailableError } from '../domain/errors.js';
import type { PullRequest } from '../domain/run.js';
import type {
  GitCredential,
  GitCredentialRequest,
  GitCredentials,
  GitHubApp,
  GitHubInstallation,
  PullRequestRequest,
} from '../ports.js';
import * as z from '../zod.js';

/** The user name git takes with a GitHub App installation token. */
export const INSTALLATION_TOKEN_USERNAME = 'x-access-token';

export interface GitHubAppSettings {
  appId: number;
  /** the REST API: https://api.github.com, or https://<host>/api/v3 on GitHub Enterprise Server */
  apiUrl: string;
  /** where repositories are cloned from: https://github.com, or https://<host> */
  webUrl: string;
}

/** The App's keys, kept in one secret: the private key it signs its JWTs with, and the webhook secret. */
export const gitHubAppKeysSchema = z.object({
  privateKey: z
    .string()
    .check(z.minLength(1, 'the GitHub App secret has no privateKey yet (see "Connecting GitHub")')),
  webhookSecret: z.string().check(z.minLength(16)),
});
export type GitHubAppKeys = z.infer<typeof gitHubAppKeysSchema>;

/** The keys from their secret's JSON text, read once and checked, so a secret not yet filled in says so. */
export const gitHubAppKeys = (secret: () => Promise<string>): (() => Promise<GitHubAppKeys>) => {
  let keys: Promise<GitHubAppKeys> | undefined;
  return () => {
    keys ??= secret()
      .then((text) => {
        const parsed = gitHubAppKeysSchema.safeParse(JSON.parse(text));
        if (!parsed.success) {
          throw new Error(`the GitHub App secret: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
        }
        return parsed.data;
      })
      .catch((err: unknown) => {
        keys = undefined;
        throw err;
      });
    return keys;
  };
};

/** `owner` and `name` of a clone URL on the App's host (`<webUrl>/<owner>/<name>[.git]`), else undefined. */
export const repoOnHost = (webUrl: string, cloneUrl: string): { owner: string; name: string } | undefined => {
  const base = `${webUrl.replace(/\/+$/, '')}/`;
  if (!cloneUrl.startsWith(base)) return undefined;
  const [owner, name, ...rest] = cloneUrl
    .slice(base.length)
    .replace(/\.git$/, '')
    .split('/');
  return owner && name && rest.length === 0 ? { owner, name } : undefined;
};

interface GitHubPullRequest {
  html_url: string;
  number: number;
  state: string;
  draft?: boolean;
  merged?: boolean | null;
  merged_at?: string | null;
  merged_by?: { login: string } | null;
  closed_at?: string | null;
  head: { ref: string };
}

/** A GitHub pull request (from the REST API or a webhook) as the run records it. */
export const pullRequestFrom = (pr: GitHubPullRequest, repo: string): PullRequest => {
  const merged = pr.merged === true || Boolean(pr.merged_at);
  return {
    url: pr.html_url,
    number: pr.number,
    state: merged ? 'merged' : pr.state === 'closed' ? 'closed' : 'open',
    repo,
    branch: pr.head.ref,
    draft: pr.draft === true,
    ...(pr.merged_by ? { mergedBy: pr.merged_by.login } : {}),
    ...(merged && pr.merged_at ? { mergedAt: pr.merged_at } : {}),
    ...(!merged && pr.closed_at ? { closedAt: pr.closed_at } : {}),
  };
};

const statusOf = (err: unknown): number | undefined =>
  typeof (err as { status?: unknown }).status === 'number' ? (err as { status: number }).status : undefined;

/** GitHub down or throttling: worth another try; anything else is the caller's to see. */
const unavailable = (err: unknown, what: string): never => {
  const status = statusOf(err);
  if (status === undefined || status >= 500 || status === 429) {
    throw new ServiceUnavailableError(`GitHub could not be reached to ${what}; try again`, {
      cause: (err as Error).message,
    });
  }
  throw err;
};

/**
 * The deployment's GitHub App through octokit: installation tokens (the pods' git credentials, and
 * the control plane's own for pull requests), installations, pull requests. `@octokit/core` with the
 * App's auth and GitHub's REST routes by name: the few calls made here do not need the 100 KB of
 * generated methods `@octokit/rest` adds to every function that holds this adapter. The keys are
 * read when first needed, so a function that never calls GitHub never reads the secret.
 */
export class OctokitGitHubApp implements GitHubApp, GitCredentials {
  constructor(
    private readonly settings: GitHubAppSettings,
    private readonly keys: () => Promise<GitHubAppKeys>,
  ) {}

  /** One client per installation (and one for the App) for the container's life: each keeps its tokens. */
  private readonly clients = new Map<number | 'app', Octokit>();

  private async client(installationId?: number): Promise<Octokit> {
    const key = installationId ?? 'app';
    const kept = this.clients.get(key);
    if (kept) return kept;
    const { privateKey } = await this.keys();
    const client = new Octokit({
      baseUrl: this.settings.apiUrl,
      authStrategy: createAppAuth,
      auth: {
        appId: this.settings.appId,
        privateKey,
        ...(installationId === undefined ? {} : { installationId }),
      },
      request: { retries: 0 },
    });
    this.clients.set(key, client);
    return client;
  }

  private cloneUrl(fullName: string): string {
    return `${this.settings.webUrl.replace(/\/+$/, '')}/${fullName}.git`;
  }

  async installation(installationId: number): Promise<GitHubInstallation> {
    const app = await this.client();
    const { data } = await app
      .request('GET /app/installations/{installation_id}', { installation_id: installationId })
      .catch((err) => {
        if (statusOf(err) === 404) throw new NotFoundError('GitHub App installation', String(installationId));
        return unavailable(err, 'read the installation');
      });
    const installation = await this.client(installationId);
    const repos: string[] = [];
    for (let page = 1; ; page++) {
      const { data: listed } = await installation
        .request('GET /installation/repositories', { per_page: 100, page })
        .catch((err) => unavailable(err, "list the installation's repositories"));
      repos.push(...listed.repositories.map((repo) => this.cloneUrl(repo.full_name)));
      if (listed.repositories.length < 100 || repos.length >= listed.total_count) break;
    }
    const account = data.account as { login?: string; slug?: string } | null;
    return { installationId, login: account?.login ?? account?.slug ?? '', repos };
  }

  /**
   * An installation token for the run's repositories only, allowed `contents: write` and nothing
   * else: the pod can clone and push its branch, and cannot open a pull request or touch issues.
   * GitHub gives it an hour, which is within what the port allows.
   */
  async mint(request: GitCredentialRequest): Promise<GitCredential> {
    const { installationId } = request;
    if (installationId === undefined) {
      throw new RepoAccessDeniedError('the account has linked no GitHub App installation', request.repos);
    }
    const located = request.repos.map((repo) => ({ repo, at: repoOnHost(this.settings.webUrl, repo) }));
    const elsewhere = located.filter(({ at }) => !at).map(({ repo }) => repo);
    if (elsewhere.length > 0) {
      throw new RepoAccessDeniedError(`not on ${this.settings.webUrl}: ${elsewhere.join(', ')}`, elsewhere);
    }
    const app = await this.client();
    // the App's own client mints it, so it goes to the App's API host (GitHub Enterprise Server too)
    const token = (await app
      .auth({
        type: 'installation',
        installationId,
        repositoryNames: located.map(({ at }) => at?.name as string),
        permissions: { contents: 'write' },
        // a token of the run's own, never one the client keeps from another run with the same repositories
        refresh: true,
      })
      .catch((err: unknown) => {
        // GitHub answers 422 for a repository the installation does not cover, 404 for an installation gone
        if (statusOf(err) === 422 || statusOf(err) === 404) {
          throw new RepoAccessDeniedError(
            `the GitHub App installation ${installationId} does not cover ${request.repos.join(', ')}`,
            request.repos,
          );
        }
        return unavailable(err, 'mint a git credential');
      })) as { token: string; expiresAt: string };
    return {
      username: INSTALLATION_TOKEN_USERNAME,
      password: token.token,
      expiresAt: token.expiresAt,
      repos: request.repos,
    };
  }

  async pullRequest(installationId: number, pullRequest: PullRequest): Promise<PullRequest> {
    const repo = pullRequest.repo ?? '';
    const at = repoOnHost(this.settings.webUrl, repo);
    if (!at || pullRequest.number === undefined) {
      throw new NotFoundError('pull request', pullRequest.url);
    }
    const client = await this.client(installationId);
    const { data } = await client
      .request('GET /repos/{owner}/{repo}/pulls/{pull_number}', {
        owner: at.owner,
        repo: at.name,
        pull_number: pullRequest.number,
      })
      .catch((err) => {
        if (statusOf(err) === 404) throw new NotFoundError('pull request', pullRequest.url);
        return unavailable(err, 'read the pull request');
      });
    return pullRequestFrom(data as GitHubPullRequest, repo);
  }

  /** `owner` and `name` of a repository the App is asked about, or NotFound for one not on its host. */
  private located(repo: string): { owner: string; name: string } {
    const at = repoOnHost(this.settings.webUrl, repo);
    if (!at) throw new NotFoundError('repository', repo);
    return at;
  }

  async comment(installationId: number, repo: string, issueNumber: number, body: string): Promise<number> {
    const { owner, name } = this.located(repo);
    const client = await this.client(installationId);
    const { data } = await client
      .request('POST /repos/{owner}/{repo}/issues/{issue_number}/comments', {
        owner,
        repo: name,
        issue_number: issueNumber,
        body,
      })
      .catch((err) => {
        if (statusOf(err) === 404 || statusOf(err) === 410)
          throw new NotFoundError('issue', `${repo}#${issueNumber}`);
        return unavailable(err, 'comment on the issue');
      });
    return Number(data.id);
  }

  async editComment(installationId: number, repo: string, commentId: number, body: string): Promise<void> {
    const { owner, name } = this.located(repo);
    const client = await this.client(installationId);
    await client
      .request('PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}', {
        owner,
        repo: name,
        comment_id: commentId,
        body,
      })
      .catch((err) => {
        if (statusOf(err) === 404) throw new NotFoundError('issue comment', String(commentId));
        return unavailable(err, "edit the run's comment");
      });
  }

  async openPullRequest(request: PullRequestRequest): Promise<PullRequest> {
    const at = repoOnHost(this.settings.webUrl, request.repo);
    if (!at)
      throw new RepoAccessDeniedError(`not on ${this.settings.webUrl}: ${request.repo}`, [request.repo]);
    const client = await this.client(request.installationId);
    const { owner, name: repo } = at;
    const found = await client
      .request('GET /repos/{owner}/{repo}/pulls', {
        owner,
        repo,
        head: `${owner}:${request.branch}`,
        state: 'all',
        per_page: 10,
      })
      .catch((err) => unavailable(err, 'look for the pull request'));
    const existing = found.data.find((pr) => pr.state === 'open') ?? found.data[0];
    if (existing) return pullRequestFrom(existing as GitHubPullRequest, request.repo);
    const { data: repository } = await client
      .request('GET /repos/{owner}/{repo}', { owner, repo })
      .catch((err) => unavailable(err, 'read the repository'));
    const { data: created } = await client
      .request('POST /repos/{owner}/{repo}/pulls', {
        owner,
        repo,
        head: request.branch,
        base: repository.default_branch,
        title: request.title,
        body: request.body,
        draft: request.draft,
      })
      .catch((err) => unavailable(err, 'open the pull request'));
    return pullRequestFrom(created as GitHubPullRequest, request.repo);
  }
}
