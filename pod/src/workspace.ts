import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ProcessResult, runProcess } from './processes.js';

/** HTTP Basic credentials for the run's repositories, from the Agent API. */
export interface GitAuth {
  username: string;
  password: string;
}

export interface Clone {
  /** the repository as the run names it (its clone URL) */
  url: string;
  /** the clone's folder */
  path: string;
  /** the commit it was checked out at: what the run's changes are measured against */
  base: string;
}

export interface FileChange {
  path: string;
  insertions: number;
  deletions: number;
}

export interface Changes {
  clone: Clone;
  files: FileChange[];
  diff: string;
}

/** The credential cannot read the repository (401, 403 or 404 from the server). */
export class RepoAccessError extends Error {
  constructor(
    readonly url: string,
    detail: string,
  ) {
    super(`the run's credential cannot read ${url}: ${detail}`);
  }
}

/** git refused; `tail` holds its last lines. */
export class GitError extends Error {
  constructor(
    message: string,
    readonly tail: string[],
  ) {
    super(`${message}${tail.length ? `: ${tail.slice(-5).join(' | ')}` : ''}`);
  }
}

const DENIED =
  /Authentication failed|could not read Username|returned error: (401|403|404)|not found|Repository not found/i;
/** A failed clone is tried again this many times when the server did not refuse it. */
const CLONE_ATTEMPTS = 3;

/**
 * The run's temporary folder: the clones, and a home of its own for git and the agent. git runs with
 * no user or system configuration and never prompts; the credential reaches it through the
 * environment of the runtime's own git commands only, so the agent (which runs git too) cannot push.
 */
export class Workspace {
  private readonly folders = new Set<string>();

  private constructor(
    readonly root: string,
    private readonly signal: AbortSignal,
    private readonly log: (line: string) => void,
  ) {}

  static async create(runId: string, signal: AbortSignal, log: (line: string) => void): Promise<Workspace> {
    const root = await mkdtemp(path.join(tmpdir(), `${runId}-`));
    await mkdir(path.join(root, 'home'));
    return new Workspace(root, signal, log);
  }

  /** A home of the run's own, for the agent and the hooks. */
  get home(): string {
    return path.join(this.root, 'home');
  }

  async clone(url: string, ref: string | undefined, branch: string, auth: GitAuth): Promise<Clone> {
    const folder = this.folderFor(url);
    for (let attempt = 1; ; attempt++) {
      const result = await this.git(this.root, ['clone', '--quiet', '--no-checkout', url, folder], auth);
      if (result.code === 0) break;
      const said = result.tail.join('\n');
      if (DENIED.test(said)) throw new RepoAccessError(url, result.tail.slice(-2).join(' ').trim());
      await rm(folder, { recursive: true, force: true });
      if (attempt >= CLONE_ATTEMPTS) throw new GitError(`cloning ${url} failed`, result.tail);
      this.log(`git: cloning ${url} failed; trying again`);
    }
    if (ref) {
      const checkout = await this.git(folder, ['checkout', '--quiet', ref]);
      if (checkout.code !== 0)
        throw new GitError(`${url} has no branch, tag or commit ${ref}`, checkout.tail);
    } else {
      await this.mustGit(folder, ['checkout', '--quiet']);
    }
    await this.mustGit(folder, ['checkout', '--quiet', '-b', branch]);
    const base = (await this.mustGit(folder, ['rev-parse', 'HEAD'])).stdout.trim();
    this.log(
      `git: cloned ${url}${ref ? ` at ${ref}` : ''} (${base.slice(0, 12)}) into ${path.basename(folder)}`,
    );
    return { url, path: folder, base };
  }

  /** The clone's state as `git status` tells it: what was changed, added or deleted, ignored files aside. */
  async status(clone: Clone): Promise<string> {
    return (await this.mustGit(clone.path, ['status', '--porcelain', '--untracked-files=all'])).stdout;
  }

  /**
   * What the agent changed in a clone since it was checked out, staged: anything it committed itself
   * is folded back into the index, so the run pushes one commit of its own. Undefined: nothing.
   */
  async changes(clone: Clone): Promise<Changes | undefined> {
    await this.mustGit(clone.path, ['add', '--all']);
    await this.mustGit(clone.path, ['reset', '--quiet', '--soft', clone.base]);
    const numstat = await this.mustGit(clone.path, ['diff', '--cached', '--numstat', clone.base]);
    const files = numstat.stdout
      .split('\n')
      .filter(Boolean)
      .map((line): FileChange => {
        const [insertions = '0', deletions = '0', ...rest] = line.split('\t');
        // binary files count as `-`
        return {
          path: rest.join('\t'),
          insertions: Number(insertions) || 0,
          deletions: Number(deletions) || 0,
        };
      });
    if (files.length === 0) return undefined;
    const diff = (await this.mustGit(clone.path, ['diff', '--cached', clone.base])).stdout;
    return { clone, files, diff };
  }

  /** Commits what is staged; returns the commit's SHA. */
  async commit(clone: Clone, message: string[], author: { name: string; email: string }): Promise<string> {
    const identity = {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
    };
    const paragraphs = message.flatMap((paragraph) => ['-m', paragraph]);
    await this.mustGit(clone.path, ['commit', '--quiet', '--no-verify', ...paragraphs], undefined, identity);
    return (await this.mustGit(clone.path, ['rev-parse', 'HEAD'])).stdout.trim();
  }

  async push(clone: Clone, branch: string, auth: GitAuth): Promise<void> {
    const result = await this.git(
      clone.path,
      ['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`],
      auth,
    );
    if (result.code === 0) return;
    if (DENIED.test(result.tail.join('\n'))) {
      throw new RepoAccessError(clone.url, result.tail.slice(-2).join(' ').trim());
    }
    throw new GitError(`pushing ${branch} to ${clone.url} failed`, result.tail);
  }

  async remove(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  /** The repository's name, numbered when an earlier clone took it; never `home`. */
  private folderFor(url: string): string {
    const name = (url.replace(/\/+$/, '').split(/[/:]/).pop() ?? '').replace(/\.git$/, '');
    const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '') || 'repo';
    for (let n = 1; ; n++) {
      const candidate = n === 1 ? safe : `${safe}-${n}`;
      if (candidate !== 'home' && !this.folders.has(candidate)) {
        this.folders.add(candidate);
        return path.join(this.root, candidate);
      }
    }
  }

  private async mustGit(cwd: string, args: string[], auth?: GitAuth, env: Record<string, string> = {}) {
    const result = await this.git(cwd, args, auth, env);
    if (result.code !== 0) throw new GitError(`git ${args[0]} failed`, result.tail);
    return result;
  }

  private git(
    cwd: string,
    args: string[],
    auth?: GitAuth,
    env: Record<string, string> = {},
  ): Promise<ProcessResult> {
    const header: Record<string, string> = auth
      ? {
          GIT_CONFIG_COUNT: '1',
          GIT_CONFIG_KEY_0: 'http.extraHeader',
          GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`,
        }
      : {};
    return runProcess('git', args, {
      cwd,
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: this.home,
        LANG: 'C.UTF-8',
        GIT_TERMINAL_PROMPT: '0',
        GIT_CONFIG_NOSYSTEM: '1',
        ...header,
        ...env,
      },
      signal: this.signal,
      timeoutMs: 600_000,
      capture: true,
      onLine: (line, stream) => {
        if (stream === 'stderr') this.log(`git: ${line}`);
      },
    });
  }
}
