import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { LogLine } from '../../shared/schemas/stream.js';
import { readRunLogs } from '../../shared/usecases/logs.js';
import { receive } from '../../shared/usecases/stream.js';
import { type LogStreamDeps, publishLogs } from '../../shared/usecases/stream-logs.js';
import { directoryOf, runFactory } from '../support/factories.js';
import { FakeStream } from '../support/fake-log-stream.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryConnections, MemoryFeed, RecordingSender } from '../support/memory-stream.js';

const STREAM = 'pod/pod/task-1';
const alice: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };
const stranger: Caller = { accountId: 'acct-2', userId: 'mallory', accountRole: 'admin' };

const setUp = (over: Partial<Run> = {}) => {
  const run = runFactory({
    accountId: 'acct-1',
    status: 'RUNNING',
    logStream: STREAM,
    startedAt: '2026-01-01T00:00:01.000Z',
    ...over,
  });
  const stream = new FakeStream(STREAM);
  const connections = new MemoryConnections();
  const sender = new RecordingSender();
  let now = Date.parse('2026-01-01T00:00:00.000Z');
  const pauses: number[] = [];
  const deps: LogStreamDeps & { feed: MemoryFeed } = {
    connections,
    sender,
    feed: new MemoryFeed(),
    runs: new MemoryRuns().put(run),
    logs: stream,
    cursorKey: async () => 'k'.repeat(64),
    directory: directoryOf(),
    clock: { now: () => new Date(now) },
    pause: async (ms) => {
      pauses.push(ms);
    },
  };
  void connections.rememberLogStream(STREAM, run.runId);
  const signIn = (connectionId: string, caller = alice) => connections.saveConnection(connectionId, caller);
  const followLogs = (connectionId: string, after?: string) =>
    receive(deps, connectionId, JSON.stringify({ action: 'followLogs', runId: run.runId, after }));
  /** the pod writes `count` lines and the subscription delivers them */
  const writeAndDeliver = async (count: number) => {
    stream.write(count);
    return publishLogs(
      { ...deps, logStreams: connections },
      {
        logStream: STREAM,
        newestAt: stream.events.at(-1)?.timestamp ?? 0,
      },
    );
  };
  return {
    run,
    stream,
    connections,
    sender,
    deps,
    pauses,
    signIn,
    followLogs,
    writeAndDeliver,
    advance: (ms: number) => {
      now += ms;
    },
  };
};

type Message = Record<string, unknown>;
const logMessages = (messages: Message[]) => messages.filter((m) => m.type === 'log');
const linesOf = (messages: Message[]) =>
  logMessages(messages).flatMap((m) => (m.lines as LogLine[]).map((line) => line.message));
const numbered = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);

/** Each log message continues from the cursor the one before it ended at. */
const expectChained = (messages: Message[], start: string) => {
  let cursor = start;
  for (const message of logMessages(messages)) {
    expect(message.from).toBe(cursor);
    cursor = message.cursor as string;
  }
  return cursor;
};

describe('following a run’s log', () => {
  it('sends the lines from the first, says it caught up, then sends each new line once as it is delivered', async () => {
    const { sender, signIn, followLogs, writeAndDeliver, stream } = setUp();
    stream.write(3);
    await signIn('c1');
    await followLogs('c1');
    const [first, ...rest] = sender.to('c1');
    expect(first).toEqual({ type: 'following-logs', runId: expect.any(String), cursor: expect.any(String) });
    expect(rest.at(-1)).toMatchObject({ type: 'logs-caught-up' });
    expect(linesOf(sender.to('c1'))).toEqual(numbered(1, 3));

    await writeAndDeliver(2);
    await writeAndDeliver(0);
    await writeAndDeliver(4);
    expect(linesOf(sender.to('c1'))).toEqual(numbered(1, 9));
    const last = expectChained(sender.to('c1'), first?.cursor as string);
    expect(sender.to('c1').filter((m) => m.type === 'logs-caught-up')).toEqual([
      expect.objectContaining({ cursor: expect.any(String) }),
    ]);
    expect(last).toEqual(expect.any(String));
  });

  it('resumes from the cursor of the last message a dropped connection received: nothing missing, nothing twice', async () => {
    const { sender, connections, signIn, followLogs, writeAndDeliver, stream, run } = setUp();
    await signIn('c1');
    await followLogs('c1');
    await writeAndDeliver(5);
    const seen = linesOf(sender.to('c1'));
    const resumeFrom = logMessages(sender.to('c1')).at(-1)?.cursor as string;
    // the connection drops; lines go on being written meanwhile
    sender.gone.add('c1');
    await writeAndDeliver(3);
    expect(await connections.logFollowers(run.runId)).toEqual([]);
    stream.write(2);
    await signIn('c2');
    await followLogs('c2', resumeFrom);
    await writeAndDeliver(1);
    expect([...seen, ...linesOf(sender.to('c2'))]).toEqual(numbered(1, 11));
  });

  it('takes the logs API’s afterCursor, so a page read over HTTP is followed from where it ends', async () => {
    const { deps, sender, signIn, followLogs, writeAndDeliver, stream, run } = setUp();
    stream.write(10);
    const page = await readRunLogs(deps, alice, run.runId, { limit: 4 });
    expect(page.items.map((e) => e.message)).toEqual(numbered(7, 10));
    await signIn('c1');
    await followLogs('c1', page.afterCursor as string);
    await writeAndDeliver(2);
    expect(linesOf(sender.to('c1'))).toEqual(numbered(11, 12));
  });

  it('sends each line once when deliveries and the follow’s catch-up run at the same time', async () => {
    const { sender, signIn, followLogs, writeAndDeliver, stream } = setUp();
    stream.write(700);
    await signIn('c1');
    await Promise.all([followLogs('c1'), writeAndDeliver(300), writeAndDeliver(300), writeAndDeliver(1)]);
    await writeAndDeliver(0);
    const messages = sender.to('c1');
    const lines = linesOf(messages);
    expect([...lines].sort()).toEqual(numbered(1, 1301).sort());
    expect(new Set(lines).size).toBe(1301);
    // messages that crossed in flight are put back in order by their `from`
    const byFrom = new Map(logMessages(messages).map((m) => [m.from, m]));
    let cursor = messages[0]?.cursor as string;
    const ordered: string[] = [];
    while (byFrom.has(cursor)) {
      const next = byFrom.get(cursor) as Message;
      ordered.push(...(next.lines as LogLine[]).map((line) => line.message));
      cursor = next.cursor as string;
    }
    expect(ordered).toEqual(numbered(1, 1301));
  });

  it('reads again, briefly, when a delivered line is not readable yet, and gives up after a bound', async () => {
    const { deps, sender, signIn, followLogs, stream, connections, pauses } = setUp();
    await signIn('c1');
    await followLogs('c1');
    // the delivery comes before the logs API shows its line, which shows up after two waits
    let waits = 0;
    deps.pause = async () => {
      if (++waits === 2) stream.write(1);
    };
    await publishLogs({ ...deps, logStreams: connections }, { logStream: STREAM, newestAt: 1 });
    expect(linesOf(sender.to('c1'))).toEqual(['line 1']);
    expect(waits).toBe(2);
    // a line that never shows up: the delivery waits a bounded number of times
    waits = 0;
    deps.pause = async (ms) => {
      pauses.push(ms);
      waits++;
    };
    await publishLogs({ ...deps, logStreams: connections }, { logStream: STREAM, newestAt: 99 });
    expect(waits).toBe(8);
    // a delivery of lines the follower already has does not wait at all
    waits = 0;
    await publishLogs({ ...deps, logStreams: connections }, { logStream: STREAM, newestAt: 1 });
    expect(waits).toBe(0);
  });

  it('keeps every message within a WebSocket message’s 128 KB, cutting only a line longer than that', async () => {
    const { sender, signIn, followLogs, stream } = setUp();
    const long = (n: number, bytes: number) => `line ${n} ${'é'.repeat(bytes / 2)}`;
    for (let n = 1; n <= 400; n++) stream.events.push({ timestamp: n, message: long(n, 1000) });
    stream.events.push({ timestamp: 401, message: long(401, 300_000) });
    stream.events.push({ timestamp: 402, message: 'after' });
    await signIn('c1');
    await followLogs('c1');
    const messages = logMessages(sender.to('c1'));
    expect(messages.length).toBeGreaterThan(3);
    for (const message of messages)
      expect(Buffer.byteLength(JSON.stringify(message))).toBeLessThanOrEqual(128 * 1024);
    const lines = messages.flatMap((m) => m.lines as LogLine[]);
    expect(lines.map((line) => line.timestamp)).toEqual(Array.from({ length: 402 }, (_, i) => i + 1));
    expect(lines.filter((line) => line.truncated)).toEqual([
      expect.objectContaining({ timestamp: 401, message: expect.stringMatching(/^line 401 é+$/) }),
    ]);
    expect(lines[0]?.message).toBe(long(1, 1000));
  });

  it('refuses another account’s run and a cursor of another run with an error and nothing else', async () => {
    const { sender, signIn, followLogs, connections, run, deps } = setUp();
    await signIn('c1', stranger);
    await followLogs('c1');
    expect(sender.to('c1')).toEqual([
      { type: 'error', code: 'NotFound', message: expect.stringContaining(run.runId), runId: run.runId },
    ]);
    const other = runFactory({
      runId: 'run_01J0000000000000000000000B',
      accountId: 'acct-1',
      status: 'RUNNING',
      logStream: STREAM,
    });
    (deps.runs as MemoryRuns).put(other);
    const otherCursor = (await readRunLogs(deps, alice, other.runId, { limit: 1 })).afterCursor as string;
    await signIn('c2');
    await followLogs('c2', otherCursor);
    expect(sender.to('c2')).toEqual([
      {
        type: 'error',
        code: 'ValidationError',
        message: expect.stringContaining('cursor'),
        runId: run.runId,
      },
    ]);
    expect(await connections.logFollowers(run.runId)).toEqual([]);
  });

  it('follows a run that has not started from its first line once its sandbox writes', async () => {
    const { sender, signIn, followLogs, writeAndDeliver, deps, run } = setUp({
      status: 'QUEUED',
      logStream: undefined,
    });
    await signIn('c1');
    await followLogs('c1');
    expect(linesOf(sender.to('c1'))).toEqual([]);
    (deps.runs as MemoryRuns).put({ ...run, status: 'RUNNING', logStream: STREAM });
    await writeAndDeliver(3);
    expect(linesOf(sender.to('c1'))).toEqual(numbered(1, 3));
  });

  it('stops a long catch-up inside the function’s time and says to follow again from the last cursor', async () => {
    const { sender, signIn, followLogs, stream, advance } = setUp();
    stream.write(5000);
    const read = stream.getEvents.bind(stream);
    stream.getEvents = async (request) => {
      advance(3000);
      return read(request);
    };
    await signIn('c1');
    await followLogs('c1');
    const messages = sender.to('c1');
    expect(messages.at(-1)).toMatchObject({ type: 'error', code: 'CatchUpUnfinished' });
    const got = linesOf(messages);
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(5000);
    await signIn('c2');
    stream.getEvents = read;
    await followLogs('c2', logMessages(messages).at(-1)?.cursor as string);
    expect([...got, ...linesOf(sender.to('c2'))]).toEqual(numbered(1, 5000));
  });

  it('does nothing for a stream of no run, and reads no run when nobody follows its log', async () => {
    const { deps, connections } = setUp();
    let reads = 0;
    const runs = deps.runs as MemoryRuns;
    const get = runs.get.bind(runs);
    runs.get = async (runId) => {
      reads++;
      return get(runId);
    };
    expect(
      await publishLogs({ ...deps, logStreams: connections }, { logStream: 'pod/pod/other', newestAt: 1 }),
    ).toBe(0);
    expect(await publishLogs({ ...deps, logStreams: connections }, { logStream: STREAM, newestAt: 1 })).toBe(
      0,
    );
    expect(reads).toBe(0);
  });
});
