import { randomUUID } from 'node:crypto';
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ulid } from 'ulid';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoRunRepository } from '../../shared/adapters/dynamo-run-repository.js';
import { ConflictError, NotFoundError, TransitionRefusedError } from '../../shared/domain/errors.js';
import { newRunId } from '../../shared/domain/ids.js';
import {
  canTransition,
  RUN_STATUSES,
  type Run,
  type RunSource,
  type RunStatus,
  ZERO_COST,
} from '../../shared/domain/run.js';
import type { Pod } from '../../shared/domain/tenancy.js';
import type { AgentEvent, RunConfigSnapshot, RunListFilter } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
let repo: DynamoRunRepository;
beforeAll(() => {
  repo = new DynamoRunRepository(table.doc, table.tableName);
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
  repos: ['org/repo'],
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
  model: 'model-x',
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 900,
  runBudgetMicroUsd: 0,
  updatedAt: '2026-01-01T00:00:00.000Z',
});

const snapshotOf = (run: Run, prompt = 'fix the bug'): RunConfigSnapshot => ({
  prompt,
  repos: run.repos,
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

const itemsOf = async (runId: string, skPrefix: string) =>
  (
    await table.doc.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :sk)',
        ExpressionAttributeValues: { ':pk': `RUN#${runId}`, ':sk': skPrefix },
      }),
    )
  ).Items ?? [];

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

describe('DynamoRunRepository create and read', () => {
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

  it('keeps the pod task token and the agent token hash out of every returned run', async () => {
    const run = await seed({ accountId: uniqueId('acct') });
    const withToken = await repo.setPodTaskToken(run.runId, 'task-token-1');
    await repo.setAgentTokenHash(run.runId, 'hash-1');

    expect(withToken).not.toHaveProperty('podTaskToken');
    expect(await repo.getPodTaskToken(run.runId)).toBe('task-token-1');
    expect(await repo.getAgentTokenHash(run.runId)).toBe('hash-1');
    const read = await repo.get(run.runId);
    expect(read).not.toHaveProperty('podTaskToken');
    expect(read).not.toHaveProperty('agentTokenHash');
    const listed = await repo.list({ accountId: run.accountId, limit: 10 });
    expect(listed.items[0]).not.toHaveProperty('podTaskToken');

    await repo.clearPodTaskToken(run.runId);
    await repo.clearPodTaskToken(run.runId);
    expect(await repo.getPodTaskToken(run.runId)).toBeUndefined();
    await expect(repo.setAgentTokenHash(newRunId(), 'h')).rejects.toBeInstanceOf(NotFoundError);
    await expect(repo.setPodTaskToken(newRunId(), 't')).rejects.toBeInstanceOf(NotFoundError);
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
    expect((await repo.list({ accountId, limit: 10 })).items.map((r) => r.runId)).toEqual([first.runId]);
  });

  it('creates exactly one run when concurrent dispatches share an idempotency key', async () => {
    const accountId = uniqueId('acct');
    const runs = Array.from({ length: 8 }, () => makeRun({ accountId }));
    const results = await Promise.all(runs.map((run) => repo.create(run, snapshotOf(run), 'shared-key')));

    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.run.runId)).size).toBe(1);
    expect((await repo.list({ accountId, limit: 10 })).items).toHaveLength(1);
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

describe('DynamoRunRepository transition', () => {
  it('allows exactly the moves in the transition table and refuses the rest with the current status', async () => {
    const accountId = uniqueId('acct');
    const pairs = RUN_STATUSES.flatMap((from) => RUN_STATUSES.map((to) => ({ from, to })));

    const outcomes = await inBatches(pairs, 20, async ({ from, to }) => {
      const run = await seed({ accountId, status: from });
      try {
        const moved = await repo.transition({ runId: run.runId, to });
        const history = moved.history.map((c) => c.status).join(',');
        return `${from}->${to}: moved to ${moved.status}, version +${moved.version - run.version}, history ${history}`;
      } catch (err) {
        return `${from}->${to}: refused in ${err instanceof TransitionRefusedError ? err.current : String(err)}`;
      }
    });

    const expected = pairs.map(({ from, to }) =>
      canTransition(from, to)
        ? `${from}->${to}: moved to ${to}, version +1, history ${from},${to}`
        : `${from}->${to}: refused in ${from}`,
    );
    expect(outcomes).toEqual(expected);
  });

  it('moves the run between the status partitions of the list indexes', async () => {
    const accountId = uniqueId('acct');
    const run = await seed({ accountId, status: 'QUEUED' });
    const inStatus = async (status: RunStatus, projectId?: string) =>
      (await repo.list({ accountId, projectId, statuses: [status], limit: 5 })).items.map((r) => r.runId);

    await repo.transition({ runId: run.runId, to: 'DEAD_LETTER' });
    expect(await inStatus('QUEUED')).toEqual([]);
    expect(await inStatus('DEAD_LETTER', run.projectId)).toEqual([run.runId]);
    expect(await rawRunItem(run.runId)).not.toHaveProperty('gQueued');

    await repo.transition({ runId: run.runId, to: 'QUEUED' });
    expect(await inStatus('DEAD_LETTER')).toEqual([]);
    expect(await inStatus('QUEUED', run.projectId)).toEqual([run.runId]);
    expect((await rawRunItem(run.runId))?.gQueued).toBe('QUEUED');
  });

  it('writes the patch, the history and updatedAt with the status, ignoring undefined patch fields', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING', message: 'keep me' });
    const now = '2026-02-03T04:05:06.007Z';
    const clocked = new DynamoRunRepository(table.doc, table.tableName, { now: () => new Date(now) });
    const done = await clocked.transition({
      runId: run.runId,
      to: 'COMPLETED',
      patch: {
        exitReason: 'completed',
        completedAt: '2026-01-01T01:00:00.000Z',
        durationMs: 3_600_000,
        result: { outcome: 'completed', message: undefined },
        message: undefined,
      },
    });
    expect(done).toMatchObject({
      status: 'COMPLETED',
      exitReason: 'completed',
      durationMs: 3_600_000,
      result: { outcome: 'completed' },
      message: 'keep me',
      version: run.version + 1,
      updatedAt: now,
      history: [...run.history, { status: 'COMPLETED', at: now }],
    });
    expect(await repo.get(run.runId)).toEqual(done);
  });

  it('refuses statuses outside `from` and a stale expectedVersion, naming the current status', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    await expect(
      repo.transition({ runId: run.runId, to: 'STOPPED', from: ['QUEUED'] }),
    ).rejects.toMatchObject({
      code: 'TransitionRefused',
      current: 'RUNNING',
    });
    await expect(
      repo.transition({
        runId: run.runId,
        to: 'STOPPED',
        from: ['RUNNING'],
        expectedVersion: run.version + 5,
      }),
    ).rejects.toMatchObject({ code: 'TransitionRefused', current: 'RUNNING' });
    const stopped = await repo.transition({ runId: run.runId, to: 'STOPPED', expectedVersion: run.version });
    expect(stopped.status).toBe('STOPPED');
  });

  it('works in a process that has not read the run before', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'QUEUED' });
    const fresh = new DynamoRunRepository(table.doc, table.tableName);
    await fresh.transition({ runId: run.runId, to: 'PROVISIONING' });
    const listed = await repo.list({ accountId: run.accountId, statuses: ['PROVISIONING'], limit: 5 });
    expect(listed.items.map((r) => r.runId)).toEqual([run.runId]);
  });

  it('throws NotFoundError for a run that does not exist', async () => {
    await expect(repo.transition({ runId: newRunId(), to: 'PROVISIONING' })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(
      repo.transition({ runId: newRunId(), to: 'QUEUED', from: ['RUNNING'] }),
    ).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lets exactly one of 50 concurrent conflicting transitions win', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    const racer = new DynamoRunRepository(table.doc, table.tableName);

    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        racer.transition({ runId: run.runId, to: i % 2 === 0 ? 'COMPLETED' : 'FAILED' }),
      ),
    );

    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(49);
    const winner = won[0]?.status;
    for (const err of lost) {
      expect(err).toBeInstanceOf(TransitionRefusedError);
      expect((err as TransitionRefusedError).current).toBe(winner);
    }
    expect(await repo.get(run.runId)).toMatchObject({ status: winner, version: run.version + 1 });
  });
});

describe('DynamoRunRepository update', () => {
  it('writes facts only while the run is in one of the given statuses', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'QUEUED' });

    const updated = await repo.update(run.runId, { executionArn: 'arn:exec:1' }, ['QUEUED']);
    expect(updated).toMatchObject({ executionArn: 'arn:exec:1', status: 'QUEUED', version: run.version + 1 });

    expect(await repo.update(run.runId, { executionArn: 'arn:exec:2' }, ['RUNNING'])).toBeUndefined();
    expect(await repo.update(run.runId, { executionArn: 'arn:exec:3' }, [])).toBeUndefined();
    expect((await repo.get(run.runId))?.executionArn).toBe('arn:exec:1');

    expect(await repo.update(run.runId, { taskArn: 'arn:task:1' })).toMatchObject({ taskArn: 'arn:task:1' });
    await expect(repo.update(newRunId(), { taskArn: 'x' })).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('DynamoRunRepository list', () => {
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
  ];

  it.each(cases)('lists %s newest first', async (_, filter, pick) => {
    const page = await repo.list({ accountId, ...filter, limit: 100 });
    expect(page.items.map((r) => r.runId)).toEqual(expectedIds(pick));
    expect(page.lastRunId).toBeUndefined();
  });

  it('returns full runs, and lastRunId only when more may follow', async () => {
    const page = await repo.list({ accountId, statuses: ['RUNNING', 'FAILED'], limit: 4 });
    const ids = expectedIds((r) => r.status === 'RUNNING' || r.status === 'FAILED', 4);
    expect(page.items.map((r) => r.runId)).toEqual(ids);
    expect(page.items[0]).toEqual(seeded.find((r) => r.runId === ids[0]));
    expect(page.lastRunId).toBe(ids[3]);
    const all = expectedIds(() => true);
    const exact = await repo.list({ accountId, limit: all.length });
    expect(exact.lastRunId).toBeUndefined();
  });

  it('never scans the table', async () => {
    const send = vi.spyOn(table.doc, 'send');
    try {
      for (const [, filter] of cases) await repo.list({ accountId, ...filter, limit: 3 });
      await repo.listQueuedBefore(Date.now(), 5);
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
        const page = await repo.list({ ...filter, before });
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

describe('DynamoRunRepository listQueuedBefore', () => {
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
      (await repo.listQueuedBefore(t0 + 30_000, limit)).map((r) => r.runId);

    expect(await ids(10)).toEqual([q1.runId, q2.runId, q3.runId]);
    expect(await ids(2)).toEqual([q1.runId, q2.runId]);

    await repo.transition({ runId: q1.runId, to: 'DEAD_LETTER' });
    expect(await ids(10)).toEqual([q2.runId, q3.runId]);
    await repo.transition({ runId: q1.runId, to: 'QUEUED' });
    expect(await ids(10)).toEqual([q1.runId, q2.runId, q3.runId]);
  });
});

describe('DynamoRunRepository recordEvents', () => {
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

    const first = await repo.recordEvents(run.runId, events);
    expect(first.accepted.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(first.duplicates).toBe(1);

    const again = await repo.recordEvents(run.runId, events);
    expect(again).toEqual({ accepted: [], duplicates: 5 });

    const stored = await repo.get(run.runId);
    expect(stored?.usage.m1?.inputTokens).toBe(100);
    expect(stored?.lastSeq).toBe(4);
    expect(await itemsOf(run.runId, 'STEP#')).toHaveLength(1);
    expect(await itemsOf(run.runId, 'USAGE#')).toHaveLength(1);
    expect((await itemsOf(run.runId, 'EVT#')).map((i) => [i.sk, i.type, i.outcome ?? i.name])).toEqual([
      ['EVT#0000000003', 'checkpoint', 'plan'],
      ['EVT#0000000004', 'result', 'completed'],
    ]);
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

    const results = await Promise.all(batches.map((batch) => repo.recordEvents(run.runId, batch)));
    // a pod that re-sends batches it got no answer for
    const repeats = await Promise.all(
      batches.slice(0, 4).map((batch) => repo.recordEvents(run.runId, batch)),
    );

    expect(results.reduce((n, r) => n + r.accepted.length, 0)).toBe(100);
    expect(repeats.reduce((n, r) => n + r.duplicates, 0)).toBe(40);
    const ledger = await itemsOf(run.runId, 'USAGE#');
    expect(ledger).toHaveLength(100);
    const fromLedger: Record<string, Record<string, number>> = {};
    for (const entry of ledger) {
      const totals = fromLedger[entry.model] ?? {};
      fromLedger[entry.model] = totals;
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
    expect(stored?.lastSeq).toBe(100);
  });

  it('retries a usage transaction that a conflicting writer cancelled, applying it once', async () => {
    const run = await running();
    const spy = conflictOnNextTransaction();
    try {
      const out = await repo.recordEvents(run.runId, [
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
    await repo.recordEvents(run.runId, [
      { seq: 1, at: at(1), type: 'step', kind: 'tool_result', tool: 'bash', content, args: { cmd: 'ls' } },
    ]);
    const [step] = await itemsOf(run.runId, 'STEP#');
    expect(step).toMatchObject({
      truncated: true,
      contentBytes: 80_000,
      kind: 'tool_result',
      args: '{"cmd":"ls"}',
    });
    expect(Buffer.byteLength(step?.content, 'utf8')).toBeLessThanOrEqual(32 * 1024);
    expect(content.startsWith(step?.content)).toBe(true);
  });

  it('appends each artifact once and sets the pull request', async () => {
    const run = await running();
    const events: AgentEvent[] = [
      { seq: 5, at: at(5), type: 'artifact', kind: 'commit', url: 'https://example.com/c/abc', sha: 'abc' },
      {
        seq: 6,
        at: at(6),
        type: 'artifact',
        kind: 'pull_request',
        url: 'https://example.com/pr/7',
        number: 7,
      },
    ];
    await repo.recordEvents(run.runId, events);
    const repeated = await repo.recordEvents(run.runId, events);

    expect(repeated.duplicates).toBe(2);
    const stored = await repo.get(run.runId);
    expect(stored?.artifacts).toEqual([
      { kind: 'commit', url: 'https://example.com/c/abc', sha: 'abc', at: at(5) },
      { kind: 'pull_request', url: 'https://example.com/pr/7', at: at(6) },
    ]);
    expect(stored?.pullRequest).toEqual({ url: 'https://example.com/pr/7', number: 7, state: 'open' });
  });

  it('raises lastSeq and lastHeartbeatAt and never lowers them', async () => {
    const run = await running();
    await repo.recordEvents(run.runId, [
      { seq: 9, at: '2026-01-01T00:00:09.000+00:00', type: 'heartbeat' },
      { seq: 8, at: at(8), type: 'heartbeat' },
    ]);
    await repo.recordEvents(run.runId, [{ seq: 3, at: at(3), type: 'heartbeat' }]);

    const stored = await repo.get(run.runId);
    expect(stored?.lastSeq).toBe(9);
    expect(stored?.lastHeartbeatAt).toBe('2026-01-01T00:00:09.000Z');
    expect(await itemsOf(run.runId, 'EVT#')).toEqual([]);
  });

  it('advances the phase from phase events, only forward', async () => {
    const run = await running();
    await repo.recordEvents(run.runId, [
      { seq: 1, at: at(1), type: 'phase', phase: 'PLANNING' },
      { seq: 2, at: at(2), type: 'phase', phase: 'EXECUTING' },
    ]);
    await repo.recordEvents(run.runId, [{ seq: 3, at: at(3), type: 'phase', phase: 'STARTED' }]);
    expect((await repo.get(run.runId))?.phase).toBe('EXECUTING');
  });

  it('throws NotFoundError for an unknown run and writes nothing', async () => {
    const runId = newRunId();
    await expect(
      repo.recordEvents(runId, [{ seq: 1, at: at(1), type: 'step', kind: 'assistant', content: 'x' }]),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(await itemsOf(runId, 'STEP#')).toEqual([]);
  });
});

describe('DynamoRunRepository advancePhase', () => {
  it('moves the phase forward only and keeps final phases', async () => {
    const run = await seed({ accountId: uniqueId('acct'), status: 'RUNNING' });
    const phaseAfter = async (phase: Parameters<DynamoRunRepository['advancePhase']>[1]) => {
      await repo.advancePhase(run.runId, phase);
      return (await repo.get(run.runId))?.phase;
    };

    expect(await phaseAfter('PLANNING')).toBe('PLANNING');
    expect(await phaseAfter('COMMITTING')).toBe('COMMITTING');
    expect(await phaseAfter('EXECUTING')).toBe('COMMITTING');
    expect(await phaseAfter('COMMITTING')).toBe('COMMITTING');
    expect(await phaseAfter('FAILED')).toBe('FAILED');
    expect(await phaseAfter('COMPLETED')).toBe('FAILED');
    await expect(repo.advancePhase(newRunId(), 'PLANNING')).rejects.toBeInstanceOf(NotFoundError);
  });
});
