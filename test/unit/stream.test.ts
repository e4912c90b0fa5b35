import { describe, expect, it } from 'vitest';
import { UnauthorizedError } from '../../shared/domain/errors.js';
import {
  EMPTY_FEED,
  FEED_STEP_CONTENT_CHARS,
  feedEventsOf,
  type RunChange,
  runChangeEvents,
  stepEvents,
} from '../../shared/domain/feed.js';
import type { Run } from '../../shared/domain/run.js';
import type { Step } from '../../shared/domain/steps.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import {
  connect,
  issueTicket,
  publishChanges,
  receive,
  type StreamDeps,
} from '../../shared/usecases/stream.js';
import { directoryOf, runFactory } from '../support/factories.js';
import { FakeStream } from '../support/fake-log-stream.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryConnections, MemoryFeed, RecordingSender } from '../support/memory-stream.js';

const RUN_ID = 'run_01J0000000000000000000000A';
const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:01.000Z';
const T2 = '2026-01-01T00:00:02.000Z';

const queued = (over: Partial<Run> = {}) =>
  runFactory({
    runId: RUN_ID,
    status: 'QUEUED',
    history: [{ status: 'QUEUED', at: T0 }],
    updatedAt: T0,
    ...over,
  });

const step = (seq: number, content = `step ${seq}`): Step => ({ seq, at: T1, kind: 'assistant', content });

describe('the events a write of a run makes', () => {
  it('is the first status for a run just created', () => {
    expect(runChangeEvents(undefined, queued())).toEqual([
      { kind: 'status', at: T0, data: { status: 'QUEUED' } },
    ]);
  });

  it('is each status the run passed through, in order, then nothing for a write that changed none', () => {
    const before = queued();
    const after = queued({
      status: 'RUNNING',
      history: [...before.history, { status: 'PROVISIONING', at: T1 }, { status: 'RUNNING', at: T2 }],
      updatedAt: T2,
    });
    expect(runChangeEvents(before, after)).toEqual([
      { kind: 'status', at: T1, data: { status: 'PROVISIONING' } },
      { kind: 'status', at: T2, data: { status: 'RUNNING' } },
    ]);
    expect(runChangeEvents(after, { ...after, version: after.version + 1 })).toEqual([]);
  });

  it('puts the phase, the checkpoint, artifacts and cost before the status, so a terminal status comes last', () => {
    const before = queued({
      status: 'RUNNING',
      phase: 'EXECUTING',
      history: [{ status: 'RUNNING', at: T0 }],
    });
    const after: Run = {
      ...before,
      status: 'FAILED',
      phase: 'FAILED',
      exitReason: 'budget_hit',
      message: 'over budget',
      history: [...before.history, { status: 'FAILED', at: T2 }],
      artifacts: [{ kind: 'commit', url: 'https://git/x', sha: 'a'.repeat(40), at: T1 }],
      cost: { ...before.cost, totalUsd: 1.5, tokenUsd: 1.5 },
      updatedAt: T2,
    };
    expect(runChangeEvents(before, after).map((e) => e.kind)).toEqual([
      'phase',
      'artifact',
      'cost',
      'status',
    ]);
    expect(runChangeEvents(before, after).at(-1)).toEqual({
      kind: 'status',
      at: T2,
      data: { status: 'FAILED', exitReason: 'budget_hit', message: 'over budget' },
    });
  });

  it('tells a checkpoint when it is pending, and again when it is decided', () => {
    const pending = { seq: 4, name: 'plan', summary: 'the plan', requestedAt: T1 };
    const before = queued({ status: 'RUNNING', history: [{ status: 'RUNNING', at: T0 }] });
    const waiting = {
      ...before,
      status: 'AWAITING_APPROVAL' as const,
      pendingApproval: pending,
      history: [...before.history, { status: 'AWAITING_APPROVAL' as const, at: T1 }],
      updatedAt: T1,
    };
    expect(runChangeEvents(before, waiting)).toEqual([
      { kind: 'approval', at: T1, data: { state: 'pending', ...pending } },
      { kind: 'status', at: T1, data: { status: 'AWAITING_APPROVAL' } },
    ]);
    const decided = {
      ...waiting,
      status: 'RUNNING' as const,
      pendingApproval: undefined,
      approvals: [{ ...pending, decision: 'approved' as const, at: T2, by: 'u1' }],
      history: [...waiting.history, { status: 'RUNNING' as const, at: T2 }],
      updatedAt: T2,
    };
    expect(runChangeEvents(waiting, decided)[0]).toMatchObject({
      kind: 'approval',
      data: { state: 'approved', by: 'u1', name: 'plan' },
    });
  });

  it('tells the pull request when it is raised and when its state changes', () => {
    const before = queued({ status: 'COMPLETED', history: [{ status: 'COMPLETED', at: T0 }] });
    const pr = { url: 'https://github.com/a/b/pull/7', number: 7, state: 'open' as const };
    expect(runChangeEvents(before, { ...before, pullRequest: pr })).toEqual([
      { kind: 'artifact', at: T0, data: { kind: 'pull_request', ...pr } },
    ]);
  });

  it('cuts a step’s content to what a message holds, saying so, and leaves its arguments to the API', () => {
    const long = 'x'.repeat(FEED_STEP_CONTENT_CHARS + 10);
    const [event] = stepEvents([{ ...step(1, long), args: '{"a":1}' }]);
    expect(event?.data).toMatchObject({ seq: 1, truncated: true });
    expect(String(event?.data.content)).toHaveLength(FEED_STEP_CONTENT_CHARS);
    expect(event?.data).not.toHaveProperty('args');
    expect(stepEvents([step(2)])[0]?.data).not.toHaveProperty('truncated');
  });

  it('adds nothing for a change the feed holds, and only steps it has not fed', () => {
    const head = { seq: 5, lastChange: '100', lastStepSeq: 3 };
    const steps = (change: string): RunChange => ({
      kind: 'steps',
      runId: RUN_ID,
      steps: [step(3), step(4)],
      change,
    });
    expect(feedEventsOf(head, steps('100'))).toBeUndefined();
    expect(feedEventsOf(head, steps('99'))).toBeUndefined();
    expect(feedEventsOf(head, steps('101'))?.map((e) => e.data.seq)).toEqual([4]);
    // positions are numbers of any length
    expect(feedEventsOf(head, steps('1000'))).toHaveLength(1);
    expect(feedEventsOf(EMPTY_FEED, steps('1'))).toHaveLength(2);
  });
});

const alice: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };
const stranger: Caller = { accountId: 'acct-2', userId: 'mallory', accountRole: 'admin' };

const setUp = () => {
  let now = new Date(T0);
  const deps: StreamDeps = {
    connections: new MemoryConnections(),
    sender: new RecordingSender(),
    feed: new MemoryFeed(),
    runs: new MemoryRuns().put(queued({ accountId: 'acct-1' })),
    logs: new FakeStream('pod/pod/task-1'),
    cursorKey: async () => 'k'.repeat(64),
    directory: directoryOf(),
    clock: { now: () => now },
  };
  const connections = deps.connections as MemoryConnections;
  const sender = deps.sender as RecordingSender;
  const signIn = async (connectionId: string, caller = alice) =>
    connections.saveConnection(connectionId, caller);
  let position = 0;
  /** the run's next write, as its stream delivers it */
  const write = (
    change:
      | { kind: 'run'; runId: string; before?: Run; after: Run }
      | { kind: 'steps'; runId: string; steps: Step[] },
  ) => publishChanges(deps, [{ ...change, change: String(++position) }]);
  const statuses = async (...names: Run['status'][]) => {
    let before: Run | undefined;
    for (const status of names) {
      const history = [...(before?.history ?? []), { status, at: T1 }];
      const after = queued({ accountId: 'acct-1', status, history });
      await write({ kind: 'run', runId: RUN_ID, ...(before ? { before } : {}), after });
      before = after;
    }
  };
  return {
    deps,
    connections,
    sender,
    signIn,
    write,
    statuses,
    later: (ms: number) => (now = new Date(now.getTime() + ms)),
  };
};

const seqsOf = (messages: Record<string, unknown>[]) =>
  messages.filter((m) => m.type === 'event').map((m) => m.seq);

describe('following a run', () => {
  it('sends the stored events after `after`, then says it caught up, then sends each new event once', async () => {
    const { deps, sender, signIn, statuses, write } = setUp();
    await statuses('QUEUED', 'PROVISIONING', 'RUNNING');
    await signIn('c1');
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID, after: 1 }));
    expect(sender.to('c1')).toEqual([
      { type: 'event', runId: RUN_ID, seq: 2, kind: 'status', at: T1, data: { status: 'PROVISIONING' } },
      { type: 'event', runId: RUN_ID, seq: 3, kind: 'status', at: T1, data: { status: 'RUNNING' } },
      { type: 'caught-up', runId: RUN_ID, seq: 3 },
    ]);
    await write({ kind: 'steps', runId: RUN_ID, steps: [step(1), step(2)] });
    expect(seqsOf(sender.to('c1'))).toEqual([2, 3, 4, 5]);
  });

  it('replays a run that has ended whole, ending with its terminal status, and then sends it nothing more', async () => {
    const { deps, connections, sender, signIn, statuses } = setUp();
    await statuses('QUEUED', 'RUNNING', 'COMPLETED');
    await signIn('c1');
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID }));
    expect(seqsOf(sender.to('c1'))).toEqual([1, 2, 3]);
    expect(sender.to('c1').at(-2)).toMatchObject({ kind: 'status', data: { status: 'COMPLETED' } });
    expect(await connections.followers(RUN_ID)).toEqual([]);
  });

  it('misses nothing and repeats nothing when the run changes while the backlog is being sent', async () => {
    const { deps, sender, signIn, statuses, write } = setUp();
    await statuses('QUEUED', 'RUNNING');
    await signIn('c1');
    // the feed gains events between the follow's reads of it: the fan-out finds the follower behind
    const feed = deps.feed as MemoryFeed;
    const read = feed.after.bind(feed);
    let reads = 0;
    feed.after = async (runId, seq, limit) => {
      const page = await read(runId, seq, limit);
      if (++reads <= 2) await write({ kind: 'steps', runId: RUN_ID, steps: [step(reads)] });
      return page;
    };
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID }));
    await write({ kind: 'steps', runId: RUN_ID, steps: [step(3)] });
    expect(seqsOf(sender.to('c1'))).toEqual([1, 2, 3, 4, 5]);
  });

  it('stops a long backlog inside the function’s time, saying so, and a follow from the last seq sends the rest', async () => {
    const { deps, sender, signIn, statuses, write, later } = setUp();
    await statuses('QUEUED', 'RUNNING');
    for (let i = 1; i <= 25; i++) {
      await write({
        kind: 'steps',
        runId: RUN_ID,
        steps: Array.from({ length: 10 }, (_, j) => step((i - 1) * 10 + j + 1)),
      });
    }
    const feed = deps.feed as MemoryFeed;
    const read = feed.after.bind(feed);
    feed.after = async (runId, seq, limit) => {
      later(15_000);
      return read(runId, seq, limit);
    };
    await signIn('c1');
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID }));
    const first = sender.to('c1');
    expect(first.at(-1)).toMatchObject({ type: 'error', code: 'CatchUpUnfinished', runId: RUN_ID });
    expect(seqsOf(first)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    feed.after = read;
    await signIn('c2');
    await receive(deps, 'c2', JSON.stringify({ action: 'follow', runId: RUN_ID, after: 200 }));
    expect(seqsOf(sender.to('c2'))).toEqual(Array.from({ length: 52 }, (_, i) => i + 201));
    expect(sender.to('c2').at(-1)).toMatchObject({ type: 'caught-up', seq: 252 });
  });

  it('sends every follower the same sequence', async () => {
    const { deps, sender, signIn, statuses, write } = setUp();
    await statuses('QUEUED');
    const ids = Array.from({ length: 50 }, (_, i) => `c${i}`);
    for (const id of ids) {
      await signIn(id);
      await receive(deps, id, JSON.stringify({ action: 'follow', runId: RUN_ID }));
    }
    await write({ kind: 'steps', runId: RUN_ID, steps: [step(1), step(2), step(3)] });
    for (const id of ids) expect(seqsOf(sender.to(id))).toEqual([1, 2, 3, 4]);
  });

  it('forgets a follower whose connection is gone', async () => {
    const { deps, connections, sender, signIn, statuses, write } = setUp();
    await statuses('QUEUED');
    await signIn('c1');
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID }));
    sender.gone.add('c1');
    await write({ kind: 'steps', runId: RUN_ID, steps: [step(1)] });
    expect(await connections.followers(RUN_ID)).toEqual([]);
    expect(await connections.getConnection('c1')).toBeUndefined();
  });

  it('refuses another account’s run with an error and nothing else, and a connection not signed in', async () => {
    const { deps, connections, sender, signIn, statuses } = setUp();
    await statuses('QUEUED', 'RUNNING');
    await signIn('c1', stranger);
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: RUN_ID }));
    expect(sender.to('c1')).toEqual([
      { type: 'error', code: 'NotFound', message: expect.stringContaining(RUN_ID), runId: RUN_ID },
    ]);
    expect(await connections.followers(RUN_ID)).toEqual([]);
    await receive(deps, 'c2', JSON.stringify({ action: 'ping' }));
    expect(sender.to('c2')).toEqual([{ type: 'error', code: 'Unauthorized', message: expect.any(String) }]);
  });

  it('answers a ping, and a message it cannot read with how messages look', async () => {
    const { deps, sender, signIn } = setUp();
    await signIn('c1');
    await receive(deps, 'c1', JSON.stringify({ action: 'ping' }));
    await receive(deps, 'c1', 'not json');
    await receive(deps, 'c1', JSON.stringify({ action: 'follow', runId: 'nope' }));
    expect(sender.to('c1')).toEqual([
      { type: 'pong' },
      { type: 'error', code: 'ValidationError', message: expect.stringContaining('"action":"follow"') },
      { type: 'error', code: 'ValidationError', message: expect.stringContaining('"action":"follow"') },
    ]);
  });

  it('tells the followers of the account’s runs (or of one project’s) each status change', async () => {
    const { deps, sender, signIn, statuses } = setUp();
    await signIn('all');
    await signIn('mine');
    await signIn('other');
    await receive(deps, 'all', JSON.stringify({ action: 'followRuns' }));
    await receive(deps, 'mine', JSON.stringify({ action: 'followRuns', projectId: 'proj-1' }));
    await receive(deps, 'other', JSON.stringify({ action: 'followRuns', projectId: 'elsewhere' }));
    await statuses('QUEUED', 'RUNNING');
    const runMessages = (id: string) =>
      sender
        .to(id)
        .filter((m) => m.type === 'run')
        .map((m) => m.status);
    expect(runMessages('all')).toEqual(['QUEUED', 'RUNNING']);
    expect(runMessages('mine')).toEqual(['QUEUED', 'RUNNING']);
    expect(runMessages('other')).toEqual([]);
  });
});

describe('feeding a run’s changes', () => {
  const feedOf = () => {
    const deps = {
      connections: new MemoryConnections(),
      sender: new RecordingSender(),
      feed: new MemoryFeed(),
    };
    return deps;
  };
  const change = (position: number, steps: Step[]): RunChange => ({
    kind: 'steps',
    runId: RUN_ID,
    steps,
    change: String(position),
  });

  it('appends consecutive changes together, numbered on, a step repacked later fed once', async () => {
    const deps = feedOf();
    let appends = 0;
    const append = deps.feed.append.bind(deps.feed);
    deps.feed.append = async (...args) => {
      appends += 1;
      return append(...args);
    };
    const fed = await publishChanges(deps, [
      change(1, [step(1), step(2)]),
      change(2, [step(2), step(3)]),
      change(3, [step(4)]),
    ]);
    expect(fed.map((e) => [e.seq, e.data.seq])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    expect(appends).toBe(1);
    expect(await deps.feed.head(RUN_ID)).toEqual({ seq: 4, lastChange: '3', lastStepSeq: 4 });
  });

  it('adds nothing for changes delivered again, and only what is new in a batch that overlaps', async () => {
    const deps = feedOf();
    await publishChanges(deps, [change(1, [step(1)]), change(2, [step(2)])]);
    expect(await publishChanges(deps, [change(1, [step(1)]), change(2, [step(2)])])).toEqual([]);
    const fed = await publishChanges(deps, [change(2, [step(2)]), change(3, [step(3)])]);
    expect(fed.map((e) => e.seq)).toEqual([3]);
  });

  it('splits what does not fit one transaction into appends that still number on without a gap', async () => {
    const deps = feedOf();
    const big = (seq: number) => step(seq, 'x'.repeat(FEED_STEP_CONTENT_CHARS));
    const changes = Array.from({ length: 4 }, (_, i) =>
      change(
        i + 1,
        Array.from({ length: 40 }, (_, j) => big(i * 40 + j + 1)),
      ),
    );
    const fed = await publishChanges(deps, changes);
    expect(fed.map((e) => e.seq)).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
    expect((await deps.feed.head(RUN_ID)).lastChange).toBe('4');
  });
});

describe('stream tickets', () => {
  it('connect once, within a minute of their issue', async () => {
    const { deps, connections, later } = setUp();
    const { ticket, url } = await issueTicket(deps, alice, { webSocketUrl: 'wss://ws.example.com/live' });
    expect(url).toBe(`wss://ws.example.com/live?ticket=${ticket}`);
    await connect(deps, 'c1', ticket);
    expect(await connections.getConnection('c1')).toEqual(alice);
    await expect(connect(deps, 'c2', ticket)).rejects.toBeInstanceOf(UnauthorizedError);
    const late = await issueTicket(deps, alice, { webSocketUrl: 'wss://ws.example.com/live' });
    later(61_000);
    await expect(connect(deps, 'c3', late.ticket)).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(connect(deps, 'c4', undefined)).rejects.toBeInstanceOf(UnauthorizedError);
  });
});
