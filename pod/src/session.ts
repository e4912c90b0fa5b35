import path from 'node:path';
import { runBranch } from '../../shared/domain/pull-request.js';
import type { ExitReason } from '../../shared/domain/run.js';
import type { GitCredential, PodRunConfig } from '../../shared/schemas/agent-events.js';
import type { Agent, AgentIo, AgentStats, AgentTask } from './agent.js';
import { RequestRejectedError } from './agent-api.js';
import { runProcess } from './processes.js';
import type { AgentEventInput } from './reporter.js';
import { type Changes, type Clone, GitError, RepoAccessError, Workspace } from './workspace.js';

/** What the runtime gives the run's session: reporting, control, the run's credentials and output. */
export interface RunContext {
  config: PodRunConfig;
  /** aborted when the backend says stop, the container is stopped, or the run is gone */
  signal: AbortSignal;
  /** the container's environment, where the task definition put the pod's secrets */
  env: Record<string, string | undefined>;
  emit(event: AgentEventInput): void;
  flush(): Promise<void>;
  /** Obeys the backend's latest control: returns on continue, waits while told to wait, throws on stop. */
  proceed(): Promise<void>;
  /** Sends a checkpoint at once, then waits for the backend to let the run go on. */
  checkpoint(name: string, summary: string, details?: string): Promise<void>;
  /** A git credential for the run's repositories, fresh from the Agent API; its password is masked. */
  gitCredential(): Promise<GitCredential>;
  stopHeartbeats(): void;
  stdout: NodeJS.WritableStream;
  log(line: string): void;
  warn(line: string): void;
}

/** How much of the diff a `commit` checkpoint carries in its details. */
export const DIFF_DETAILS_MAX_CHARS = 60_000;
const SUMMARY_MAX_CHARS = 4000;
const MESSAGE_MAX_CHARS = 4000;
const HOOK_TAIL_LINES = 20;

/** The branch a run's commit is pushed to. */
export const branchOf = (config: Pick<PodRunConfig, 'podId' | 'runId'>) =>
  runBranch(config.podId, config.runId);

/** A run that cannot go on: reported as its failed result. */
class RunFailure extends Error {
  constructor(
    readonly exitReason: ExitReason,
    message: string,
    readonly stats: AgentStats = {},
  ) {
    super(message);
  }
}

/**
 * One run in the sandbox. The runtime does what every agent needs and reports the phases: it clones
 * the run's repositories with the run's credential, runs the hooks, lets the agent plan (and, in
 * supervised mode, waits at the `plan` checkpoint), lets it work, then commits what it changed,
 * waits at the `commit` checkpoint, pushes the run's branch and reports the commit.
 */
export const runSession = async (ctx: RunContext, agent: Agent): Promise<void> => {
  const { config } = ctx;
  // the run's later phases are the control plane's: PR_RAISED when it opens the pull request,
  // COMPLETED when the run ends so
  const phase = (name: 'STARTED' | 'PLANNING' | 'EXECUTING' | 'COMMITTING' | 'FAILED') => {
    ctx.log(`pod: phase ${name}`);
    ctx.emit({ type: 'phase', phase: name });
  };
  const workspace = await Workspace.create(config.runId, ctx.signal, ctx.log);
  try {
    phase('STARTED');
    const env = hookEnvironment(ctx, workspace.home);
    if (config.hooks.postStart) await runHook(ctx, 'postStart', config.hooks.postStart, workspace.root, env);
    const clones = await cloneAll(ctx, workspace, env);
    // what the hooks left is no change of the agent's
    const afterHooks = await Promise.all(clones.map((clone) => workspace.status(clone)));

    await ctx.proceed();
    phase('PLANNING');
    let planned = false;
    const io: AgentIo = {
      signal: ctx.signal,
      emit: (event) => ctx.emit(event),
      planned: async (plan) => {
        if (planned) return;
        for (const [index, clone] of clones.entries()) {
          if ((await workspace.status(clone)) !== afterHooks[index]) {
            throw new RunFailure('error', `the agent changed ${clone.url} before its plan was approved`);
          }
        }
        if (config.checkpoints.includes('plan')) {
          ctx.log('pod: checkpoint plan');
          await ctx.checkpoint('plan', `Plan for ${config.itemId}`, plan);
        }
        await ctx.proceed();
        planned = true;
        phase('EXECUTING');
      },
      log: ctx.log,
      warn: ctx.warn,
      stdout: ctx.stdout,
      flush: ctx.flush,
      stopHeartbeats: ctx.stopHeartbeats,
    };
    const task: AgentTask = {
      config,
      cwd: clones[0]?.path ?? workspace.root,
      clones: clones.map(({ url, path }) => ({ url, path })),
      workspace: workspace.root,
      home: workspace.home,
      env: { ...env, ...modelProvider(ctx.env, config.secretVariables) },
    };
    const outcome = await agent(task, io);
    const stats = {
      ...(outcome.turns === undefined ? {} : { turns: outcome.turns }),
      ...(outcome.durationMs === undefined ? {} : { durationMs: Math.round(outcome.durationMs) }),
    };
    if (outcome.outcome === 'failed') throw new RunFailure(outcome.exitReason, outcome.message, stats);
    if (!planned) throw new RunFailure('error', 'the agent finished without reporting its plan');

    await ctx.proceed();
    phase('COMMITTING');
    const summary = outcome.summary.trim();
    const changed = (await Promise.all(clones.map((clone) => workspace.changes(clone)))).filter(
      (c): c is Changes => c !== undefined,
    );
    if (changed.length === 0) {
      ctx.log('pod: the agent changed nothing; there is no commit');
      ctx.emit({
        type: 'result',
        outcome: 'completed',
        message: cut(`No changes, no commit. ${summary}`, MESSAGE_MAX_CHARS),
        ...stats,
      });
      await ctx.flush();
      return;
    }
    const commits: { clone: Clone; sha: string }[] = [];
    for (const change of changed) {
      const sha = await workspace.commit(change.clone, commitMessage(config, summary), podAuthor(config));
      ctx.log(`pod: committed ${sha} in ${path.basename(change.clone.path)}`);
      commits.push({ clone: change.clone, sha });
    }
    if (config.checkpoints.includes('commit')) {
      ctx.log('pod: checkpoint commit');
      await ctx.checkpoint('commit', changeSummary(changed), diffDetails(changed));
    }
    await ctx.proceed();
    const credential = await ctx.gitCredential();
    const branch = branchOf(config);
    for (const { clone, sha } of commits) {
      await workspace.push(clone, branch, credential);
      ctx.log(`pod: pushed ${branch} (${sha}) to ${clone.url}`);
      ctx.emit({
        type: 'artifact',
        kind: 'commit',
        url: commitUrl(clone.url, sha),
        sha,
        branch,
        repo: clone.url,
      });
    }
    ctx.emit({ type: 'result', outcome: 'completed', message: cut(summary, MESSAGE_MAX_CHARS), ...stats });
    await ctx.flush();
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const failure = failureOf(err);
    if (!failure) throw err;
    ctx.warn(`pod: ${failure.message}`);
    phase('FAILED');
    ctx.emit({
      type: 'result',
      outcome: 'failed',
      exitReason: failure.exitReason,
      message: cut(failure.message, MESSAGE_MAX_CHARS),
      ...failure.stats,
    });
    await ctx.flush();
  } finally {
    await workspace.remove();
  }
};

const failureOf = (err: unknown): RunFailure | undefined => {
  if (err instanceof RunFailure) return err;
  // the Agent API refused the run a git credential
  if (err instanceof RequestRejectedError) {
    const reason = err.code === 'MissingRepoAccess' ? 'missing_repo_access' : 'error';
    return new RunFailure(reason, `no git credential for the run's repositories: ${err.said}`);
  }
  if (err instanceof RepoAccessError) return new RunFailure('missing_repo_access', err.message);
  if (err instanceof GitError) return new RunFailure('error', err.message);
  return undefined;
};

const cloneAll = async (
  ctx: RunContext,
  workspace: Workspace,
  env: Record<string, string>,
): Promise<Clone[]> => {
  const { config } = ctx;
  if (config.repos.length === 0) return [];
  const credential = await ctx.gitCredential();
  const clones: Clone[] = [];
  for (const url of config.repos) {
    ctx.log(`pod: cloning ${url}`);
    clones.push(await workspace.clone(url, config.ref, branchOf(config), credential));
  }
  if (config.hooks.postClone) {
    for (const clone of clones) await runHook(ctx, 'postClone', config.hooks.postClone, clone.path, env);
  }
  return clones;
};

/**
 * Where the container says the model is: the local model or the Anthropic API (a base URL, a key),
 * or Amazon Bedrock with the task role's credentials. The agent gets these; the hooks do not.
 */
export const MODEL_PROVIDER_VARIABLES = [
  'ANTHROPIC_BASE_URL',
  'ANTHROPIC_API_KEY',
  'CLAUDE_CODE_USE_BEDROCK',
  'ANTHROPIC_BEDROCK_BASE_URL',
  'AWS_REGION',
  'AWS_DEFAULT_REGION',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
] as const;

/** The provider variables whose values are credentials: masked like the pod's secrets. */
export const MODEL_PROVIDER_SECRETS = [
  'ANTHROPIC_API_KEY',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
] as const;

/** Bedrock is the container's default; a pod with an Anthropic API key among its secrets uses that instead. */
const modelProvider = (
  env: Record<string, string | undefined>,
  secretVariables: readonly string[],
): Record<string, string> => {
  const ownKey = secretVariables.includes('ANTHROPIC_API_KEY');
  return Object.fromEntries(
    MODEL_PROVIDER_VARIABLES.flatMap((name) =>
      env[name] === undefined || (ownKey && name === 'CLAUDE_CODE_USE_BEDROCK') ? [] : [[name, env[name]]],
    ),
  );
};

/**
 * The variables the hooks (and, with the model's, the agent) run with: a home of the run's own, the
 * pod's variables and its secrets. Nothing of the runtime's own (its launch code, the Agent API).
 */
const hookEnvironment = (ctx: RunContext, home: string): Record<string, string> => {
  const secrets: Record<string, string> = {};
  for (const name of ctx.config.secretVariables) {
    const value = ctx.env[name];
    if (value !== undefined) secrets[name] = value;
  }
  return {
    PATH: ctx.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    LANG: 'C.UTF-8',
    CI: 'true',
    ...ctx.config.env,
    ...secrets,
  };
};

const runHook = async (
  ctx: RunContext,
  name: 'postStart' | 'postClone',
  hook: { command: string; timeoutSeconds: number },
  cwd: string,
  env: Record<string, string>,
): Promise<void> => {
  const where = path.basename(cwd);
  ctx.log(`hook ${name} (${where}): ${hook.command}`);
  const result = await runProcess('sh', ['-c', hook.command], {
    cwd,
    env,
    signal: ctx.signal,
    timeoutMs: hook.timeoutSeconds * 1000,
    onLine: (line) => ctx.log(`hook ${name} (${where}): ${line}`),
  });
  if (result.code === 0 && !result.timedOut) return;
  const why = result.timedOut
    ? `timed out after ${hook.timeoutSeconds} s`
    : `exited with ${result.code ?? 'a signal'}`;
  const tail = result.tail.slice(-HOOK_TAIL_LINES).join('\n');
  throw new RunFailure('lifecycle_hook_failed', `hook ${name} ${why} in ${where}${tail ? `:\n${tail}` : ''}`);
};

/** The pod is the commit's author; the person who dispatched is its co-author when their email is known. */
const podAuthor = (config: PodRunConfig) => ({
  name: `pod ${config.podId}`,
  email: `${config.podId}@pods.invalid`,
});

const commitMessage = (config: PodRunConfig, summary: string): string[] => {
  const firstLine = config.prompt.trim().split('\n')[0] ?? '';
  const subject = cut(`${config.itemId}: ${firstLine}`, 72);
  const trailers = [`Run: ${config.runId}`];
  if (config.dispatcher.email)
    trailers.push(`Co-authored-by: ${config.dispatcher.userId} <${config.dispatcher.email}>`);
  return [subject, ...(summary ? [summary] : []), trailers.join('\n')];
};

const changeSummary = (changed: Changes[]): string => {
  const files = changed.flatMap((c) => c.files);
  const insertions = files.reduce((sum, f) => sum + f.insertions, 0);
  const deletions = files.reduce((sum, f) => sum + f.deletions, 0);
  const lines = changed.flatMap((c) =>
    c.files.map(
      (f) =>
        `${changed.length > 1 ? `${path.basename(c.clone.path)}/` : ''}${f.path} (+${f.insertions} -${f.deletions})`,
    ),
  );
  const head = `${files.length} file${files.length === 1 ? '' : 's'} changed (+${insertions} -${deletions})`;
  return cut([head, ...lines].join('\n'), SUMMARY_MAX_CHARS);
};

const diffDetails = (changed: Changes[]): string => {
  const diff = changed.map((c) => (changed.length > 1 ? `# ${c.clone.url}\n${c.diff}` : c.diff)).join('\n');
  if (diff.length <= DIFF_DETAILS_MAX_CHARS) return diff;
  return `${diff.slice(0, DIFF_DETAILS_MAX_CHARS)}\n… the diff is cut here: ${diff.length - DIFF_DETAILS_MAX_CHARS} more characters`;
};

/** Where a commit can be seen: the repository's web address (its clone URL without `.git`) and the SHA. */
export const commitUrl = (repoUrl: string, sha: string): string =>
  `${repoUrl.replace(/\/+$/, '').replace(/\.git$/, '')}/commit/${sha}`;

const cut = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);
