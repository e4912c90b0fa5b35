import { RepoAccessDeniedError, ServiceUnavailableError } from '../domain/errors.js';
import type { GitCredential, GitCredentialRequest, GitCredentials } from '../ports.js';
import * as z from '../zod.js';

/** The user name the local git server takes with its tokens, as GitHub takes its installation tokens. */
export const LOCAL_GIT_USERNAME = 'x-access-token';

const mintedSchema = z.object({ token: z.string(), expiresAt: z.iso.datetime() });

/**
 * Git credentials from the local cloud's git server (infra/local/git-server.ts): a token it mints
 * through its control route for the repositories it serves, which are named by their clone URLs.
 */
export class LocalGitServerCredentials implements GitCredentials {
  private readonly base: string;

  constructor(
    serverUrl: string,
    private readonly http: typeof fetch = fetch,
  ) {
    this.base = serverUrl.replace(/\/+$/, '');
  }

  async mint(request: GitCredentialRequest): Promise<GitCredential> {
    const foreign = request.repos.filter((repo) => !repo.startsWith(`${this.base}/`));
    if (foreign.length > 0) {
      throw new RepoAccessDeniedError(`the local git server does not serve ${foreign.join(', ')}`, foreign);
    }
    const repos = request.repos.map((repo) => repo.slice(this.base.length + 1));
    const response = await this.http(`${this.base}/_local/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ repos, ttlSeconds: request.ttlSeconds }),
      // well within the Agent API's timeout, so a stuck server is a 503 rather than a timed-out function
      signal: AbortSignal.timeout(5000),
    }).catch((err: Error) => {
      throw new ServiceUnavailableError('the local git server cannot be reached; try again', {
        cause: err.message,
      });
    });
    const body = (await response.json().catch(() => ({}))) as { message?: string };
    // The server answers 404 for a repository it does not have: no access, as a GitHub App refuses one.
    if (response.status === 404) {
      throw new RepoAccessDeniedError(body.message ?? 'no such repository', request.repos);
    }
    const minted = mintedSchema.safeParse(body);
    if (!response.ok || !minted.success) {
      throw new Error(`the local git server answered ${response.status}: ${JSON.stringify(body)}`);
    }
    return {
      username: LOCAL_GIT_USERNAME,
      password: minted.data.token,
      expiresAt: minted.data.expiresAt,
      repos: request.repos,
    };
  }
}
