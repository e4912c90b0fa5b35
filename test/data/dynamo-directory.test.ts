import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoDirectory } from '../../shared/adapters/dynamo-directory.js';
import { DynamoWebhookDeliveries } from '../../shared/adapters/dynamo-webhook-deliveries.js';
import { ConflictError, NotFoundError, ValidationError } from '../../shared/domain/errors.js';
import type { Account, Caller, Pod, Project } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository } from '../../shared/ports.js';
import { putPod, setAccountLimits } from '../../shared/usecases/directory.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
const clock = { now: () => new Date('2026-03-01T12:00:00.000Z') };
let directory: DynamoDirectory;
beforeAll(() => {
  directory = new DynamoDirectory(table.doc, table.tableName, clock);
});

const uniqueId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

const account = (accountId: string): Account => ({
  accountId,
  name: 'Acme',
  paymentStatus: 'active',
  limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
  updatedAt: '2026-01-01T00:00:00.000Z',
});

const project = (accountId: string, projectId: string): Project => ({
  accountId,
  projectId,
  name: `Project ${projectId}`,
  repos: ['https://git.example/org/repo.git'],
  members: [
    { userId: 'u1', role: 'admin', email: 'admin@example.com' },
    { userId: 'u2', role: 'viewer', email: undefined },
  ],
  updatedAt: '2026-01-01T00:00:00.000Z',
});

const pod = (accountId: string, podId: string): Pod => ({
  accountId,
  podId,
  name: `Pod ${podId}`,
  image: 'example/agent:1',
  cpu: 1024,
  memoryMiB: 2048,
  agent: { kind: 'claude-code', model: 'model-x', maxTurns: 40 },
  hooks: { postStart: { command: 'echo up', timeoutSeconds: 60 } },
  checkpoints: ['commit'],
  env: { CI: '1' },
  secrets: { API_KEY: 'execution-runs/pods/api-key' },
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 900,
  runBudgetMicroUsd: 5_000_000,
  updatedAt: '2026-01-01T00:00:00.000Z',
});

describe('DynamoDirectory accounts', () => {
  it('creates an account once: a later create answers the stored one and changes nothing', async () => {
    const accountId = uniqueId('acct');
    expect(await directory.createAccount(account(accountId))).toEqual(account(accountId));
    expect(await directory.getAccount(accountId)).toEqual(account(accountId));
    const limits = { dailyCapMicroUsd: 10_000_000, monthlyCapMicroUsd: 200_000_000 };
    const capped = await directory.setAccountLimits(accountId, limits);

    const again = await directory.createAccount({ ...account(accountId), name: 'Other' });

    expect(again).toEqual(capped);
    expect(await directory.getAccount(accountId)).toEqual(capped);
    expect(await directory.getAccount(uniqueId('missing'))).toBeUndefined();
  });

  it('answers every concurrent create with the one account that won', async () => {
    const accountId = uniqueId('acct');
    const created = await Promise.all(
      Array.from({ length: 10 }, (_, i) => directory.createAccount({ ...account(accountId), name: `n${i}` })),
    );
    const stored = await directory.getAccount(accountId);
    for (const answer of created) expect(answer).toEqual(stored);
  });

  it('sets the limits of an existing account only', async () => {
    const accountId = uniqueId('acct');
    await directory.createAccount(account(accountId));
    const limits = { dailyCapMicroUsd: 10_000_000, monthlyCapMicroUsd: 200_000_000 };

    const updated = await directory.setAccountLimits(accountId, limits);

    expect(updated).toEqual({ ...account(accountId), limits, updatedAt: '2026-03-01T12:00:00.000Z' });
    expect(await directory.getAccount(accountId)).toEqual(updated);
    await expect(directory.setAccountLimits(uniqueId('missing'), limits)).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await directory.getAccount(uniqueId('missing'))).toBeUndefined();
  });

  it('links a GitHub installation to one account at a time, found again by its id', async () => {
    const [first, second] = [uniqueId('acct'), uniqueId('acct')];
    await Promise.all([directory.createAccount(account(first)), directory.createAccount(account(second))]);
    const installationId = Math.floor(Math.random() * 1e9) + 1;
    const link = (by: string, id = installationId) => ({
      installationId: id,
      login: 'acme',
      linkedBy: by,
      linkedAt: 't',
    });
    expect(await directory.accountOfInstallation(installationId)).toBeUndefined();

    const linked = await directory.setAccountGitHub(first, link('u1'));
    expect(linked.github).toEqual(link('u1'));
    expect((await directory.accountOfInstallation(installationId))?.accountId).toBe(first);
    // linked again by the same account: fine
    await directory.setAccountGitHub(first, link('u2'));
    await expect(directory.setAccountGitHub(second, link('u3'))).rejects.toBeInstanceOf(ConflictError);
    expect((await directory.getAccount(second))?.github).toBeUndefined();

    // once the first account links another installation, the claim is free to take
    await directory.setAccountGitHub(first, link('u1', installationId + 1));
    expect(await directory.accountOfInstallation(installationId)).toBeUndefined();
    await directory.setAccountGitHub(second, link('u3'));
    expect((await directory.accountOfInstallation(installationId))?.accountId).toBe(second);
    await expect(
      directory.setAccountGitHub(uniqueId('missing'), link('u1', installationId + 2)),
    ).rejects.toBeInstanceOf(NotFoundError);
  });

  it('tells a webhook delivery the first time only, and again once its keep has passed', async () => {
    let now = new Date('2026-03-01T12:00:00.000Z');
    const deliveries = new DynamoWebhookDeliveries(table.doc, table.tableName, { now: () => now });
    const id = randomUUID();
    expect(await deliveries.firstTime(id, 60)).toBe(true);
    expect(await deliveries.firstTime(id, 60)).toBe(false);
    expect(await deliveries.firstTime(randomUUID(), 60)).toBe(true);
    now = new Date('2026-03-01T12:01:01.000Z');
    expect(await deliveries.firstTime(id, 60)).toBe(true);
  });

  it('refuses ids that could reach into another key', async () => {
    await expect(directory.createAccount(account('a#b'))).rejects.toBeInstanceOf(ValidationError);
    await expect(directory.getProject('a', 'b#c')).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('DynamoDirectory projects and pods', () => {
  it('stores and reads projects, dropping undefined member fields', async () => {
    const accountId = uniqueId('acct');
    await directory.putProject(project(accountId, 'web'));

    const read = await directory.getProject(accountId, 'web');
    expect(read).toEqual(project(accountId, 'web'));
    expect(read?.members[1]).not.toHaveProperty('email');
    expect(await directory.getProject(accountId, 'api')).toBeUndefined();
    expect(await directory.getProject(uniqueId('other'), 'web')).toBeUndefined();
  });

  it("lists one account's projects and pods, and nothing else in its partition", async () => {
    const accountId = uniqueId('acct');
    const other = uniqueId('other');
    await directory.createAccount(account(accountId));
    await Promise.all([
      ...['web', 'api', 'docs'].map((id) => directory.putProject(project(accountId, id))),
      ...['pod-1', 'pod-2'].map((id) => directory.putPod(pod(accountId, id))),
      directory.putProject(project(other, 'web')),
      directory.putPod(pod(other, 'pod-9')),
    ]);

    const projects = await directory.listProjects(accountId);
    expect(projects.map((p) => p.projectId).sort()).toEqual(['api', 'docs', 'web']);
    expect(projects.every((p) => p.accountId === accountId)).toBe(true);
    const pods = await directory.listPods(accountId);
    expect(pods.map((p) => p.podId).sort()).toEqual(['pod-1', 'pod-2']);
    expect(pods.find((p) => p.podId === 'pod-1')).toEqual(pod(accountId, 'pod-1'));
    expect(await directory.listPods(uniqueId('empty'))).toEqual([]);
  });

  it('replaces a pod on put', async () => {
    const accountId = uniqueId('acct');
    await directory.putPod(pod(accountId, 'pod-1'));
    await directory.putPod({ ...pod(accountId, 'pod-1'), enabled: false, cpu: 2048 });
    expect(await directory.getPod(accountId, 'pod-1')).toMatchObject({ enabled: false, cpu: 2048 });
    expect(await directory.getPod(accountId, 'pod-2')).toBeUndefined();
  });

  it('lists more projects than one query page holds', async () => {
    const accountId = uniqueId('acct');
    const big = (id: string) => ({ ...project(accountId, id), name: 'x'.repeat(100_000) });
    const ids = Array.from({ length: 14 }, (_, i) => `p${String(i).padStart(2, '0')}`);
    for (const id of ids) await directory.putProject(big(id));
    expect((await directory.listProjects(accountId)).map((p) => p.projectId)).toEqual(ids);
  });
});

describe('ensureAccount, as the first configuration of an account', () => {
  const admin: Caller = { accountId: '', userId: 'root', accountRole: 'admin' };
  const podRequest = {
    name: 'Pod',
    cpu: 1024 as const,
    memoryMiB: 2048,
    agent: { kind: 'demo' as const },
    hooks: {},
    checkpoints: [],
    draftPullRequests: false,
    env: {},
    secrets: {},
    enabled: true,
    maxDurationSeconds: 3600,
    approvalWindowSeconds: 900,
    runBudgetMicroUsd: 0,
  };

  it('never resets the caps a concurrent request set: the one that lost the race reads the winner', async () => {
    const caller = { ...admin, accountId: uniqueId('acct') };
    // putPod finds no account, then waits while another request creates it and sets its caps
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow: DirectoryRepository = Object.assign(Object.create(directory), {
      getAccount: async (accountId: string) => {
        const found = await directory.getAccount(accountId);
        await held;
        return found;
      },
    });
    const putting = putPod(
      { directory: slow, clock, taskDefinitions: { register: async () => undefined } },
      caller,
      'pod-1',
      podRequest,
    );
    const limits = { dailyCapMicroUsd: 1_000_000, monthlyCapMicroUsd: 20_000_000 };
    await setAccountLimits({ directory, clock }, caller, limits);
    release();
    await putting;

    expect((await directory.getAccount(caller.accountId))?.limits).toEqual(limits);
    expect(await directory.getPod(caller.accountId, 'pod-1')).toMatchObject({ name: 'Pod' });
  });
});
