import {
  ForbiddenError,
  NotConfiguredError,
  NotFoundError,
  ServiceUnavailableError,
  ValidationError,
} from '../domain/errors.js';
import {
  type Account,
  type Caller,
  canView,
  type Pod,
  type Project,
  projectAsSeenBy,
} from '../domain/tenancy.js';
import type { Clock, DirectoryRepository, GitHubApp, PodTaskDefinitions } from '../ports.js';
import type { accountLimitsSchema, podRequestSchema, projectRequestSchema } from '../schemas/api.js';
import { accountSecretsPrefix } from '../schemas/pod.js';
import type * as z from '../zod.js';
import { viewableProject } from './runs.js';

/** Pods, projects and the account: read by every member of the account, written by account admins. */

export interface DirectoryDeps {
  directory: DirectoryRepository;
  clock: Clock;
}

/** Saving a pod may register its own task definition first. */
export interface PodDeps extends DirectoryDeps {
  taskDefinitions: PodTaskDefinitions;
  /** the models a Claude Code pod may name (the deployment's); undefined: any */
  podModels?: readonly string[];
}

/** A model the deployment cannot reach would fail every run at its first model call: refused when saved. */
const requireDeployedModel = (deps: PodDeps, agent: Pod['agent']) => {
  if (agent.kind !== 'claude-code' || !deps.podModels || deps.podModels.includes(agent.model)) return;
  throw new ValidationError(
    `agent.model: ${agent.model} is not one of the models this deployment lets pods use (${deps.podModels.join(', ')})`,
    { model: agent.model, models: deps.podModels },
  );
};

const requireAccountAdmin = (caller: Caller) => {
  if (caller.accountRole !== 'admin') throw new ForbiddenError('this needs the account admin role');
};

/**
 * The account record comes into being with the first thing an admin configures. Two first requests
 * may race: the account is created only where none exists, so the loser never resets what the winner
 * set (its caps); it gets the winner's record.
 */
const ensureAccount = async (deps: DirectoryDeps, caller: Caller): Promise<Account> => {
  const existing = await deps.directory.getAccount(caller.accountId);
  if (existing) return existing;
  return deps.directory.createAccount({
    accountId: caller.accountId,
    name: caller.accountId,
    paymentStatus: 'active',
    limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
    updatedAt: deps.clock.now().toISOString(),
  });
};

export const getAccount = async (deps: DirectoryDeps, caller: Caller): Promise<Account> => {
  const account = await deps.directory.getAccount(caller.accountId);
  if (!account) throw new NotFoundError('account', caller.accountId);
  return account;
};

export const setAccountLimits = async (
  deps: DirectoryDeps,
  caller: Caller,
  limits: z.infer<typeof accountLimitsSchema>,
): Promise<Account> => {
  requireAccountAdmin(caller);
  await ensureAccount(deps, caller);
  return deps.directory.setAccountLimits(caller.accountId, limits);
};

/**
 * An account admin links the account to its installation of the deployment's GitHub App: its runs'
 * repositories must be among those the installation covers. The App reading the installation's
 * repositories is the proof that the installation is the App's; answered with them.
 */
export const linkGitHub = async (
  deps: DirectoryDeps & { github?: GitHubApp },
  caller: Caller,
  installationId: number,
): Promise<Account & { repositories: string[] }> => {
  requireAccountAdmin(caller);
  if (!deps.github) {
    throw new NotConfiguredError('this deployment has no GitHub App configured (see "Connecting GitHub")');
  }
  const installation = await deps.github.installation(installationId).catch((err: unknown) => {
    if (err instanceof NotFoundError) {
      throw new ValidationError(`installationId: the GitHub App has no installation ${installationId}`, {
        installationId,
      });
    }
    throw err;
  });
  await ensureAccount(deps, caller);
  const account = await deps.directory.setAccountGitHub(caller.accountId, {
    installationId,
    login: installation.login,
    linkedBy: caller.userId,
    linkedAt: deps.clock.now().toISOString(),
  });
  return { ...account, repositories: installation.repos };
};

export const getPod = async (deps: DirectoryDeps, caller: Caller, podId: string): Promise<Pod> => {
  const pod = await deps.directory.getPod(caller.accountId, podId);
  if (!pod) throw new NotFoundError('pod', podId);
  return pod;
};

export const listPods = (deps: DirectoryDeps, caller: Caller) => deps.directory.listPods(caller.accountId);

/** Only the account's own secrets: their names are under its prefix. */
const requireOwnSecrets = (caller: Caller, secrets: Record<string, string>) => {
  const prefix = accountSecretsPrefix(caller.accountId);
  const foreign = Object.entries(secrets).filter(([, name]) => !name.startsWith(prefix));
  if (foreign.length > 0) {
    throw new ValidationError(
      `secrets: a pod may name only its account's secrets, whose names begin with ${prefix} (not ${foreign.map(([, name]) => name).join(', ')})`,
      { secrets: Object.fromEntries(foreign) },
    );
  }
};

/**
 * A pod with its own image or secrets gets a task definition registered for them before anything
 * is written: a pod is never stored without the task definition it needs, and a failed
 * registration leaves the pod as it was (a 503: saving it again is safe).
 */
const registerTaskDefinition = async (deps: PodDeps, pod: Pod): Promise<string | undefined> => {
  try {
    return await deps.taskDefinitions.register(pod);
  } catch (err) {
    throw new ServiceUnavailableError(
      `pod ${pod.podId} was not saved: its task definition could not be registered; try again`,
      { podId: pod.podId, cause: err instanceof Error ? err.name : 'unknown' },
    );
  }
};

export const putPod = async (
  deps: PodDeps,
  caller: Caller,
  podId: string,
  request: z.infer<typeof podRequestSchema>,
): Promise<Pod> => {
  requireAccountAdmin(caller);
  requireOwnSecrets(caller, request.secrets);
  requireDeployedModel(deps, request.agent);
  const pod: Pod = {
    ...request,
    accountId: caller.accountId,
    podId,
    updatedAt: deps.clock.now().toISOString(),
  };
  const taskDefinitionArn = await registerTaskDefinition(deps, pod);
  await ensureAccount(deps, caller);
  const saved: Pod = taskDefinitionArn === undefined ? pod : { ...pod, taskDefinitionArn };
  await deps.directory.putPod(saved);
  return saved;
};

export const getProject = async (
  deps: DirectoryDeps,
  caller: Caller,
  projectId: string,
): Promise<Project> => {
  // a project the caller has no role in is not theirs to see, as another account's is not
  return projectAsSeenBy(await viewableProject(deps, caller, projectId), caller);
};

/** The projects the caller has a role in (every one for account admins), as they see them. */
export const listProjects = async (deps: Pick<DirectoryDeps, 'directory'>, caller: Caller) =>
  (await deps.directory.listProjects(caller.accountId))
    .filter((project) => canView(project, caller))
    .map((project) => projectAsSeenBy(project, caller));

export const putProject = async (
  deps: DirectoryDeps,
  caller: Caller,
  projectId: string,
  request: z.infer<typeof projectRequestSchema>,
): Promise<Project> => {
  requireAccountAdmin(caller);
  await ensureAccount(deps, caller);
  const project: Project = {
    ...request,
    accountId: caller.accountId,
    projectId,
    updatedAt: deps.clock.now().toISOString(),
  };
  await deps.directory.putProject(project);
  return project;
};
