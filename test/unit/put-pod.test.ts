import { describe, expect, it, vi } from 'vitest';
import { ForbiddenError, ServiceUnavailableError, ValidationError } from '../../shared/domain/errors.js';
import type { Account, Caller, Pod } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, PodTaskDefinitions } from '../../shared/ports.js';
import { podRequestSchema } from '../../shared/schemas/api.js';
import { type PodDeps, putPod } from '../../shared/usecases/directory.js';

const admin: Caller = { accountId: 'acct-1', userId: 'root', accountRole: 'admin' };
const TASK_DEFINITION =
  'arn:aws:ecs:us-east-1:123456789012:task-definition/pod-acct-1-pod-1-0123456789abcdef:3';

const request = (over: Record<string, unknown> = {}) =>
  podRequestSchema.parse({ name: 'Pod', cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' }, ...over });

/** A directory that keeps what it is given, and a task definition registry answering `register`. */
const depsWith = (register: PodTaskDefinitions['register']) => {
  const pods: Pod[] = [];
  const accounts: Account[] = [];
  const directory = {
    getAccount: vi.fn(async () => accounts[0]),
    createAccount: vi.fn(async (account: Account) => {
      accounts.push(account);
      return account;
    }),
    putPod: vi.fn(async (pod: Pod) => void pods.push(pod)),
  } as unknown as DirectoryRepository;
  const deps: PodDeps = {
    directory,
    clock: { now: () => new Date('2026-01-01T00:00:00.000Z') },
    taskDefinitions: { register: vi.fn(register) },
  };
  return { deps, pods, accounts };
};

describe('putPod', () => {
  it('stores a pod with its own image and secrets with the task definition registered for them', async () => {
    const { deps, pods } = depsWith(async () => TASK_DEFINITION);
    const secrets = { NPM_TOKEN: 'execution-runs/pods/acct-1/npm' };

    const pod = await putPod(deps, admin, 'pod-1', request({ image: 'registry.example/pod:2', secrets }));

    expect(deps.taskDefinitions.register).toHaveBeenCalledWith(
      expect.objectContaining({
        accountId: 'acct-1',
        podId: 'pod-1',
        image: 'registry.example/pod:2',
        secrets,
      }),
    );
    expect(pod.taskDefinitionArn).toBe(TASK_DEFINITION);
    expect(pods).toEqual([pod]);
  });

  it('stores a pod the stack’s task definition serves without one', async () => {
    const { deps, pods } = depsWith(async () => undefined);
    const pod = await putPod(deps, admin, 'pod-1', request());
    expect(pod).not.toHaveProperty('taskDefinitionArn');
    expect(pods).toEqual([pod]);
  });

  it('writes nothing, not even the account, and answers 503 when the registration fails', async () => {
    const { deps, pods, accounts } = depsWith(async () => {
      throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    });

    const saving = putPod(deps, admin, 'pod-1', request({ image: 'registry.example/pod:2' }));

    await expect(saving).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(saving).rejects.toMatchObject({
      message: expect.stringContaining('pod pod-1 was not saved'),
      details: { podId: 'pod-1', cause: 'ThrottlingException' },
    });
    expect(pods).toEqual([]);
    expect(accounts).toEqual([]);
  });

  it('refuses a Claude Code pod naming a model the deployment does not let pods use', async () => {
    const { deps, pods } = depsWith(async () => undefined);
    const models = ['us.anthropic.claude-sonnet-4-5-20250929-v1:0'];
    const agent = (model: string) => ({ agent: { kind: 'claude-code', model } });

    const refused = putPod({ ...deps, podModels: models }, admin, 'pod-1', request(agent('claude-opus-4-1')));
    await expect(refused).rejects.toBeInstanceOf(ValidationError);
    await expect(refused).rejects.toMatchObject({
      message: expect.stringContaining('agent.model: claude-opus-4-1 is not one of the models'),
    });
    expect(pods).toEqual([]);

    await putPod({ ...deps, podModels: models }, admin, 'pod-1', request(agent(models[0] as string)));
    await putPod(deps, admin, 'pod-2', request(agent('claude-opus-4-1')));
    expect(pods.map((pod) => pod.podId)).toEqual(['pod-1', 'pod-2']);
  });

  it('refuses a secret of another account before registering anything', async () => {
    const { deps, pods } = depsWith(async () => TASK_DEFINITION);
    const secrets = { MINE: 'execution-runs/pods/acct-1/npm', THEIRS: 'execution-runs/pods/acct-2/npm' };

    const saving = putPod(deps, admin, 'pod-1', request({ secrets }));

    await expect(saving).rejects.toBeInstanceOf(ValidationError);
    await expect(saving).rejects.toMatchObject({
      message: expect.stringContaining('execution-runs/pods/acct-1/'),
      details: { secrets: { THEIRS: 'execution-runs/pods/acct-2/npm' } },
    });
    expect(deps.taskDefinitions.register).not.toHaveBeenCalled();
    expect(pods).toEqual([]);
  });

  it('refuses a caller who is not an account admin before registering anything', async () => {
    const { deps } = depsWith(async () => TASK_DEFINITION);
    const saving = putPod(deps, { ...admin, accountRole: 'member' }, 'pod-1', request({ image: 'x/y:1' }));
    await expect(saving).rejects.toBeInstanceOf(ForbiddenError);
    expect(deps.taskDefinitions.register).not.toHaveBeenCalled();
  });
});
