import { randomUUID } from 'node:crypto';
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { ulid } from 'ulid';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoRunList } from '../../shared/adapters/dynamo-run-list.js';
import { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import { planBatch } from '../../shared/domain/agent-batch.js';
import { end, provision, raisePullRequests, settlePullRequest, stop } from '../../shared/domain/commands.js';
import { ConflictError, NotFoundError } from '../../shared/domain/errors.js';
import { newRunId } from '../../shared/domain/ids.js';
import {
  RUN_STATUSES,
  type Run,
  type RunSource,
  type RunStatus,
  type Transition,
  ZERO_COST,
} from '../../shared/domain/run.js';
import type { Pod } from '../../shared/domain/tenancy.js';
import type { AgentEvent, RunConfigSnapshot, RunListFilter } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';
import { recordBatch } from '../support/record-batch.js';

const table = useTestTable();
let repo: DynamoRunStore;
let list: DynamoRunList;
beforeAll(() => {
  repo = new DynamoRunStore(table.doc, table.tableName);
  list = new DynamoRunList(table.doc, table.tableName);
});

const uniqueId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

const makeRun = (over: Partial<Run> = {}, at = Date.now()): Run => ({
  history: [{ status: over.status ?? 'QUEUED', at: new Date(at).toISOString() }],
  runId: newRunId(at),
  accountId: 'acct-default',
  projectId: 'proj-1',
  itemId: 'item-1',
  podId: 'pod-a',
  mode: 'autopilot',
  status: 'QUEUED',
  source: 'api',
  attribution: 'user-1',
  repos: ['https://git.example/org/repo.git'],
  usage: {},
  cost: { ...ZERO_COST },
  createdAt: new Date(at).toISOString(),
  artifacts: [],
  attempt: 1,
  redriveCount: 0,
  lastSeq: 0,
  version: 1,
  updatedAt: new Date(at).toISOString(),
  ...over,
});

const pod = (accountId: string): Pod => ({
  accountId,
  podId: 'pod-a',
  name: 'Pod A',
  image: 'example/agent:1',
  cpu: 1024,
  memoryMiB: 2048,
  agent: { kind: 'claude-code', model: 'model-x' },
  hooks: { postClone: { command: 'npm ci', timeoutSeconds: 300 } },
  checkpoints: ['plan', 'commit'],
  env: { CI: '1' },
  secrets: {},
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 900,
  runBudgetMicroUsd: 0,
  updatedAt: '2026-01-01T00:00:00.000Z',
});

const snapshotOf = (run: Run, prompt = 'fix the bug'): RunConfigSnapshot => ({
  prompt,
  repos: run.repos,
  dispatcher: { userId: 'alice', email: 'alice@example.com' },
  pod: pod(run.accountId),
  request: { itemId: run.itemId, mode: run.mode, extra: undefined },
  demo: { steps: 3 },
});

const seed = async (over: Partial<Run> = {}, createdAt?: number): Promise<Run> => {
  const run = makeRun(over, createdAt);
  return (await repo.create(run, snapshotOf(run))).run;
};

/** Runs `fn` over `items` a few at a time: DynamoDB Local serves one JVM on two cores. */
const inBatches = async <T, R>(items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> => {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size)
    out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
};

const rawRunItem = async (runId: string) =>
  (
    await table.doc.send(
      new GetCommand({ TableName: table.tableName, Key: { pk: `RUN#${runId}`, sk: 'RUN' } }),
    )
  ).Item;

/** Every item of the run's partition under the prefix, through all the Query's pages. */
// biome-ignore lint/suspicious/noExplicitAny: the tests read whatever attributes an item has
type Item = Record<string, any>;
const itemsOf = async (runId: string, skPrefix: string) => {
  const items: Item[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await table.doc.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :sk)',
        ExpressionAttributeValues: { ':pk': `RUN#${runId}`, ':sk': skPrefix },
        ExclusiveStartKey: startKey,
      }),
    );
    items.push(...(page.Items ?? []));
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return items;
};

/** Makes the next TransactWriteItems fail as DynamoDB does when another writer holds one of its items. */
const conflictOnNextTransaction = () => {
  const send = table.doc.send.bind(table.doc);
  let armed = true;
  return vi.spyOn(table.doc, 'send').mockImplementation(((command: { constructor: { name: string } }) => {
    if (armed && command.constructor.name === 'TransactWriteCommand') {
      armed = false;
      const items = (command as unknown as { input: { TransactItems: unknown[] } }).input.TransactItems;
      throw new TransactionCanceledException({
        message: 'Transaction cancelled',
        $metadata: {},
        CancellationReasons: items.map((_, i) => ({ Code: i === 0 ? 'TransactionConflict' : 'None' })),
      });
    }
    return send(command as never);
  }) as never);
};

const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
const NOW = new Date('2026-01-01T00:10:00.000Z');
const scope = (run: Run) => ({ accountId: run.accountId, projectId: run.projectId, podId: run.podId });

const record = (runId: string, events: AgentEvent[]) => recordBatch(repo, runId, events, { now: NOW });

/** A transition straight to `to` (the store writes what it is given; the domain checks the table). */
const moveTo = (run: Run, to: RunStatus, patch: Transition['patch'] = {}): Transition => ({
  runId: run.runId,
  from: run.status,
  path: [to],
  at: NOW.toISOString(),
  patch,
  revokeCredentials: false,
});

describe('DynamoRunStore create and read', () => {
  it('stores a run and its config snapshot and reads both back', async () => {
    const run = makeRun({
      accountId: uniqueId('acct'),
      usage: {
        'vendor:model-1': {
          inputTokens: 10,
          outputTokens: 5,
          cacheReadTokens: 2,
          cacheWriteTokens: 1,
          costMicroUsd: 7,
        },
      },
      cost: { tokenUsd: 7, sandboxCpuUsd: 3, sandboxMemoryUsd: 2, feeUsd: 1, totalUsd: 13 },
      pullRequest: { url: 'https://example.com/pr/1', state: 'open' },
    });
    const { run: stored, created } = await repo.create(run, snapshotOf(run));

    expect(created).toBe(true);
    expect(stored).toEqual(run);
    expect(await repo.get(run.runId)).toEqual(run);
    const { request, ...rest } = snapshotOf(run);
    expect(await repo.getSnapshot(run.runId)).toEqual({
      ...rest,
      request: { itemId: run.itemId, mode: run.mode },
    });
    expect(await repo.get(newRunId())).toBeUndefined();
    expect(await repo.getSnapshot(newRunId())).toBeUndefined();
  });

  it('keeps the secrets out of every run it returns, and gives them only with getWithSecrets', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'PROVISIONING', taskArn: 'arn:task/1' });
    const parked = await repo.parkPodToken(run.runId, 'task-token-1');
    await repo.setLaunchCode(run.runId, 'code-hash');

    expect(parked.run).not.toHaveProperty('podTaskToken');
    expect(parked.secrets.podTaskToken).toBe('task-token-1');
    expect((await repo.getWithSecrets(run.runId))?.secrets).toEqual({
      podTaskToken: 'task-token-1',
      launchCodeHash: 'code-hash',
    });
    const read = await repo.get(run.runId);
    for (const secret of ['podTaskToken', 'agentTokenHash', 'launchCodeHash'])
      expect(read).not.toHaveProperty(secret);
    const listed = await list.list({ accountId: run.accountId, limit: 10 });
    expect(listed.items[0]).not.toHaveProperty('podTaskToken');

    await repo.clearPodToken(run.runId);
    await repo.clearPodToken(run.runId);
    expect((await repo.getWithSecrets(run.runId))?.secrets.podTaskToken).toBeUndefined();
    await expect(repo.setLaunchCode(newRunId(), 'h')).rejects.toBeInstanceOf(NotFoundError);
    await expect(repo.parkPodToken(newRunId(), 't')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses a second run with the same id', async () => {
    const run = await seed({ accountId: uniqueId('acct') });
    await expect(repo.create(run, snapshotOf(run))).rejects.toBeInstanceOf(ConflictError);
  });

  it('returns the run an idempotency key already created, without writing a second one', async () => {
    const accountId = uniqueId('acct');
    const first = makeRun({ accountId });
    const second = makeRun({ accountId, itemId: 'item-2' });
    await repo.create(first, snapshotOf(first, 'first prompt'), 'key-1');

    const again = await repo.create(second, snapshotOf(second, 'second prompt'), 'key-1');

    expect(again).toEqual({ run: first, created: false });
    expect(await repo.get(second.runId)).toBeUndefined();
    expect(await repo.getSnapshot(second.runId)).toBeUndefined();
    expect((await repo.getSnapshot(first.runId))?.prompt).toBe('first prompt');
    expect((await list.list({ accountId, limit: 10 })).items.map((r) => r.runId)).toEqual([first.runId]);
  });

  it('creates exactly one run when concurrent dispatches share an idempotency key', async () => {
    const accountId = uniqueId('acct');
    const runs = Array.from({ length: 8 }, () => makeRun({ accountId }));
    const results = await Promise.all(runs.map((run) => repo.create(run, snapshotOf(run), 'shared-key')));

    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.run.runId)).size).toBe(1);
    expect((await list.list({ accountId, limit: 10 })).items).toHaveLength(1);
  });

  it('retries a create that a conflicting writer cancelled', async () => {
    const run = makeRun({ accountId: uniqueId('acct') });
    const spy = conflictOnNextTransaction();
    try {
      expect((await repo.create(run, snapshotOf(run), 'k')).created).toBe(true);
      expect(spy.mock.calls.filter(([c]) => c.constructor.name === 'TransactWriteCommand')).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
    expect(await repo.get(run.runId)).toEqual(run);
  });

  it('scopes idempotency keys to the account', async () => {
    const a = makeRun({ accountId: uniqueId('acct') });
    const b = makeRun({ accountId: uniqueId('acct') });
    await repo.create(a, snapshotOf(a), 'same-key');
    expect((await repo.create(b, snapshotOf(b), 'same-key')).created).toBe(true);
  });
});

describe('DynamoRunStore apply', () => {
  it('writes a transition only while the run is in the status it was decided from, else hands back the run', async () => {
    const accountId = uniqueId('acct');
    const outcomes = await inBatches([...RUN_STATUSES], 13, async (actual) => {
      const run = await seed({ accountId, status: actual });
      const written = await repo.apply(run, moveTo({ ...run, status: 'RUNNING' }, 'COMPLETED'));
      return `${actual}: ${written.applied ? 'written' : `refused, run is ${written.run?.status}`}`;
    });
    expect(outcomes).toEqual(
      RUN_STATUSES.map((s) => (s === 'RUNNING' ? `${s}: written` : `${s}: refused, run is ${s}`)),
    );
  });

  it('moves the run between the status partitions of the list indexes', async () => {
    const accountId = uniqueId('acct');
    const run = await seed({ accountId, status: 'QUEUED' });
    const inStatus = async (status: RunStatus, projectId?: string) =>
      (await list.list({ accountId, projectId, statuses: [status], limit: 5 })).items.map((r) => r.runId);

    const dead = await repo.apply(run, moveTo(run, 'DEAD_LETTER'));
    expect(await inStatus('QUEUED')).toEqual([]);
    expect(await inStatus('DEAD_LETTER', run.projectId)).toEqual([run.runId]);
    expect(await rawRunItem(run.runId)).not.toHaveProperty('gQueued');

    if (!dead.applied) throw new Error('not written');
    await repo.apply(dead.run, moveTo(dead.run, 'QUEUED'));
    expect(await inStatus('DEAD_LETTER')).toEqual([]);
    expect(await inStatus('QUEUED', run.projectId)).toEqual([run.runId]);
    expect((await rawRunItem(run.runId))?.gQueued).toMatch(/^QUEUED#[0-7]$/);
  });

  it('writes the patch, every status of the path in the history, and updatedAt, ignoring undefined fields', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'PROVISIONING', message: 'keep me' });
    const t = end(run, { to: 'COMPLETED', exitReason: 'completed' }, NOW) as Transition;
    const written = await repo.apply(run, { ...t, patch: { ...t.patch, message: undefined } });
    if (!written.applied) throw new Error('not written');
    expect(written.run).toMatchObject({
      status: 'COMPLETED',
      exitReason: 'completed',
      startedAt: NOW.toISOString(),
      message: 'keep me',
      version: run.version + 1,
      updatedAt: NOW.toISOString(),
      history: [
        ...run.history,
        { status: 'RUNNING', at: NOW.toISOString() },
        { status: 'COMPLETED', at: NOW.toISOString() },
      ],
    });
    expect(await repo.get(run.runId)).toEqual(written.run);
  });

  it('revokes the pod’s credentials with the move that ends the run', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    await repo.parkPodToken(run.runId, 'wait-token');
    await repo.setLaunchCode(run.runId, 'code-hash');
    const current = (await repo.get(run.runId)) as Run;
    await repo.apply(current, stop(current, 'alice', NOW));
    // the wait's token stays for whoever must release it; the pod's credentials are gone
    expect((await repo.getWithSecrets(run.runId))?.secrets).toEqual({ podTaskToken: 'wait-token' });
  });

  it('closes a pending checkpoint into the history only while it is still that checkpoint', async () => {
    const pending = { seq: 5, name: 'plan', summary: 's', requestedAt: at(1) };
    const run = await seed({
      accountId: uniqueId('acct'),
      status: 'AWAITING_APPROVAL',
      pendingApproval: pending,
    });
    const stale = { ...(end(run, { to: 'STOPPED', exitReason: 'stopped' }, NOW) as Transition) };
    const other = {
      ...stale,
      closeApproval: { ...stale.closeApproval, seq: 9 } as Transition['closeApproval'],
    };
    expect((await repo.apply(run, other)).applied).toBe(false);
    const written = await repo.apply(run, stale);
    if (!written.applied) throw new Error('not written');
    expect(written.run.pendingApproval).toBeUndefined();
    expect(written.run.approvals).toEqual([expect.objectContaining({ seq: 5, decision: 'withdrawn' })]);
  });

  it('answers not applied, with no run, for a run that does not exist', async () => {
    const ghost = makeRun({ status: 'QUEUED' });
    expect(await repo.apply(ghost, provision(ghost, NOW) as Transition)).toEqual({ applied: false });
  });

  it('lets exactly one of 50 concurrent conflicting transitions win', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    const racer = new DynamoRunStore(table.doc, table.tableName);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        racer.apply(run, moveTo(run, i % 2 === 0 ? 'COMPLETED' : 'FAILED')),
      ),
    );
    const won = results.filter((r) => r.applied);
    expect(won).toHaveLength(1);
    const winner = won[0]?.run?.status;
    for (const lost of results.filter((r) => !r.applied)) expect(lost.run?.status).toBe(winner);
    expect(await repo.get(run.runId)).toMatchObject({ status: winner, version: run.version + 1 });
  });
});

describe('DynamoRunStore facts and the launch code', () => {
  it('records facts whatever the status, and refuses an unknown run', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'STOPPED' });
    await repo.recordFacts(run.runId, { executionArn: 'arn:exec:1', stopCode: undefined });
    expect(await repo.get(run.runId)).toMatchObject({ executionArn: 'arn:exec:1', version: run.version + 1 });
    await expect(repo.recordFacts(newRunId(), { taskArn: 'x' })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('exchanges a launch code once, only for the run’s own task while the run is launched', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'PROVISIONING', taskArn: 'arn:task/own' });
    await repo.setLaunchCode(run.runId, 'code-hash');
    const exchange = (codeHash: string, taskArn: string) =>
      repo.exchangeLaunchCode(run.runId, { codeHash, taskArn, tokenHash: 'token-hash' });
    expect(await exchange('other-hash', 'arn:task/own')).toBe(false);
    expect(await exchange('code-hash', 'arn:task/other')).toBe(false);
    expect(await exchange('code-hash', 'arn:task/own')).toBe(true);
    expect(await exchange('code-hash', 'arn:task/own')).toBe(false);
    expect((await repo.getWithSecrets(run.runId))?.secrets).toEqual({ agentTokenHash: 'token-hash' });

    const ended = await seed({ accountId: uniqueId('acct'), status: 'STOPPED', taskArn: 'arn:task/own' });
    await repo.setLaunchCode(ended.runId, 'code-hash');
    expect(
      await repo.exchangeLaunchCode(ended.runId, {
        codeHash: 'code-hash',
        taskArn: 'arn:task/own',
        tokenHash: 't',
      }),
    ).toBe(false);
  });
});

describe('DynamoRunList list', () => {
  const accountId = uniqueId('acct');
  const seeded: Run[] = [];
  const statuses: RunStatus[] = ['QUEUED', 'RUNNING', 'COMPLETED', 'FAILED'];
  const sources: RunSource[] = ['api', 'cron', 'manual'];
  beforeAll(async () => {
    const shapes = Array.from({ length: 36 }, (_, i) => ({
      accountId,
      projectId: i % 3 === 0 ? 'proj-b' : 'proj-a',
      podId: i % 4 === 0 ? 'pod-b' : 'pod-a',
      source: sources[i % sources.length],
      status: statuses[i % statuses.length],
    }));
    // created one after another so runIds are in creation order
    for (const shape of shapes) seeded.push(makeRun(shape));
    await inBatches(seeded, 12, (run) => repo.create(run, snapshotOf(run)));
    // another tenant with the same project and pod ids must never show up
    await inBatches(shapes.slice(0, 6), 6, (shape) => seed({ ...shape, accountId: uniqueId('other') }));
  });

  const expectedIds = (pick: (run: Run) => boolean, limit = 100) =>
    seeded
      .filter(pick)
      .map((r) => r.runId)
      .sort()
      .reverse()
      .slice(0, limit);

  const cases: [string, Omit<RunListFilter, 'accountId' | 'limit'>, (run: Run) => boolean][] = [
    ['the whole account', {}, () => true],
    ['one project', { projectId: 'proj-a' }, (r) => r.projectId === 'proj-a'],
    ['one status', { statuses: ['RUNNING'] }, (r) => r.status === 'RUNNING'],
    [
      'several statuses',
      { statuses: ['QUEUED', 'FAILED'] },
      (r) => r.status === 'QUEUED' || r.status === 'FAILED',
    ],
    [
      'several statuses in one project',
      { projectId: 'proj-b', statuses: ['COMPLETED', 'QUEUED', 'RUNNING'] },
      (r) => r.projectId === 'proj-b' && r.status !== 'FAILED',
    ],
    ['one source', { source: 'cron' }, (r) => r.source === 'cron'],
    [
      'one source in one project',
      { source: 'api', projectId: 'proj-a' },
      (r) => r.source === 'api' && r.projectId === 'proj-a',
    ],
    ['one pod', { podId: 'pod-b' }, (r) => r.podId === 'pod-b'],
    [
      'one pod, project and source',
      { podId: 'pod-a', projectId: 'proj-a', source: 'manual' },
      (r) => r.podId === 'pod-a' && r.projectId === 'proj-a' && r.source === 'manual',
    ],
    [
      'statuses with pod and source',
      { statuses: ['QUEUED', 'RUNNING', 'COMPLETED'], podId: 'pod-a', source: 'api' },
      (r) => r.status !== 'FAILED' && r.podId === 'pod-a' && r.source === 'api',
    ],
    // the runs a caller who is not an account admin may read: those of the projects they have a role in
    ['some projects', { projectIds: ['proj-b', 'proj-z'] }, (r) => r.projectId === 'proj-b'],
    [
      'statuses in some projects',
      { projectIds: ['proj-b'], statuses: ['RUNNING', 'QUEUED'] },
      (r) => r.projectId === 'proj-b' && (r.status === 'RUNNING' || r.status === 'QUEUED'),
    ],
    [
      'one pod in some of more than a hundred projects',
      { projectIds: [...Array.from({ length: 150 }, (_, i) => `proj-${i}`), 'proj-b'], podId: 'pod-b' },
      (r) => r.projectId === 'proj-b' && r.podId === 'pod-b',
    ],
    [
      'one source in some projects',
      { projectIds: ['proj-a'], source: 'cron' },
      (r) => r.projectId === 'proj-a' && r.source === 'cron',
    ],
  ];

  it.each(cases)('lists %s newest first', async (_, filter, pick) => {
    const page = await list.list({ accountId, ...filter, limit: 100 });
    expect(page.items.map((r) => r.runId)).toEqual(expectedIds(pick));
    expect(page.lastRunId).toBeUndefined();
  });

  it('returns full runs, and lastRunId only when more may follow', async () => {
    const page = await list.list({ accountId, statuses: ['RUNNING', 'FAILED'], limit: 4 });
    const ids = expectedIds((r) => r.status === 'RUNNING' || r.status === 'FAILED', 4);
    expect(page.items.map((r) => r.runId)).toEqual(ids);
    expect(page.items[0]).toEqual(seeded.find((r) => r.runId === ids[0]));
    expect(page.lastRunId).toBe(ids[3]);
    const all = expectedIds(() => true);
    const exact = await list.list({ accountId, limit: all.length });
    expect(exact.lastRunId).toBeUndefined();
  });

  it('never scans the table', async () => {
    const send = vi.spyOn(table.doc, 'send');
    try {
      for (const [, filter] of cases) await list.list({ accountId, ...filter, limit: 3 });
      await list.listQueuedBefore(Date.now(), 5);
      const commands = send.mock.calls.map(([command]) => command.constructor.name);
      expect(commands).toContain('QueryCommand');
      expect(commands).not.toContain('ScanCommand');
      expect(new Set(commands)).toEqual(new Set(['QueryCommand', 'BatchGetCommand']));
    } finally {
      send.mockRestore();
    }
  });

  it('pages through 120 runs with `before`, returning each exactly once and in order', async () => {
    const pagingAccount = uniqueId('paging');
    const runs = Array.from({ length: 120 }, (_, i) =>
      makeRun({ accountId: pagingAccount, status: i % 2 === 0 ? 'RUNNING' : 'QUEUED', source: 'cli' }),
    );
    await inBatches(runs, 20, (run) => repo.create(run, snapshotOf(run)));
    const newestFirst = runs.map((r) => r.runId).reverse();

    const walk = async (filter: Omit<RunListFilter, 'before'>) => {
      const seen: string[] = [];
      let before: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = await list.list({ ...filter, before });
        seen.push(...page.items.map((r) => r.runId));
        if (!page.lastRunId) return seen;
        before = page.lastRunId;
      }
      throw new Error('the list did not end');
    };

    expect(await walk({ accountId: pagingAccount, limit: 7 })).toEqual(newestFirst);
    expect(await walk({ accountId: pagingAccount, statuses: ['QUEUED', 'RUNNING'], limit: 11 })).toEqual(
      newestFirst,
    );
    expect(await walk({ accountId: pagingAccount, source: 'cli', limit: 40 })).toEqual(newestFirst);
  });
});

describe('DynamoRunList list, filtered within a budget of index reads', () => {
  const accountId = uniqueId('acct');
  const seeded: Run[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 240; i++) {
      seeded.push(
        makeRun({
          accountId,
          podId: i === 17 || i === 201 ? 'pod-rare' : 'pod-common',
          status: i % 2 === 0 ? 'COMPLETED' : 'FAILED',
        }),
      );
    }
    await inBatches(seeded, 24, (run) => repo.create(run, snapshotOf(run)));
  });

  it('answers each request within its budget, with a cursor, and pages to every match once', async () => {
    let queries = 0;
    const counting = {
      send: (command: unknown) => {
        if (command instanceof QueryCommand) queries++;
        return table.doc.send(command as QueryCommand);
      },
    } as unknown as typeof table.doc;
    const budgeted = new DynamoRunList(counting, table.tableName, { pageSize: 20, pageBudget: 4 });
    const found: string[] = [];
    const queriesPerRequest: number[] = [];
    let before: string | undefined;
    for (let request = 0; request < 50; request++) {
      queries = 0;
      const page = await budgeted.list({
        accountId,
        statuses: ['COMPLETED', 'FAILED'],
        podId: 'pod-rare',
        limit: 10,
        ...(before ? { before } : {}),
      });
      queriesPerRequest.push(queries);
      found.push(...page.items.map((r) => r.runId));
      before = page.lastRunId;
      if (!before) break;
    }
    expect(found).toEqual(
      seeded
        .filter((r) => r.podId === 'pod-rare')
        .map((r) => r.runId)
        .reverse(),
    );
    // two partitions (the two statuses), two pages each at most
    expect(Math.max(...queriesPerRequest)).toBeLessThanOrEqual(4);
    // 240 runs at 20 a page, four pages a request: the list took several requests, some of them empty
    expect(queriesPerRequest.length).toBeGreaterThan(2);
  });
});

describe('DynamoRunList listQueuedBefore', () => {
  it('returns QUEUED runs created before the cut-off, oldest first', async () => {
    // Run ids from 2001 keep this test apart from every other QUEUED run in the table. (newRunId is
    // monotonic within a process, so it cannot mint ids older than the ones it already made.)
    const t0 = Date.UTC(2001, 0, 1);
    const accountId = uniqueId('acct');
    const queuedAt = (ms: number, status: RunStatus = 'QUEUED') =>
      seed({ accountId, status, runId: `run_${ulid(ms)}` }, ms);
    const [q1, q2, q3] = await Promise.all([queuedAt(t0), queuedAt(t0 + 1_000), queuedAt(t0 + 2_000)]);
    await Promise.all([queuedAt(t0 + 500, 'PROVISIONING'), queuedAt(t0 + 60_000)]);
    const ids = async (limit: number) =>
      (await list.listQueuedBefore(t0 + 30_000, limit)).map((r) => r.runId);

    expect(await ids(10)).toEqual([q1.runId, q2.runId, q3.runId]);
    expect(await ids(2)).toEqual([q1.runId, q2.runId]);

    const dead = await repo.apply(q1, moveTo(q1, 'DEAD_LETTER'));
    expect(await ids(10)).toEqual([q2.runId, q3.runId]);
    if (dead.applied) await repo.apply(dead.run, moveTo(dead.run, 'QUEUED'));
    expect(await ids(10)).toEqual([q1.runId, q2.runId, q3.runId]);
  });
});

describe('DynamoRunList: the sweepers’ sharded indexes', () => {
  it('spreads queued runs over the shards, and still lists one in the partition from before them', async () => {
    // Run ids from 1999: older than any other QUEUED run in the table, so they come first.
    const t0 = Date.UTC(1999, 0, 1);
    const accountId = uniqueId('acct');
    const runs = await inBatches(
      Array.from({ length: 24 }, (_, i) => t0 + i * 1000),
      8,
      (ms) => seed({ accountId, status: 'QUEUED', runId: `run_${ulid(ms)}` }, ms),
    );
    const partitions = new Set(
      await Promise.all(runs.map(async (r) => (await rawRunItem(r.runId))?.gQueued)),
    );
    expect(partitions.size).toBeGreaterThan(1);
    const [first] = runs as [Run];
    await table.doc.send(
      new UpdateCommand({
        TableName: table.tableName,
        Key: { pk: `RUN#${first.runId}`, sk: 'RUN' },
        UpdateExpression: 'SET gQueued = :before',
        ExpressionAttributeValues: { ':before': 'QUEUED' },
      }),
    );
    const listed = await list.listQueuedBefore(t0 + 60_000, 24);
    expect(listed.map((r) => r.runId)).toEqual(runs.map((r) => r.runId));
    // out of the queue, so no other test's sweep finds them
    await inBatches(listed, 8, (run) => repo.apply(run, moveTo(run, 'DEAD_LETTER')));
    expect(await list.listQueuedBefore(t0 + 60_000, 24)).toEqual([]);
  });
});

describe('DynamoRunList listAwaitingApproval', () => {
  it('lists runs while they are paused for approval, oldest first, and no longer once they go on', async () => {
    // Run ids from 2000: older than any other paused run in the table, so they come first.
    const t0 = Date.UTC(2000, 0, 1);
    const accountId = uniqueId('acct');
    const at = (ms: number, status: RunStatus) => seed({ accountId, status, runId: `run_${ulid(ms)}` }, ms);
    const [p1, p2] = await Promise.all([at(t0, 'AWAITING_APPROVAL'), at(t0 + 1_000, 'AWAITING_APPROVAL')]);
    const running = await at(t0 + 500, 'RUNNING');
    const ids = async (limit: number) => (await list.listAwaitingApproval(limit)).map((r) => r.runId);

    expect(await ids(2)).toEqual([p1.runId, p2.runId]);
    const paused = await repo.apply(running, moveTo(running, 'AWAITING_APPROVAL'));
    expect(await ids(3)).toEqual([p1.runId, running.runId, p2.runId]);
    await repo.apply(paused.run as Run, moveTo(paused.run as Run, 'RUNNING'));
    await repo.apply(p1, moveTo(p1, 'FAILED'));
    expect(await ids(1)).toEqual([p2.runId]);
  });
});

describe('DynamoRunList oldestActive', () => {
  it('finds the oldest run not ended, whatever its account, and passes it by once it ends', async () => {
    // Run ids from 1990, older than any other this table holds, keep this test apart from the others.
    const t0 = Date.UTC(1990, 0, 1);
    const seededAt = (ms: number, status: RunStatus) =>
      seed({ accountId: uniqueId('acct'), status, runId: `run_${ulid(ms)}` }, ms);
    await seededAt(t0, 'COMPLETED');
    const [older, newer] = await Promise.all([
      seededAt(t0 + 1_000, 'RUNNING'),
      seededAt(t0 + 2_000, 'QUEUED'),
    ]);

    expect((await list.oldestActive())?.runId).toBe(older.runId);
    await repo.apply(older, moveTo(older, 'FAILED'));
    expect((await list.oldestActive())?.runId).toBe(newer.runId);
    await repo.apply(newer, moveTo(newer, 'CANCELLED'));
    expect((await list.oldestActive())?.runId).not.toBe(newer.runId);
  });
});

describe('DynamoRunList listOpenPullRequests', () => {
  it('lists a COMPLETED run while its pull request is open, and no longer once it is settled', async () => {
    const mine = (runs: Run[]) => runs.map((r) => r.runId).filter((id) => [a.runId, b.runId].includes(id));
    const pr = (n: number) => ({
      url: `https://github.com/acme/app/pull/${n}`,
      number: n,
      state: 'open' as const,
    });
    const a = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    const b = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    const completed: Run[] = [];
    for (const [run, n] of [
      [a, 1],
      [b, 2],
    ] as const) {
      const raised = await repo.apply(run, raisePullRequests(run, [pr(n)], NOW) as Transition);
      const ended = await repo.apply(
        raised.run as Run,
        end(raised.run as Run, { to: 'COMPLETED', exitReason: 'completed' }, NOW) as Transition,
      );
      completed.push(ended.run as Run);
    }
    expect(completed.map((r) => [r.status, r.phase])).toEqual([
      ['COMPLETED', 'PR_RAISED'],
      ['COMPLETED', 'PR_RAISED'],
    ]);
    expect(mine(await list.listOpenPullRequests(100))).toEqual([a.runId, b.runId]);

    const [first] = completed as [Run];
    await repo.apply(first, settlePullRequest(first, { ...pr(1), state: 'closed' }, NOW) as Transition);
    expect(mine(await list.listOpenPullRequests(100))).toEqual([b.runId]);
  });
});

describe('DynamoRunStore recordBatch', () => {
  const running = () => seed({ accountId: uniqueId('acct'), status: 'RUNNING' });

  it('records each seq once and counts repeats as duplicates', async () => {
    const run = await running();
    const events: AgentEvent[] = [
      { seq: 1, at: at(1), type: 'step', kind: 'assistant', content: 'planning', model: 'm1' },
      { seq: 2, at: at(2), type: 'usage', model: 'm1', inputTokens: 100, outputTokens: 20 },
      { seq: 3, at: at(3), type: 'checkpoint', name: 'plan', summary: 'approve the plan' },
      { seq: 4, at: at(4), type: 'result', outcome: 'completed' },
      { seq: 4, at: at(4), type: 'result', outcome: 'failed' },
    ];

    const first = await record(run.runId, events);
    expect(first.accepted.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(first.duplicates).toBe(1);

    const again = await record(run.runId, events);
    expect(again.accepted).toEqual([]);
    expect(again.duplicates).toBe(5);

    const stored = await repo.get(run.runId);
    expect(stored?.usage.m1?.inputTokens).toBe(100);
    expect(stored).toMatchObject({ lastSeq: 4, seqs: [[1, 4]], result: { outcome: 'completed' } });
    expect((await itemsOf(run.runId, 'STEPS#')).map((i) => [i.first, i.last])).toEqual([[1, 1]]);
    expect(await itemsOf(run.runId, 'USAGE#')).toHaveLength(1);
    expect((await itemsOf(run.runId, 'EVT#')).map((i) => [i.sk, i.type, i.outcome ?? i.name])).toEqual([
      ['EVT#0000000003', 'checkpoint', 'plan'],
      ['EVT#0000000004', 'result', 'completed'],
    ]);
  });

  it('writes the start of a provisioned run with its first batch, and refuses a plan made from an older version', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'PROVISIONING' });
    const plan = planBatch(run, [{ seq: 1, at: at(1), type: 'phase', phase: 'STARTED' }], NOW);
    await repo.recordFacts(run.runId, { taskArn: 'arn:task/1' });
    expect(await repo.recordBatch(run, plan, { fullContent: new Map(), scope: scope(run) })).toBe(false);
    expect((await repo.get(run.runId))?.status).toBe('PROVISIONING');

    await record(run.runId, [{ seq: 1, at: at(1), type: 'phase', phase: 'STARTED' }]);
    expect(await repo.get(run.runId)).toMatchObject({
      status: 'RUNNING',
      startedAt: NOW.toISOString(),
      phase: 'STARTED',
      history: [...run.history, { status: 'RUNNING', at: NOW.toISOString() }],
    });
    const listed = await list.list({ accountId: run.accountId, statuses: ['RUNNING'], limit: 5 });
    expect(listed.items.map((r) => r.runId)).toEqual([run.runId]);
  });

  it("keeps the run's usage totals equal to its ledger under concurrent batches", async () => {
    const run = await running();
    const batches: AgentEvent[][] = Array.from({ length: 10 }, (_, b) =>
      Array.from({ length: 10 }, (_, i): AgentEvent => {
        const seq = b * 10 + i + 1;
        return i % 4 === 3
          ? {
              seq,
              at: at(seq),
              type: 'step',
              kind: 'assistant',
              content: `step ${seq}`,
              model: 'vendor:model-b',
              usage: { inputTokens: seq, outputTokens: 1, cacheReadTokens: 2 },
            }
          : {
              seq,
              at: at(seq),
              type: 'usage',
              model: seq % 2 ? 'model-a' : 'vendor:model-b',
              inputTokens: seq * 10,
              outputTokens: seq,
              cacheWriteTokens: 3,
            };
      }),
    );

    const results = await Promise.all(batches.map((batch) => record(run.runId, batch)));
    // a pod that re-sends batches it got no answer for
    const repeats = await Promise.all(batches.slice(0, 4).map((batch) => record(run.runId, batch)));

    expect(results.reduce((n, r) => n + r.accepted.length, 0)).toBe(100);
    expect(repeats.reduce((n, r) => n + r.duplicates, 0)).toBe(40);
    const ledger = (await itemsOf(run.runId, 'USAGE#')).flatMap(
      (item) => item.lines as Record<string, unknown>[],
    );
    expect(ledger).toHaveLength(100);
    const fromLedger: Record<string, Record<string, number>> = {};
    for (const entry of ledger) {
      const model = String(entry.model);
      const totals = fromLedger[model] ?? {};
      fromLedger[model] = totals;
      for (const field of ['inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens']) {
        totals[field] = (totals[field] ?? 0) + Number(entry[field]);
      }
    }
    const expected: Record<string, Record<string, number>> = {};
    for (const e of batches.flat()) {
      const model = e.type === 'usage' ? e.model : 'vendor:model-b';
      const u = e.type === 'usage' ? e : e.type === 'step' ? e.usage : undefined;
      if (!u) continue;
      const totals = expected[model] ?? {};
      expected[model] = totals;
      totals.inputTokens = (totals.inputTokens ?? 0) + u.inputTokens;
      totals.outputTokens = (totals.outputTokens ?? 0) + u.outputTokens;
      totals.cacheReadTokens = (totals.cacheReadTokens ?? 0) + (u.cacheReadTokens ?? 0);
      totals.cacheWriteTokens = (totals.cacheWriteTokens ?? 0) + (u.cacheWriteTokens ?? 0);
    }
    expect(fromLedger).toEqual(expected);

    const stored = await repo.get(run.runId);
    const totals = Object.fromEntries(
      Object.entries(stored?.usage ?? {}).map(([model, { costMicroUsd, ...tokens }]) => [model, tokens]),
    );
    expect(totals).toEqual(fromLedger);
    expect(stored?.cost).toEqual(ZERO_COST);
    expect(stored).toMatchObject({ lastSeq: 100, seqs: [[1, 100]] });
  });

  it('retries a batch transaction that a conflicting writer cancelled, applying it once', async () => {
    const run = await running();
    const spy = conflictOnNextTransaction();
    try {
      const out = await record(run.runId, [
        { seq: 1, at: at(1), type: 'usage', model: 'm1', inputTokens: 7, outputTokens: 3 },
      ]);
      expect(out.accepted).toHaveLength(1);
      expect(spy.mock.calls.filter(([c]) => c.constructor.name === 'TransactWriteCommand')).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
    expect((await repo.get(run.runId))?.usage.m1).toMatchObject({ inputTokens: 7, outputTokens: 3 });
  });

  it('cuts step content above 32 KB and marks the step truncated with its original size', async () => {
    const run = await running();
    const content = 'é'.repeat(40_000);
    await record(run.runId, [
      { seq: 1, at: at(1), type: 'step', kind: 'tool_result', tool: 'bash', content, args: { cmd: 'ls' } },
    ]);
    const step = (await itemsOf(run.runId, 'STEPS#'))[0]?.steps[0];
    expect(step).toMatchObject({
      truncated: true,
      contentBytes: 80_000,
      kind: 'tool_result',
      args: '{"cmd":"ls"}',
    });
    expect(Buffer.byteLength(step?.content, 'utf8')).toBeLessThanOrEqual(32 * 1024);
    expect(content.startsWith(step?.content)).toBe(true);
  });

  it('appends each artifact once', async () => {
    const run = await running();
    const events: AgentEvent[] = [
      { seq: 5, at: at(5), type: 'artifact', kind: 'commit', url: 'https://example.com/c/abc', sha: 'abc' },
      { seq: 6, at: at(6), type: 'artifact', kind: 'commit', url: 'https://example.com/c/def', sha: 'def' },
    ];
    await record(run.runId, events);
    const repeated = await record(run.runId, events);

    expect(repeated.duplicates).toBe(2);
    const stored = await repo.get(run.runId);
    expect(stored?.artifacts).toEqual([
      { kind: 'commit', url: 'https://example.com/c/abc', sha: 'abc', at: at(5) },
      { kind: 'commit', url: 'https://example.com/c/def', sha: 'def', at: at(6) },
    ]);
    expect(stored?.pullRequest).toBeUndefined();
  });

  it('raises lastSeq and lastHeartbeatAt and never lowers them', async () => {
    const run = await running();
    await record(run.runId, [
      { seq: 9, at: '2026-01-01T00:00:09.000+00:00', type: 'heartbeat' },
      { seq: 8, at: at(8), type: 'heartbeat' },
    ]);
    await record(run.runId, [{ seq: 3, at: at(3), type: 'heartbeat' }]);

    const stored = await repo.get(run.runId);
    expect(stored).toMatchObject({
      lastSeq: 9,
      seqs: [
        [3, 3],
        [8, 9],
      ],
    });
    expect(stored?.lastHeartbeatAt).toBe('2026-01-01T00:00:09.000Z');
    expect(await itemsOf(run.runId, 'EVT#')).toEqual([]);
  });

  it('advances the phase from phase events, only forward', async () => {
    const run = await running();
    await record(run.runId, [
      { seq: 1, at: at(1), type: 'phase', phase: 'PLANNING' },
      { seq: 2, at: at(2), type: 'phase', phase: 'EXECUTING' },
    ]);
    await record(run.runId, [{ seq: 3, at: at(3), type: 'phase', phase: 'STARTED' }]);
    expect((await repo.get(run.runId))?.phase).toBe('EXECUTING');
  });

  it('writes a batch of small steps in one transaction, its steps packed in one item', async () => {
    const run = await running();
    const send = vi.spyOn(table.doc, 'send');
    try {
      const steps = Array.from(
        { length: 100 },
        (_, i): AgentEvent => ({ seq: i + 1, at: at(i), type: 'step', kind: 'assistant', content: `s${i}` }),
      );
      const current = (await repo.get(run.runId)) as Run;
      send.mockClear();
      const plan = planBatch(current, steps, NOW);
      expect(await repo.recordBatch(current, plan, { fullContent: new Map(), scope: scope(run) })).toBe(true);
      const commands = send.mock.calls.map(([command]) => command.constructor.name);
      expect(commands).toEqual(['TransactWriteCommand']);
    } finally {
      send.mockRestore();
    }
    const packs = await itemsOf(run.runId, 'STEPS#');
    expect(packs.map((p) => [p.first, p.last, p.steps.length])).toEqual([[1, 100, 100]]);
  });

  it('packs large steps into several items under the item limit, and writes what the transaction cannot hold first', async () => {
    const run = await running();
    // 150 steps of 30 KB: 4.5 MB, more than a transaction takes
    const big = (seq: number): AgentEvent => ({
      seq,
      at: at(seq),
      type: 'step',
      kind: 'assistant',
      content: `${seq}`.padEnd(30_000, 'x'),
    });
    const plan = await record(
      run.runId,
      Array.from({ length: 150 }, (_, i) => big(i + 1)),
    );
    expect(plan.accepted).toHaveLength(150);
    const packs = await itemsOf(run.runId, 'STEPS#');
    expect(packs.length).toBeGreaterThan(10);
    for (const pack of packs) expect(Buffer.byteLength(JSON.stringify(pack))).toBeLessThan(350 * 1024);
    expect(packs.flatMap((p) => p.steps.map((s: { seq: number }) => s.seq))).toEqual(
      Array.from({ length: 150 }, (_, i) => i + 1),
    );
  });
});
