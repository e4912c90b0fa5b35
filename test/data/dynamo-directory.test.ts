import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoDirectory } from '../../shared/adapters/dynamo-directory.js';
import { NotFoundError, ValidationError } from '../../shared/domain/errors.js';
import type { Account, Pod, Project } from '../../shared/domain/tenancy.js';
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
  repos: ['org/repo'],
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
  model: 'model-x',
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 900,
  runBudgetMicroUsd: 5_000_000,
  updatedAt: '2026-01-01T00:00:00.000Z',
});

describe('DynamoDirectory accounts', () => {
  it('stores, replaces and reads an account', async () => {
    const accountId = uniqueId('acct');
    await directory.putAccount(account(accountId));
    expect(await directory.getAccount(accountId)).toEqual(account(accountId));

    await directory.putAccount({ ...account(accountId), paymentStatus: 'payment_required' });
    expect((await directory.getAccount(accountId))?.paymentStatus).toBe('payment_required');
    expect(await directory.getAccount(uniqueId('missing'))).toBeUndefined();
  });

  it('sets the limits of an existing account only', async () => {
    const accountId = uniqueId('acct');
    await directory.putAccount(account(accountId));
    const limits = { dailyCapMicroUsd: 10_000_000, monthlyCapMicroUsd: 200_000_000 };

    const updated = await directory.setAccountLimits(accountId, limits);

    expect(updated).toEqual({ ...account(accountId), limits, updatedAt: '2026-03-01T12:00:00.000Z' });
    expect(await directory.getAccount(accountId)).toEqual(updated);
    await expect(directory.setAccountLimits(uniqueId('missing'), limits)).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await directory.getAccount(uniqueId('missing'))).toBeUndefined();
  });

  it('refuses ids that could reach into another key', async () => {
    await expect(directory.putAccount(account('a#b'))).rejects.toBeInstanceOf(ValidationError);
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
    await directory.putAccount(account(accountId));
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
