import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../../shared/domain/errors.js';
import type { Run } from '../../shared/domain/run.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { RunStore } from '../../shared/ports.js';
import { logsQuerySchema } from '../../shared/schemas/timeline.js';
import { type RunLogPage, readRunLogs } from '../../shared/usecases/logs.js';
import { directoryOf, runFactory } from '../support/factories.js';
import { FakeStream } from '../support/fake-log-stream.js';

const caller: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };
const STREAM = 'pod/pod/task-1';

const setup = (run: Partial<Run> = {}) => {
  const stream = new FakeStream(STREAM);
  const runs = new Map<string, Run>();
  const add = (over: Partial<Run>) => {
    const r = runFactory({
      status: 'RUNNING',
      logStream: STREAM,
      startedAt: '2026-01-01T00:00:01.000Z',
      ...over,
    });
    runs.set(r.runId, r);
    return r;
  };
  const main = add(run);
  const deps = {
    runs: { get: async (runId: string) => runs.get(runId) } as unknown as RunStore,
    directory: directoryOf(),
    logs: stream,
    cursorKey: async () => 'k'.repeat(64),
  };
  const read = (query: Record<string, string> = {}, runId = main.runId) =>
    readRunLogs(deps, caller, runId, logsQuerySchema.parse(query));
  return { stream, main, add, read };
};

const lines = (page: RunLogPage) => page.items.map((e) => e.message);
const numbered = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);

/** Pages back from the newest until nextCursor is null; returns the pages, newest first. */
const pageBackAll = async (read: ReturnType<typeof setup>['read'], limit: number) => {
  const pages: RunLogPage[] = [];
  let cursor: string | undefined;
  do {
    const page = await read({ limit: String(limit), ...(cursor ? { cursor } : {}) });
    pages.push(page);
    cursor = page.nextCursor ?? undefined;
    if (pages.length > 1000) throw new Error('paging did not end');
  } while (cursor);
  return pages;
};

describe('readRunLogs: paging back', () => {
  it.each([
    [1234, 100],
    [1200, 100],
    [7, 100],
  ])(
    'returns all %i lines exactly once, in order, newest page first; the last page says nothing is older (limit %i)',
    async (count, limit) => {
      const { stream, read } = setup();
      stream.write(count);
      const pages = await pageBackAll(read, limit);
      expect(pages.map(lines).reverse().flat()).toEqual(numbered(1, count));
      expect(pages.at(-1)?.items.length).toBeGreaterThan(0);
      expect(pages.at(-1)?.nextCursor).toBeNull();
      expect(pages.length).toBe(Math.ceil(count / limit));
    },
  );

  it('keeps paging past empty answers that move the token; only the repeated token is the start', async () => {
    const { stream, read } = setup();
    stream.write(250);
    stream.stutter = true;
    const pages = await pageBackAll(read, 100);
    expect(pages.map(lines).reverse().flat()).toEqual(numbered(1, 250));
    expect(pages.slice(0, -1).every((page) => page.items.length === 100)).toBe(true);
  });

  it('answers an empty stream with an empty page and nothing older, without looping', async () => {
    const { stream, read } = setup();
    const page = await read();
    expect(page).toMatchObject({ items: [], nextCursor: null });
    expect(stream.requests.length).toBeLessThanOrEqual(2);
  });

  it('refuses a cursor of another run, and a follow cursor used to page back', async () => {
    const { stream, read, add } = setup();
    stream.write(300);
    const other = add({ runId: 'run_01J0000000000000000000000B' });
    const first = await read({ limit: '100' });
    await expect(read({ cursor: first.nextCursor as string }, other.runId)).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(read({ cursor: first.afterCursor as string })).rejects.toBeInstanceOf(ValidationError);
    await expect(read({ cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(ValidationError);
  });

  it('refuses a cursor it did not sign, so a client cannot hand CloudWatch a token of its own', async () => {
    const { stream, read, main } = setup();
    stream.write(300);
    const scope = { logs: main.runId, direction: 'older' };
    const forged = Buffer.from(
      JSON.stringify({
        p: JSON.stringify({ s: STREAM, t: 'b/150' }),
        f: createHash('sha256').update(JSON.stringify(scope)).digest('base64url').slice(0, 12),
      }),
    ).toString('base64url');
    await expect(read({ cursor: forged })).rejects.toThrow(/not valid/);
    await expect(read({ after: forged })).rejects.toThrow(/not valid/);
    expect(stream.requests).toEqual([]);
  });

  it('refuses an older-lines cursor from an earlier sandbox of the run', async () => {
    const { stream, read, main, add } = setup();
    stream.write(300);
    const first = await read({ limit: '100' });
    add({ ...main, logStream: 'pod/pod/task-2' });
    await expect(read({ cursor: first.nextCursor as string })).rejects.toThrow(/earlier sandbox/);
  });

  it('hides another tenant’s run', async () => {
    const { read, add } = setup();
    const foreign = add({ runId: 'run_01J0000000000000000000000F', accountId: 'acct-2' });
    await expect(read({}, foreign.runId)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('stops filling a page after a bounded number of calls and hands back a cursor', async () => {
    const { stream, read } = setup();
    stream.write(5);
    // every call answers empty with a new token: a pathological stream must not hold the request
    stream.getEvents = async (request) => {
      stream.requests.push(request);
      return { events: [], nextBackwardToken: `b/x${stream.requests.length}`, nextForwardToken: 'f/0' };
    };
    const page = await read({ limit: '10' });
    expect(page.items).toEqual([]);
    expect(page.nextCursor).not.toBeNull();
    expect(stream.requests.length).toBeLessThanOrEqual(10);
  });
});

describe('readRunLogs: following', () => {
  it('returns the lines written after the cursor, then nothing new with the same position', async () => {
    const { stream, read } = setup();
    stream.write(30);
    const first = await read({ limit: '10' });
    expect(lines(first)).toEqual(numbered(21, 30));
    stream.write(5);
    const next = await read({ after: first.afterCursor as string });
    expect(lines(next)).toEqual(numbered(31, 35));
    expect(next.nextCursor).toBeNull();
    const idle = await read({ after: next.afterCursor as string });
    expect(idle.items).toEqual([]);
    stream.write(2);
    expect(lines(await read({ after: idle.afterCursor as string }))).toEqual(numbered(36, 37));
  });

  it('follows a run that had not started from its first line once its sandbox writes', async () => {
    const { stream, read, main, add } = setup({
      status: 'PROVISIONING',
      logStream: undefined,
      startedAt: undefined,
    });
    const before = await read();
    expect(before).toMatchObject({ items: [], nextCursor: null, reason: 'not_started' });
    add({ ...main, logStream: STREAM });
    stream.exists = false;
    const waiting = await read({ after: before.afterCursor as string });
    expect(waiting).toMatchObject({ items: [], reason: 'not_started' });
    stream.exists = true;
    stream.write(3);
    expect(lines(await read({ after: waiting.afterCursor as string }))).toEqual(numbered(1, 3));
  });

  it('follows a new sandbox of the run (a redrive) from its start', async () => {
    const { stream, read, main, add } = setup();
    stream.write(3);
    const first = await read();
    // the run's next sandbox writes to a stream of its own
    stream.name = 'pod/pod/task-2';
    stream.events.splice(0);
    stream.write(2);
    add({ ...main, logStream: stream.name });
    expect(lines(await read({ after: first.afterCursor as string }))).toEqual(numbered(1, 2));
  });

  it('refuses cursor and after together', () => {
    expect(() => logsQuerySchema.parse({ cursor: 'a', after: 'b' })).toThrow(/cannot be combined/);
  });
});

describe('readRunLogs: runs without lines', () => {
  it('answers a run that ended before its sandbox started with an empty page, a reason, and nothing to follow', async () => {
    const { read } = setup({ status: 'CANCELLED', logStream: undefined, startedAt: undefined });
    expect(await read()).toEqual({ items: [], nextCursor: null, afterCursor: null, reason: 'not_started' });
  });

  it('answers a run whose stream has expired with an empty page and the reason', async () => {
    const { stream, read } = setup({ status: 'COMPLETED' });
    stream.exists = false;
    expect(await read()).toEqual({ items: [], nextCursor: null, afterCursor: null, reason: 'expired' });
  });

  it('answers a launched run whose stream does not exist yet as not started, with a cursor to follow', async () => {
    const { stream, read } = setup({ status: 'PROVISIONING', startedAt: undefined });
    stream.exists = false;
    const page = await read();
    expect(page).toMatchObject({ items: [], nextCursor: null, reason: 'not_started' });
    expect(page.afterCursor).toEqual(expect.any(String));
  });
});
