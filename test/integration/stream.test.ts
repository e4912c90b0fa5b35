import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ServerMessage } from '../../shared/schemas/stream.js';
import { api, dispatch, endpoints, waitForTerminal } from './support/api.js';
import { dispatchSupervised } from './support/approvals.js';
import { tokenFor, waitForTaskStopped, wholeStream } from './support/aws.js';

/** Following runs live over the local WebSocket API: tickets, the feed's backlog and its live events. */

type EventMessage = Extract<ServerMessage, { type: 'event' }>;
type LogMessage = Extract<ServerMessage, { type: 'log' }>;

const ticketUrl = async (token?: string) => {
  const { status, body } = await api<{ url: string; ticket: string }>('POST', '/v1/stream/tickets', {
    ...(token ? { token } : {}),
  });
  expect(status).toBe(201);
  return body;
};

/** A connection and every message it got, in order of arrival. */
const open = async (url: string) => {
  const socket = new WebSocket(url);
  const messages: ServerMessage[] = [];
  const waiters: (() => void)[] = [];
  socket.on('message', (data) => {
    messages.push(JSON.parse(String(data)) as ServerMessage);
    for (const wake of waiters.splice(0)) wake();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
    socket.once('error', reject);
  });
  const until = async (done: (all: ServerMessage[]) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!done(messages)) {
      if (Date.now() > deadline)
        throw new Error(`not there in time; got ${JSON.stringify(messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return messages;
  };
  return {
    socket,
    messages,
    until,
    send: (message: Record<string, unknown>) => socket.send(JSON.stringify(message)),
    close: () =>
      new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.close();
      }),
  };
};

const eventsOf = (messages: ServerMessage[], runId: string) =>
  messages.filter((m): m is EventMessage => m.type === 'event' && m.runId === runId);

const ended = (runId: string) => (messages: ServerMessage[]) =>
  eventsOf(messages, runId).some(
    (e) =>
      e.kind === 'status' &&
      ['COMPLETED', 'FAILED', 'CANCELLED', 'STOPPED', 'ABANDONED'].includes(String(e.data.status)),
  );

const seqs = (events: EventMessage[]) => events.map((e) => e.seq);
const inSeqOrder = (events: EventMessage[]) => [...events].sort((a, b) => a.seq - b.seq);
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('following a run over the WebSocket API', () => {
  it('gets every status, phase, step and checkpoint once, in seq order, ending with the terminal status', async () => {
    const { body: run } = await dispatchSupervised({
      steps: 3,
      stepDelayMs: 50,
      usage: [{ model: 'claude-sonnet-4-5', inputTokens: 1000, outputTokens: 200 }],
    });
    const follower = await open((await ticketUrl()).url);
    follower.send({ action: 'follow', runId: run.runId, after: 0 });
    // approve at the checkpoint when it shows up in the stream
    await follower.until((all) =>
      eventsOf(all, run.runId).some((e) => e.kind === 'approval' && e.data.state === 'pending'),
    );
    // the checkpoint is in the run before its approval request is stored: until then approving is a 409
    await expect
      .poll(async () => (await api('POST', `/v1/runs/${run.runId}/approve`)).status, { timeout: 30_000 })
      .toBe(200);
    const all = eventsOf(await follower.until(ended(run.runId)), run.runId);
    await follower.close();

    expect(seqs(all)).toEqual(oneToN(all.length));
    expect(all.at(-1)).toMatchObject({ kind: 'status', data: { status: 'COMPLETED' } });
    const statuses = all.filter((e) => e.kind === 'status').map((e) => e.data.status);
    expect(statuses).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RUNNING',
      'AWAITING_APPROVAL',
      'RUNNING',
      'COMPLETED',
    ]);
    expect(all.filter((e) => e.kind === 'approval').map((e) => e.data.state)).toEqual([
      'pending',
      'approved',
    ]);
    expect(all.filter((e) => e.kind === 'step').length).toBeGreaterThanOrEqual(3);
    expect(all.some((e) => e.kind === 'phase')).toBe(true);
    expect(all.some((e) => e.kind === 'cost')).toBe(true);
    expect(all.some((e) => e.kind === 'artifact')).toBe(true);
  });

  it('resumes after a dropped connection from the last seq seen: nothing missing, nothing twice', async () => {
    const { body: run } = await dispatch({ config: { demo: { steps: 40, stepDelayMs: 40 } } });
    const first = await open((await ticketUrl()).url);
    first.send({ action: 'follow', runId: run.runId, after: 0 });
    await first.until((all) => eventsOf(all, run.runId).filter((e) => e.kind === 'step').length >= 5);
    first.socket.terminate();
    // two senders may post consecutive events a moment apart out of order: as a client does, keep
    // the events in seq order up to the first gap, and follow again from the last of them
    const before = inSeqOrder(eventsOf(first.messages, run.runId)).filter((e, i) => e.seq === i + 1);
    const last = before.at(-1)?.seq ?? 0;

    const second = await open((await ticketUrl()).url);
    second.send({ action: 'follow', runId: run.runId, after: last });
    const after = eventsOf(await second.until(ended(run.runId)), run.runId);
    await second.close();
    const joined = inSeqOrder([...before, ...after]);
    expect(seqs(joined)).toEqual(oneToN(joined.length));

    // followed after the end, the run is replayed whole, the same events under the same seqs
    const replay = await open((await ticketUrl()).url);
    replay.send({ action: 'follow', runId: run.runId, after: 0 });
    const again = await replay.until((all) => all.some((m) => m.type === 'caught-up'));
    await replay.close();
    // (and what was written after its end, the settled cost, which live followers no longer get)
    expect(eventsOf(again, run.runId).slice(0, joined.length)).toEqual(joined);
    expect(again.at(-1)).toMatchObject({ type: 'caught-up', runId: run.runId });
  });

  it('sends 200 followers of one run the same sequence', async () => {
    const { body: run } = await dispatch({ config: { demo: { steps: 10, stepDelayMs: 100 } } });
    const followers = await Promise.all(
      Array.from({ length: 200 }, async () => open((await ticketUrl()).url)),
    );
    for (const follower of followers) follower.send({ action: 'follow', runId: run.runId, after: 0 });
    const received = await Promise.all(
      followers.map(async (follower) => eventsOf(await follower.until(ended(run.runId), 120_000), run.runId)),
    );
    await Promise.all(followers.map((f) => f.close()));
    const [reference] = received;
    expect(seqs(reference ?? [])).toEqual(oneToN(reference?.length ?? 0));
    for (const events of received) expect(events).toEqual(reference);
  });

  it("refuses another account's run with an error and nothing else", async () => {
    const { body: run } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 10 } } });
    await waitForTerminal(run.runId);
    const outsider = await tokenFor({ sub: 'mallory', accountId: 'another-account', accountRole: 'admin' });
    const follower = await open((await ticketUrl(outsider)).url);
    follower.send({ action: 'follow', runId: run.runId, after: 0 });
    follower.send({ action: 'ping' });
    // messages are handled as they come, not one after another: the pong may come first
    const messages = await follower.until((all) => all.length >= 2);
    await new Promise((r) => setTimeout(r, 300));
    await follower.close();
    expect(messages).toHaveLength(2);
    expect(messages).toEqual(
      expect.arrayContaining([
        { type: 'error', code: 'NotFound', message: expect.stringContaining(run.runId), runId: run.runId },
        { type: 'pong' },
      ]),
    );
  });

  it('refuses a connection without a ticket, or with one already used', async () => {
    const { url } = await ticketUrl();
    const used = await open(url);
    await expect(open(url)).rejects.toThrow('refused: 401');
    await expect(open(endpoints().wsUrl)).rejects.toThrow('refused: 401');
    await used.close();
  });

  it('tells the followers of the account’s runs each status change', async () => {
    const follower = await open((await ticketUrl()).url);
    follower.send({ action: 'followRuns', projectId: endpoints().projectId });
    await follower.until((all) => all.some((m) => m.type === 'following-runs'));
    const { body: run } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 10 } } });
    const messages = await follower.until((all) =>
      all.some((m) => m.type === 'run' && m.runId === run.runId && m.status === 'COMPLETED'),
    );
    await follower.close();
    const statuses = messages
      .filter((m) => m.type === 'run' && m.runId === run.runId)
      .map((m) => (m as { status: string }).status);
    expect(statuses).toEqual(['QUEUED', 'PROVISIONING', 'RUNNING', 'COMPLETED']);
  });
});

/** The log messages in the order their cursors chain from the follow's start, as far as they chain. */
const chainedLines = (messages: ServerMessage[]): { lines: string[]; cursor: string; chained: number } => {
  const start = messages.find((m) => m.type === 'following-logs');
  const byFrom = new Map(
    messages.filter((m): m is LogMessage => m.type === 'log').map((m) => [m.from, m] as const),
  );
  let cursor = start?.type === 'following-logs' ? start.cursor : '';
  const lines: string[] = [];
  let chained = 0;
  for (let next = byFrom.get(cursor); next; next = byFrom.get(cursor)) {
    lines.push(...next.lines.map((line) => line.message));
    cursor = next.cursor;
    chained += 1;
  }
  return { lines, cursor, chained };
};

describe('following a run’s log over the WebSocket API', () => {
  it('gets each of 2,000 lines once across a dropped connection, and the whole stream in the end', async () => {
    const { body: run } = await dispatch({
      config: { demo: { steps: 1, logLines: 2000, logLinesPerWrite: 100, logDelayMs: 100 } },
    });
    const numbered = (lines: string[]) => lines.filter((line) => /^line \d{6} demo agent output$/.test(line));
    const first = await open((await ticketUrl()).url);
    first.send({ action: 'followLogs', runId: run.runId });
    await first.until((all) => numbered(chainedLines(all).lines).length >= 300);
    first.socket.terminate();
    const before = chainedLines(first.messages);

    const second = await open((await ticketUrl()).url);
    second.send({ action: 'followLogs', runId: run.runId, after: before.cursor });
    await second.until((all) =>
      numbered(chainedLines(all).lines).some((line) => line.startsWith('line 002000')),
    );
    const { run: ended } = await waitForTerminal(run.runId, 90_000);
    expect(ended.status).toBe('COMPLETED');
    await waitForTaskStopped(ended.taskArn as string);
    const whole = await wholeStream(ended.logStream as string, run.runId);
    // the last lines (the runtime's, after the agent's) come with the deliveries that follow them
    await second.until((all) => before.lines.length + chainedLines(all).lines.length >= whole.length);
    await second.close();

    const followed = [...before.lines, ...chainedLines(second.messages).lines];
    expect(numbered(followed)).toEqual(
      Array.from({ length: 2000 }, (_, i) => `line ${String(i + 1).padStart(6, '0')} demo agent output`),
    );
    expect(followed).toEqual(whole);
    // every message continued one before it: none was sent twice or from elsewhere
    expect(chainedLines(second.messages).chained).toBe(
      second.messages.filter((m) => m.type === 'log').length,
    );
  });

  it('refuses another account’s run, and a cursor that is not one, with an error and nothing else', async () => {
    const { body: run } = await dispatch({ config: { demo: { steps: 1 } } });
    const stranger = await open(
      (
        await ticketUrl(
          await tokenFor({ sub: 'mallory', accountId: 'another-account', accountRole: 'admin' }),
        )
      ).url,
    );
    stranger.send({ action: 'followLogs', runId: run.runId });
    const refused = await stranger.until((all) => all.some((m) => m.type === 'error'));
    expect(refused).toEqual([
      { type: 'error', code: 'NotFound', message: expect.stringContaining(run.runId), runId: run.runId },
    ]);
    await stranger.close();
    const owner = await open((await ticketUrl()).url);
    owner.send({ action: 'followLogs', runId: run.runId, after: 'made-up' });
    const answered = await owner.until((all) => all.some((m) => m.type === 'error'));
    expect(answered).toEqual([
      {
        type: 'error',
        code: 'ValidationError',
        message: expect.stringContaining('cursor'),
        runId: run.runId,
      },
    ]);
    await owner.close();
  });
});
