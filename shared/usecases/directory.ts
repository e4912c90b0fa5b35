import { ForbiddenError, NotFoundError } from '../domain/errors.js';
import type { Account, Caller, Pod, Project } from '../domain/tenancy.js';
import type { Clock, DirectoryRepository } from '../ports.js';
import type { accountLimitsSchema, podRequestSchema, projectRequestSchema } from '../schemas/api.js';
import type * as z from '../zod.js';

/** Pods, projects and the account: read by every member of the account, written by account admins. */

export interface DirectoryDeps {
  directory: DirectoryRepository;
  clock: Clock;
}

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

export const getPod = async (deps: DirectoryDeps, caller: Caller, podId: string): Promise<Pod> => {
  const pod = await deps.directory.getPod(caller.accountId, podId);
  if (!pod) throw new NotFoundError('pod', podId);
  return pod;
};

export const listPods = (deps: DirectoryDeps, caller: Caller) => deps.directory.listPods(caller.accountId);

export const putPod = async (
  deps: DirectoryDeps,
  caller: Caller,
  podId: string,
  request: z.infer<typeof podRequestSchema>,
): Promise<Pod> => {
  requireAccountAdmin(caller);
  await ensureAccount(deps, caller);
  const pod: Pod = {
    ...request,
    accountId: caller.accountId,
    podId,
    updatedAt: deps.clock.now().toISOString(),
  };
  await deps.directory.putPod(pod);
  return pod;
};

export const getProject = async (
  deps: DirectoryDeps,
  caller: Caller,
  projectId: string,
): Promise<Project> => {
  const project = await deps.directory.getProject(caller.accountId, projectId);
  if (!project) throw new NotFoundError('project', projectId);
  return project;
};

export const listProjects = (deps: DirectoryDeps, caller: Caller) =>
  deps.directory.listProjects(caller.accountId);

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
