import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket, { type RawData } from 'ws';
import { isTerminal, type Run, type RunStatus } from '../shared/domain/run.js';
import type { ServerMessage, StepPage, StepView, StreamTicket } from '../shared/schemas/wire.js';
import type { ApiReader, CallOptions } from './client.js';
import { ApiError, CliError, isRetryable, NetworkError, retryDelayMs, StreamError } from './errors.js';
import { backoffMs, type FollowEvent, type FollowHandler, type RunFollower } from './follow.js';
import { firstLine } from './format.js';

/** The part of the client the stream's follower needs: reads, and asking for tickets. */
export interface StreamApi extends ApiReader {
  post<T>(path: string, options?: CallOptions): Promise<T>;
}

export interface StreamOptions {
  /** followed instead when the API has no stream: tickets answer 404 or 501, or no connection can be made */
  fallback?: RunFollower;
  /** the first wait before trying again after a failure (doubling from there) */
  intervalMs?: number;
  /** the longest wait between attempts after failures */
  maxBackoffMs?: number;
  /** how long an event may be missing while later ones have come before the run is followed again */
  gapMs?: number;
  /** between pings (API Gateway closes a connection idle for 10 minutes) */
  pingEveryMs?: number;
  /** a ping unanswered this long means the connection is gone */
  pongWithinMs?: number;
  /** steps asked for per request */
  pageSize?: number;
}

type EventMessage = Extract<ServerMessage, { type: 'event' }>;

const HANDSHAKE_MS = 10_000;
/** a close frame the server does not answer within this ends the socket anyway */
const CLOSE_GRACE_MS = 1000;

/** The API has no stream to follow: the follow starts over with the fallback. */
class NoStream extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoStream';
  }
}

/**
 * Follows a run over the WebSocket stream: a ticket from `POST /v1/stream/tickets`, then
 * `{"action":"follow","runId","after"}` on the connection; the server sends the run's feed from
 * there, each event numbered 1, 2, 3, ... Events are handled in seq order (two senders may post
 * consecutive ones a moment apart out of order), each once; a gap that stays open, a closed
 * connection or a ping left unanswered follow the run again on a new connection from the last seq
 * received. What it sends is what the polling follower sends: the run (read from the API when the
 * feed says it changed) and each step.
 */
export class StreamFollower implements RunFollower {
  constructor(
    private readonly api: StreamApi,
    private readonly options: StreamOptions = {},
  ) {}

  async follow(runId: string, onEvent: FollowHandler, signal?: AbortSignal): Promise<RunStatus> {
    try {
      return await new Following(this.api, this.options, runId, onEvent, signal).run();
    } catch (err) {
      if (!(err instanceof NoStream)) throw err;
      if (!this.options.fallback) throw new CliError(`the run cannot be followed live: ${err.message}`);
      return this.options.fallback.follow(runId, onEvent, signal);
    }
  }
}

/** How one connection ended, when the follow goes on. */
interface Dropped {
  reason: Error;
  /** it had sent the backlog: the connection worked */
  caughtUp: boolean;
}

/** The run shown before the steps while the agent works; after them once it waits or has ended. */
const stepsFirst = (run: Run) => isTerminal(run.status) || run.status === 'AWAITING_APPROVAL';

/** One follow of one run: where its feed stands, the connection it comes on, and what was sent. */
class Following {
  private readonly intervalMs: number;
  private readonly maxBackoffMs: number;
  private readonly gapMs: number;
  private readonly pingEveryMs: number;
  private readonly pongWithinMs: number;
  private readonly pageSize: number;
  private readonly path: string;

  /** aborted when the follow is over, however it ends: requests, waits and the socket stop */
  private readonly stop = new AbortController();
  private finished = false;
  private resolve!: (status: RunStatus) => void;
  private reject!: (err: unknown) => void;
  private readonly done = new Promise<RunStatus>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });

  // ---- the feed as received
  /** the last seq received with every seq before it */
  private through = 0;
  /** events after a gap, by seq */
  private readonly early = new Map<number, EventMessage>();
  /** the seq the server said it had sent through (`caught-up`) */
  private promised = 0;
  private gapTimer: NodeJS.Timeout | undefined;
  /** the connection in use has sent the backlog */
  private caughtUp = false;
  /** events in order, not handled yet */
  private readonly ready: EventMessage[] = [];
  private wake: (() => void) | undefined;

  // ---- what was sent
  private sending: Promise<void> = Promise.resolve();
  private version: number | undefined;
  /** the run read ahead of the feed, at a checkpoint or ended: sent when the feed gets there */
  private held: Run | undefined;
  /** the last status the feed has brought */
  private feedStatus: string | undefined;
  private lastStep = 0;
  /** the status of a run that had ended when the follow began */
  private endedAtStart: RunStatus | undefined;

  // ---- the connection
  private socket: WebSocket | undefined;
  private connected = false;
  /** ends the connection in use, so the run is followed again on a new one */
  private drop: ((reason?: Error) => void) | undefined;

  constructor(
    private readonly api: StreamApi,
    options: StreamOptions,
    private readonly runId: string,
    private readonly onEvent: FollowHandler,
    private readonly signal?: AbortSignal,
  ) {
    this.intervalMs = options.intervalMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.gapMs = options.gapMs ?? 2000;
    this.pingEveryMs = options.pingEveryMs ?? 5 * 60_000;
    this.pongWithinMs = options.pongWithinMs ?? 10_000;
    this.pageSize = options.pageSize ?? 100;
    this.path = `/v1/runs/${encodeURIComponent(runId)}`;
  }

  async run(): Promise<RunStatus> {
    this.signal?.throwIfAborted();
    const aborted = () => this.finish({ error: this.signal?.reason });
    this.signal?.addEventListener('abort', aborted, { once: true });
    try {
      this.handleFeed().catch((error: unknown) => this.finish({ error }));
      this.connect().catch((error: unknown) => this.finish({ error }));
      return await this.done;
    } finally {
      this.signal?.removeEventListener('abort', aborted);
    }
  }

  private finish(end: { status: RunStatus } | { error: unknown }): void {
    if (this.finished) return;
    this.finished = true;
    this.stop.abort();
    clearTimeout(this.gapTimer);
    this.drop?.();
    if (this.socket) close(this.socket);
    this.wake?.();
    if ('status' in end) this.resolve(end.status);
    else this.reject(end.error);
  }

  /** Events to the handler one at a time, in the order they were sent. */
  private emit(event: FollowEvent): Promise<void> {
    const sent = this.sending.then(() => this.onEvent(event));
    this.sending = sent.catch(() => {});
    return sent;
  }

  private async retry(err: unknown, failures: number): Promise<void> {
    const delayMs = retryDelayMs(err, backoffMs(failures, this.intervalMs, this.maxBackoffMs));
    await this.emit({ type: 'retrying', message: (err as Error).message, delayMs });
    await sleep(delayMs, undefined, { signal: this.stop.signal });
  }

  /** A request, asked again with backoff while it fails in a way that may pass. */
  private async withRetry<T>(request: () => Promise<T>): Promise<T> {
    for (let failures = 0; ; failures++) {
      try {
        return await request();
      } catch (err) {
        if (this.stop.signal.aborted || !isRetryable(err)) throw err;
        await this.retry(err, failures);
      }
    }
  }

  private getRun(): Promise<Run> {
    return this.withRetry(() => this.api.get<Run>(this.path, { signal: this.stop.signal }));
  }

  // ---- connections

  /**
   * Connects, follows, and follows again on a new connection whenever one ends before the run does:
   * after the shortest wait when the connection had worked (sent the backlog), a growing one after
   * each that did not.
   */
  private async connect(): Promise<void> {
    // the run as it is when the watch starts (and a run that is not there is said in the API's words)
    let first: Run | undefined = await this.getRun();
    if (isTerminal(first.status)) this.endedAtStart = first.status;
    let failures = 0;
    while (!this.finished) {
      let reason: unknown;
      try {
        const socket = await this.open();
        if (first) {
          await this.showRun(first);
          first = undefined;
        }
        const dropped = await this.follow(socket);
        if (!dropped) return;
        if (dropped.caughtUp) failures = 0;
        reason = dropped.reason;
      } catch (err) {
        if (this.finished) return;
        if (!isRetryable(err)) throw err;
        reason = err;
      }
      if (this.finished) return;
      await this.retry(reason, failures++);
    }
  }

  /** A ticket and a connection with it; no stream at all (never connected yet) starts over with the fallback. */
  private async open(): Promise<WebSocket> {
    let ticket: StreamTicket;
    try {
      ticket = await this.api.post<StreamTicket>('/v1/stream/tickets', { signal: this.stop.signal });
    } catch (err) {
      const absent = err instanceof ApiError && (err.status === 404 || err.status === 501);
      if (absent && !this.connected) throw new NoStream(err.message);
      throw err;
    }
    try {
      const socket = await this.connectTo(ticket.url);
      this.connected = true;
      return socket;
    } catch (err) {
      if (!this.connected && !this.finished) throw new NoStream((err as Error).message);
      throw err;
    }
  }

  private connectTo(url: string): Promise<WebSocket> {
    // the ticket is a secret: messages name the stream without it
    const where = url.split('?')[0];
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { handshakeTimeout: HANDSHAKE_MS });
      this.socket = socket;
      // a failure is followed by a close, which says what matters
      socket.on('error', () => {});
      const refused = (err: Error) => {
        socket.off('open', opened);
        reject(new NetworkError(`could not connect to the stream at ${where}: ${err.message}`));
      };
      const opened = () => {
        socket.off('error', refused);
        resolve(socket);
      };
      socket.once('open', opened);
      socket.once('error', refused);
      if (this.finished) socket.terminate();
    });
  }

  /**
   * Follows the run on `socket` from the last seq received. Resolves when the connection is over:
   * with why when the follow goes on, with nothing when the follow has ended.
   */
  private follow(socket: WebSocket): Promise<Dropped | undefined> {
    this.caughtUp = false;
    return new Promise((resolve) => {
      let pong: NodeJS.Timeout | undefined;
      const pinger = setInterval(() => {
        socket.send(JSON.stringify({ action: 'ping' }));
        pong ??= setTimeout(
          () =>
            over(new NetworkError(`the stream did not answer a ping within ${this.pongWithinMs / 1000} s`)),
          this.pongWithinMs,
        );
      }, this.pingEveryMs);
      const over = (reason?: Error) => {
        if (this.drop !== over) return;
        this.drop = undefined;
        clearInterval(pinger);
        clearTimeout(pong);
        clearTimeout(this.gapTimer);
        this.gapTimer = undefined;
        socket.off('message', received);
        socket.off('close', closed);
        close(socket);
        resolve(reason && !this.finished ? { reason, caughtUp: this.caughtUp } : undefined);
      };
      const received = (data: RawData) => {
        const message = parse(data);
        if (!message) return;
        if ('runId' in message && message.runId !== undefined && message.runId !== this.runId) return;
        switch (message.type) {
          case 'event':
            this.receive(message);
            break;
          case 'caught-up':
            this.caughtUp = true;
            this.promised = Math.max(this.promised, message.seq);
            this.watchGap(false);
            this.wake?.();
            break;
          case 'pong':
            clearTimeout(pong);
            pong = undefined;
            break;
          case 'error': {
            const err = new StreamError(message.message, message.code);
            if (err.retryable) over(err);
            else this.finish({ error: err });
            break;
          }
          default: {
            // API Gateway's own answer when the function behind a route failed
            const text = (message as { message?: unknown }).message;
            if (typeof text === 'string') over(new StreamError(text, 'InternalError'));
          }
        }
      };
      const closed = (code: number, why: Buffer) =>
        over(new NetworkError(`the stream closed the connection (${[code, String(why)].join(' ').trim()})`));
      this.drop = over;
      socket.on('message', received);
      socket.on('close', closed);
      if (socket.readyState !== WebSocket.OPEN)
        return over(new NetworkError('the stream closed the connection'));
      socket.send(JSON.stringify({ action: 'follow', runId: this.runId, after: this.through }));
    });
  }

  // ---- the feed, in seq order

  private receive(event: EventMessage): void {
    if (event.seq <= this.through || this.early.has(event.seq)) return;
    this.early.set(event.seq, event);
    const before = this.through;
    for (let next = this.early.get(this.through + 1); next; next = this.early.get(this.through + 1)) {
      this.early.delete(next.seq);
      this.through = next.seq;
      this.ready.push(next);
    }
    const progressed = this.through !== before;
    this.watchGap(progressed);
    if (progressed) this.wake?.();
  }

  /** A seq missing for `gapMs` while later ones (or the server's word that it sent them) have come. */
  private watchGap(progressed: boolean): void {
    const open = this.early.size > 0 || this.promised > this.through;
    if (!open) {
      clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
      return;
    }
    if (this.gapTimer && !progressed) return;
    clearTimeout(this.gapTimer);
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      this.drop?.(new NetworkError(`event ${this.through + 1} of the run's feed did not come`));
    }, this.gapMs);
  }

  /**
   * The next event in seq order; the status of a run that ended where its feed has no end (see
   * below); nothing once the follow is over.
   */
  private async next(): Promise<EventMessage | RunStatus | undefined> {
    while (!this.finished && this.ready.length === 0) {
      const ended = this.endedBeyondFeed();
      if (ended) return ended;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
    return this.finished ? undefined : this.ready.shift();
  }

  /**
   * The run had ended when the follow began, and its feed, sent whole, has not brought its end: a
   * run older than its feed. Its steps and its end come from the API, as polling would read them.
   */
  private endedBeyondFeed(): RunStatus | undefined {
    const gap = this.early.size > 0 || this.promised > this.through;
    return this.caughtUp && !gap ? this.endedAtStart : undefined;
  }

  /**
   * Sends each step, and the run when the events between two steps changed it (read once for
   * them all), until the feed's terminal status.
   */
  private async handleFeed(): Promise<void> {
    for (let event = await this.next(); event; event = await this.next()) {
      if (typeof event === 'string') return this.end(event);
      if (event.kind === 'step') {
        await this.step(event.data as unknown as StepView);
        continue;
      }
      let ended: RunStatus | undefined;
      for (let e: EventMessage | undefined = event; e && !ended; e = this.nextOfGroup()) {
        if (e.kind !== 'status') continue;
        this.feedStatus = String(e.data.status);
        if (isTerminal(this.feedStatus as RunStatus)) ended = this.feedStatus as RunStatus;
      }
      if (ended) return this.end(ended);
      await this.refresh();
    }
  }

  private nextOfGroup(): EventMessage | undefined {
    const next = this.ready[0];
    return next && next.kind !== 'step' ? this.ready.shift() : undefined;
  }

  private async step(step: StepView, fromTheApi = false): Promise<void> {
    if (step.seq <= this.lastStep) return;
    this.lastStep = step.seq;
    await this.emit({ type: 'step', step: fromTheApi ? step : await this.asTheApiShows(step) });
  }

  /**
   * The feed leaves out a step's arguments; a step shown by them (no text of its own) is read from
   * the API, as the polling follower would have shown it.
   */
  private async asTheApiShows(step: StepView): Promise<StepView> {
    if (firstLine(step.content ?? '')) return step;
    try {
      const page = await this.api.get<StepPage>(`${this.path}/steps`, {
        query: { after: step.seq - 1, limit: 1 },
        signal: this.stop.signal,
      });
      const read = page.items[0];
      return read?.seq === step.seq ? read : step;
    } catch (err) {
      if (this.stop.signal.aborted) throw err;
      return step;
    }
  }

  /** The run after events that changed it: read it, unless it was read past this point of the feed already. */
  private async refresh(): Promise<void> {
    if (this.held) {
      if (this.feedStatus !== this.held.status) return;
      const run = this.held;
      this.held = undefined;
      return this.showRun(run);
    }
    return this.showRun(await this.getRun());
  }

  /**
   * Sends the run if it changed. A run that waits at a checkpoint or has ended comes after the steps
   * that led there, as the polling follower sends it: held until the feed has brought that status.
   */
  private async showRun(run: Run): Promise<void> {
    if (stepsFirst(run) && run.status !== this.feedStatus) {
      this.held = run;
      return;
    }
    if (run.version === this.version) return;
    this.version = run.version;
    await this.emit({ type: 'run', run });
  }

  /** The feed ended: any step recorded after its end, then the run as it ended. */
  private async end(status: RunStatus): Promise<void> {
    this.held = undefined;
    for (;;) {
      const page = await this.withRetry(() =>
        this.api.get<StepPage>(`${this.path}/steps`, {
          query: { after: this.lastStep, limit: this.pageSize },
          signal: this.stop.signal,
        }),
      );
      for (const step of page.items) await this.step(step, true);
      if (page.nextAfter === null || page.items.length === 0) break;
    }
    const run = await this.getRun();
    if (run.version !== this.version) {
      this.version = run.version;
      await this.emit({ type: 'run', run });
    }
    this.finish({ status: isTerminal(run.status) ? run.status : status });
  }
}

const parse = (data: RawData): ServerMessage | undefined => {
  try {
    const message: unknown = JSON.parse(String(data));
    return typeof message === 'object' && message !== null ? (message as ServerMessage) : undefined;
  } catch {
    return undefined;
  }
};

/** Closes with a close frame, and drops the socket if the server does not answer it. */
const close = (socket: WebSocket) => {
  if (socket.readyState === WebSocket.CONNECTING) return socket.terminate();
  if (socket.readyState !== WebSocket.OPEN) return;
  socket.close(1000);
  setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
};
