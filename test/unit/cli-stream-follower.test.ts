import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { ApiClient } from '../../cli/client.js';
import { type FollowEvent, PollingFollower, type RunFollower } from '../../cli/follow.js';
import { StreamFollower, type StreamOptions } from '../../cli/stream-follower.js';
import type { FeedEvent } from '../../shared/domain/feed.js';
import type { Run, RunStatus } from '../../shared/domain/run.js';
import type { ServerMessage, StepView } from '../../shared/schemas/wire.js';
import { fakeFetch, type Route, runCli, withoutStream } from '../support/cli.js';
import { runFactory } from '../support/factories.js';

const RUN_ID = 'run_01J0000000000000000000000A';
const AT = '2026-01-01T00:00:00.000Z';

type EventMessage = Extract<ServerMessage, { type: 'event' }>;
type NewEvent = Omit<FeedEvent, 'seq' | 'at'>;

// ---- the feed's events, as the server makes them

const status = (s: RunStatus): NewEvent => ({ kind: 'status', data: { status: s } });
const phase = (p: string): NewEvent => ({ kind: 'phase', data: { phase: p } });
const cost = (): NewEvent => ({ kind: 'cost', data: { cost: { totalUsd: 0.01 } } });
const pending = (): NewEvent => ({
  kind: 'approval',
  data: { state: 'pending', seq: 7, name: 'plan', summary: 'Add a route', requestedAt: AT },
});
const approved = (): NewEvent => ({ kind: 'approval', data: { state: 'approved', seq: 7, name: 'plan' } });
const stepData = (seq: number): StepView => ({ seq, at: AT, kind: 'assistant', content: `step ${seq}` });
const step = (seq: number, data: Partial<StepView> = {}): NewEvent => ({
  kind: 'step',
  data: { ...stepData(seq), ...data },
});

/**
 * A run's feed and the API around it: a WebSocket server that sends the feed as the stream does (the
 * backlog after `after`, `caught-up`, then each event as it is published) and the HTTP API's reads
 * of the run as the feed has brought it so far.
 */
const startStream = async () => {
  const feed: EventMessage[] = [];
  /** the `after` of each follow, in order */
  const follows: number[] = [];
  const sockets: WebSocket[] = [];
  const live = new Set<WebSocket>();
  const hooks = {
    /** what a follower on `socket` is sent of newly published events */
    deliver: (events: EventMessage[], _socket: WebSocket): EventMessage[] => events,
    answersPings: (_socket: WebSocket) => true,
    refusal: undefined as { code: string; message: string } | undefined,
    /** where a ticket says to connect; the server's own address unless set */
    ticketUrl: undefined as (() => string) | undefined,
    /** the run and its steps as the API has them, when not as the feed says */
    run: undefined as Run | undefined,
    steps: undefined as StepView[] | undefined,
  };
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const send = (socket: WebSocket, message: ServerMessage) => socket.send(JSON.stringify(message));
  server.on('connection', (socket) => {
    sockets.push(socket);
    socket.on('close', () => live.delete(socket));
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as { action: string; runId: string; after: number };
      if (message.action === 'ping') {
        if (hooks.answersPings(socket)) send(socket, { type: 'pong' });
        return;
      }
      follows.push(message.after);
      if (hooks.refusal) return send(socket, { type: 'error', ...hooks.refusal, runId: message.runId });
      for (const event of feed.filter((e) => e.seq > message.after)) send(socket, event);
      send(socket, { type: 'caught-up', runId: RUN_ID, seq: feed.length });
      live.add(socket);
    });
  });

  const publish = (...events: NewEvent[]) => {
    const added = events.map(
      (event, i): EventMessage => ({
        type: 'event',
        runId: RUN_ID,
        seq: feed.length + 1 + i,
        at: AT,
        ...event,
      }),
    );
    feed.push(...added);
    for (const socket of live) for (const event of hooks.deliver(added, socket)) send(socket, event);
  };
  /** sends event `seq` again to every follower, as a sender that was late would */
  const resend = (seq: number) => {
    const event = feed[seq - 1];
    if (event) for (const socket of live) send(socket, event);
  };

  /** The run as the feed says it is: its version moves with each event that is not a step. */
  const run = (): Run => {
    if (hooks.run) return hooks.run;
    const changes = feed.filter((e) => e.kind !== 'step');
    const statuses = changes.filter((e) => e.kind === 'status').map((e) => e.data.status as RunStatus);
    const approval = changes.filter((e) => e.kind === 'approval').at(-1)?.data;
    const lastPhase = changes.filter((e) => e.kind === 'phase').at(-1)?.data.phase;
    return runFactory({
      runId: RUN_ID,
      status: statuses.at(-1) ?? 'QUEUED',
      history: statuses.map((s) => ({ status: s, at: AT })),
      version: Math.max(1, changes.length),
      ...(lastPhase ? { phase: lastPhase as Run['phase'] } : {}),
      ...(approval?.state === 'pending'
        ? { pendingApproval: approval as unknown as Run['pendingApproval'] }
        : {}),
    });
  };
  const steps = () =>
    hooks.steps ?? feed.filter((e) => e.kind === 'step').map((e) => e.data as unknown as StepView);

  let tickets = 0;
  const route: Route = (request) => {
    if (request.method === 'POST' && request.path === '/v1/stream/tickets') {
      tickets++;
      return {
        status: 201,
        body: {
          ticket: `t${tickets}`,
          url: hooks.ticketUrl?.() ?? `${url}/?ticket=t${tickets}`,
          expiresAt: AT,
        },
      };
    }
    if (request.path === `/v1/runs/${RUN_ID}/steps`) {
      const after = Number(request.query.after ?? 0);
      const limit = Number(request.query.limit ?? 100);
      const items = steps().filter((s) => s.seq > after);
      return {
        body: {
          items: items.slice(0, limit),
          nextAfter: items.length > limit ? items[limit - 1]?.seq : null,
        },
      };
    }
    if (request.path === `/v1/runs/${RUN_ID}`) return { body: run() };
    return { status: 404, body: { error: { code: 'NotFound', message: `no ${request.path}` } } };
  };

  const api = (r: Route = route) => {
    const fake = fakeFetch(r);
    return { client: new ApiClient({ apiUrl: 'http://api.test', token: 'token-1' }, fake.fetch), ...fake };
  };

  return {
    feed,
    follows,
    sockets,
    hooks,
    publish,
    resend,
    route,
    api,
    url,
    get tickets() {
      return tickets;
    },
    /** the connections the server still has open */
    open: () => sockets.filter((s) => s.readyState === s.OPEN),
    /** the connections it has sent the backlog and sends new events to */
    following: () => live.size,
    close: async () => {
      for (const socket of sockets) socket.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

type Stream = Awaited<ReturnType<typeof startStream>>;

let stream: Stream | undefined;
afterEach(async () => {
  await stream?.close();
  stream = undefined;
});

const start = async () => {
  stream = await startStream();
  return stream;
};

const shown = (events: FollowEvent[]) =>
  events.flatMap((e) => (e.type === 'run' ? e.run.status : e.type === 'step' ? `#${e.step.seq}` : []));

/** Follows the run with the stream's follower; `until` waits for what it has sent to satisfy `done`. */
const follow = (s: Stream, options: StreamOptions = {}, api = s.api()) => {
  const events: FollowEvent[] = [];
  const controller = new AbortController();
  const follower = new StreamFollower(api.client, { intervalMs: 5, gapMs: 100, ...options });
  const following = follower.follow(RUN_ID, (e) => void events.push(e), controller.signal);
  following.catch(() => {});
  const until = (done: (seen: string[]) => boolean) =>
    vi.waitFor(() => expect(done(shown(events))).toBe(true), { timeout: 5000, interval: 5 });
  return { events, following, controller, until, requests: api.requests };
};

const stepSeqs = (events: FollowEvent[]) => events.flatMap((e) => (e.type === 'step' ? [e.step.seq] : []));

describe('StreamFollower', () => {
  it('sends the run when the feed says it changed and each step once, in order, and ends with the terminal status', async () => {
    const s = await start();
    s.publish(status('QUEUED'));
    const f = follow(s);
    await f.until((seen) => seen.includes('QUEUED') && s.following() === 1);
    s.publish(status('PROVISIONING'), status('RUNNING'), phase('STARTED'));
    await f.until((seen) => seen.includes('RUNNING'));
    s.publish(step(1), step(2));
    await f.until((seen) => seen.includes('#2'));
    s.publish(cost(), step(3), phase('COMMITTING'), status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    expect(shown(f.events)).toEqual(['QUEUED', 'RUNNING', '#1', '#2', '#3', 'COMPLETED']);
    // one connection, followed from the start
    expect(s.follows).toEqual([0]);
    expect(s.tickets).toBe(1);
    await vi.waitFor(() => expect(s.open()).toEqual([]));
  });

  it('sends a run that waits at a checkpoint after the steps that led there, though it read it sooner', async () => {
    const s = await start();
    s.publish(status('QUEUED'), status('RUNNING'));
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    // the run is read at the phase, when it already waits at the checkpoint the feed has not brought
    s.publish(phase('EXECUTING'), step(1), step(2), pending(), status('AWAITING_APPROVAL'));
    await f.until((seen) => seen.includes('AWAITING_APPROVAL'));
    s.publish(approved(), status('RUNNING'), step(3), status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    expect(shown(f.events)).toEqual(['RUNNING', '#1', '#2', 'AWAITING_APPROVAL', '#3', 'COMPLETED']);
    const atCheckpoint = f.events.find((e) => e.type === 'run' && e.run.status === 'AWAITING_APPROVAL');
    expect(atCheckpoint).toMatchObject({ run: { pendingApproval: { name: 'plan' } } });
  });

  it('waits for the feed’s terminal status though it read the run ended sooner', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    // the run's end is fed a while after its last step
    s.hooks.deliver = (events) => events.filter((e) => e.kind !== 'status');
    s.publish(phase('EXECUTING'), step(1), status('COMPLETED'));
    await f.until((seen) => seen.includes('#1'));
    let ended = false;
    void f.following.then(() => {
      ended = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ended).toBe(false);
    s.resend(4);

    expect(await f.following).toBe('COMPLETED');
    expect(shown(f.events)).toEqual(['RUNNING', '#1', 'COMPLETED']);
  });

  it('puts events that come out of order back in seq order, on the same connection', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    // the second and third events of each publish change places, as two senders may post them
    s.hooks.deliver = (events) =>
      events.length < 3
        ? events
        : [events[0], events[2], events[1], ...events.slice(3)].flatMap((e) => e ?? []);
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    s.publish(step(1), step(2), step(3), step(4));
    s.publish(step(5), step(6), status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    expect(shown(f.events)).toEqual(['RUNNING', '#1', '#2', '#3', '#4', '#5', '#6', 'COMPLETED']);
    expect(s.follows).toEqual([0]);
  });

  it('follows again from the last seq it has when a missing event does not come', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    const f = follow(s, { gapMs: 50 });
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    const first = s.sockets[0];
    // the first connection never gets event 4 (step 3)
    s.hooks.deliver = (events, socket) => (socket === first ? events.filter((e) => e.seq !== 4) : events);
    s.publish(step(1), step(2), step(3), step(4));
    await vi.waitFor(() => expect(s.follows).toHaveLength(2));
    s.publish(status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    expect(s.follows).toEqual([0, 3]);
    expect(shown(f.events)).toEqual(['RUNNING', '#1', '#2', '#3', '#4', 'COMPLETED']);
    expect(f.events).toContainEqual({
      type: 'retrying',
      message: "event 4 of the run's feed did not come",
      delayMs: 5,
    });
  });

  it('resumes after a dropped connection from the last seq received: no step missing, none twice', async () => {
    const s = await start();
    s.publish(status('QUEUED'), status('RUNNING'));
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    s.publish(step(1), step(2), step(3));
    await f.until((seen) => seen.includes('#3'));
    s.sockets[0]?.terminate();
    // while it is away
    s.publish(step(4), step(5));
    await vi.waitFor(() => expect(s.follows).toHaveLength(2));
    s.publish(step(6), status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    // events 1-5: two statuses and three steps
    expect(s.follows).toEqual([0, 5]);
    expect(s.tickets).toBe(2);
    expect(stepSeqs(f.events)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(f.events.filter((e) => e.type === 'retrying')).toEqual([
      { type: 'retrying', message: 'the stream closed the connection (1006)', delayMs: 5 },
    ]);
  });

  it('follows again when a ping goes unanswered', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    s.hooks.answersPings = (socket) => socket !== s.sockets[0];
    const f = follow(s, { pingEveryMs: 20, pongWithinMs: 200 });
    await vi.waitFor(() => expect(s.follows).toHaveLength(2));
    s.publish(step(1), status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    expect(s.follows).toEqual([0, 1]);
    expect(shown(f.events)).toEqual(['RUNNING', '#1', 'COMPLETED']);
    expect(f.events).toContainEqual(
      expect.objectContaining({
        type: 'retrying',
        message: 'the stream did not answer a ping within 0.2 s',
      }),
    );
  });

  it('waits longer after each connection that fails, and polls not once it has had one', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    // the next two tickets name a place nothing answers
    let refused = 0;
    s.hooks.ticketUrl = () => (refused++ < 2 ? 'ws://127.0.0.1:1/?ticket=x' : `${s.url}/?ticket=y`);
    s.sockets[0]?.terminate();
    await vi.waitFor(() => expect(s.follows).toHaveLength(2));
    s.publish(status('COMPLETED'));

    expect(await f.following).toBe('COMPLETED');
    const retries = f.events.filter((e) => e.type === 'retrying');
    expect(retries.map((e) => e.delayMs)).toEqual([5, 10, 20]);
    expect(retries[1]).toMatchObject({
      message: expect.stringMatching(/^could not connect to the stream at ws:\/\/127\.0\.0\.1:1\/: /),
    });
    // the ticket is not in what it says
    expect(JSON.stringify(retries)).not.toContain('ticket=');
    expect(f.requests.filter((r) => r.path.endsWith('/steps'))).toHaveLength(1);
  });

  it('ends with the server’s message when it refuses to follow the run', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    s.hooks.refusal = { code: 'NotFound', message: `run ${RUN_ID} was not found` };
    const f = follow(s);
    await expect(f.following).rejects.toThrow(`run ${RUN_ID} was not found`);
    expect(s.follows).toEqual([0]);
    await vi.waitFor(() => expect(s.open()).toEqual([]));
  });

  it('follows again after a refusal that may pass', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    s.hooks.refusal = { code: 'InternalError', message: 'the request could not be carried out; try again' };
    const f = follow(s);
    await vi.waitFor(() => expect(s.follows.length).toBeGreaterThanOrEqual(1));
    s.hooks.refusal = undefined;
    await vi.waitFor(() => expect(s.follows.length).toBeGreaterThanOrEqual(2));
    s.publish(status('COMPLETED'));
    expect(await f.following).toBe('COMPLETED');
    expect(f.events).toContainEqual(
      expect.objectContaining({
        type: 'retrying',
        message: 'the request could not be carried out; try again',
      }),
    );
  });

  it('stops when aborted, closing its connection', async () => {
    const s = await start();
    s.publish(status('RUNNING'));
    const f = follow(s);
    await f.until((seen) => seen.includes('RUNNING') && s.following() === 1);
    f.controller.abort();
    await expect(f.following).rejects.toMatchObject({ name: 'AbortError' });
    await vi.waitFor(() => expect(s.open()).toEqual([]));
  });

  it('shows a run that ended before its feed began from the API: its steps, then the run', async () => {
    const s = await start();
    s.hooks.run = runFactory({ runId: RUN_ID, status: 'COMPLETED', version: 4 });
    s.hooks.steps = [stepData(1), stepData(2)];
    const f = follow(s);
    expect(await f.following).toBe('COMPLETED');
    expect(shown(f.events)).toEqual(['#1', '#2', 'COMPLETED']);
    expect(s.follows).toEqual([0]);
  });

  it('reads a step the feed carries without text from the API, which has its arguments', async () => {
    const s = await start();
    s.publish(status('RUNNING'), step(1, { kind: 'tool_call', tool: 'bash', content: '' }));
    s.hooks.steps = [
      { ...stepData(1), kind: 'tool_call', tool: 'bash', content: '', args: { command: 'ls' } },
    ];
    const f = follow(s);
    await f.until((seen) => seen.includes('#1'));
    s.publish(status('COMPLETED'));
    await f.following;
    expect(f.events.find((e) => e.type === 'step')).toMatchObject({
      step: { seq: 1, args: { command: 'ls' } },
    });
  });

  describe('without a stream', () => {
    const fallbackOf = (api: ReturnType<Stream['api']>) => {
      const polling = new PollingFollower(api.client, { sleep: async () => {} });
      const follows = vi.spyOn(polling, 'follow');
      return { polling: polling as RunFollower, follows };
    };

    it('polls when the API has no tickets (404)', async () => {
      const s = await start();
      s.publish(status('RUNNING'), step(1), step(2), status('COMPLETED'));
      const api = s.api(withoutStream(s.route));
      const { polling, follows } = fallbackOf(api);
      const f = follow(s, { fallback: polling }, api);
      expect(await f.following).toBe('COMPLETED');
      expect(follows).toHaveBeenCalledOnce();
      expect(shown(f.events)).toEqual(['#1', '#2', 'COMPLETED']);
      expect(s.sockets).toEqual([]);
    });

    it('polls when it cannot connect at all on the first try', async () => {
      const s = await start();
      s.publish(status('RUNNING'), step(1), status('FAILED'));
      s.hooks.ticketUrl = () => 'ws://127.0.0.1:1/?ticket=x';
      const api = s.api();
      const { polling, follows } = fallbackOf(api);
      const f = follow(s, { fallback: polling }, api);
      expect(await f.following).toBe('FAILED');
      expect(follows).toHaveBeenCalledOnce();
      expect(shown(f.events)).toEqual(['#1', 'FAILED']);
    });

    it('says so when it has nothing to fall back on', async () => {
      const s = await start();
      const f = follow(s, {}, s.api(withoutStream(s.route)));
      await expect(f.following).rejects.toThrow(/^the run cannot be followed live: Not Found/);
    });
  });
});

describe('runs watch over the stream', () => {
  /** a run that went through its phases and a checkpoint, ended, its feed whole */
  const endedRun = (s: Stream) =>
    s.publish(
      status('QUEUED'),
      status('RUNNING'),
      phase('PLANNING'),
      step(1),
      step(2, { kind: 'tool_call', tool: 'bash', content: 'ls' }),
      pending(),
      status('AWAITING_APPROVAL'),
      approved(),
      status('RUNNING'),
      phase('EXECUTING'),
      step(3),
      cost(),
      status('COMPLETED'),
    );

  it('follows the stream and shows what polling shows', async () => {
    const s = await start();
    endedRun(s);
    const streamed = await runCli(['watch', RUN_ID], s.route, {}, { stream: true });
    const polled = await runCli(['watch', RUN_ID, '--poll'], s.route, {}, { stream: true });

    expect(streamed.code).toBe(0);
    expect(streamed.stderr).toBe('');
    expect(streamed.stdout).toBe(polled.stdout);
    expect(streamed.stdout).toMatch(/ {2}#1 .*\n {2}#2 .*\n {2}#3 .*\n/);
    expect(s.follows).toEqual([0]);
    expect(streamed.requests.filter((r) => r.method === 'POST').map((r) => r.path)).toEqual([
      '/v1/stream/tickets',
    ]);
    // --poll asks for no ticket
    expect(polled.requests.some((r) => r.path === '/v1/stream/tickets')).toBe(false);
  });

  it('dispatch --watch --poll polls', async () => {
    const s = await start();
    endedRun(s);
    const route: Route = (r) =>
      r.method === 'POST' && r.path === '/v1/projects/proj-1/runs'
        ? { status: 202, body: runFactory({ runId: RUN_ID }) }
        : s.route(r);
    const { code, requests } = await runCli(
      [
        'dispatch',
        '--project',
        'proj-1',
        '--pod',
        'pod-1',
        '--item',
        'I-1',
        '--prompt',
        'p',
        '--watch',
        '--poll',
      ],
      route,
      {},
      { stream: true },
    );
    expect(code).toBe(0);
    expect(requests.some((r) => r.path === '/v1/stream/tickets')).toBe(false);
    expect(s.sockets).toEqual([]);
  });
});
