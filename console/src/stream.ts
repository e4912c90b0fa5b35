import type { ClientMessage, ServerMessage } from '../../shared/schemas/stream.js';
import type { StreamTicket } from '../../shared/schemas/wire.js';
import { api } from './api.js';

/**
 * The WebSocket stream (README "Following runs live"): a single-use ticket, a connection, one
 * `follow` or `followRuns` message. A connection that drops is opened again (after a growing wait),
 * with the message the caller gives for where it stands then, so nothing is missed. When the API
 * has no stream (tickets answer 404 or 501, or no connection ever opens), `onUnavailable` is called
 * once and the caller polls instead.
 */

export interface Subscription {
  close(): void;
}

export interface FeedOptions {
  /** what to send on each (re)connection: a follow resumes after the last seq received */
  message: () => ClientMessage;
  onMessage: (message: ServerMessage) => void;
  onUnavailable: () => void;
}

/** API Gateway closes connections idle for 10 minutes. */
const PING_EVERY_MS = 5 * 60_000;
const MAX_BACKOFF_MS = 10_000;

export const subscribe = (options: FeedOptions): Subscription => {
  let closed = false;
  let socket: WebSocket | undefined;
  let opened = false;
  let failures = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let ping: ReturnType<typeof setInterval> | undefined;

  const again = () => {
    clearInterval(ping);
    if (closed) return;
    if (!opened) {
      closed = true;
      options.onUnavailable();
      return;
    }
    retry = setTimeout(open, Math.min(MAX_BACKOFF_MS, 500 * 2 ** failures++));
  };

  const open = async () => {
    let ticket: StreamTicket;
    try {
      ticket = await api.post<StreamTicket>('/v1/stream/tickets');
    } catch {
      again();
      return;
    }
    if (closed) return;
    const ws = new WebSocket(ticket.url);
    socket = ws;
    ws.onopen = () => {
      opened = true;
      failures = 0;
      ws.send(JSON.stringify(options.message()));
      ping = setInterval(() => ws.send(JSON.stringify({ action: 'ping' })), PING_EVERY_MS);
    };
    ws.onmessage = (event) => {
      try {
        options.onMessage(JSON.parse(String(event.data)) as ServerMessage);
      } catch {
        // a message that is not JSON carries nothing to show
      }
    };
    ws.onclose = () => {
      if (socket === ws) again();
    };
  };

  void open();
  return {
    close: () => {
      closed = true;
      clearTimeout(retry);
      clearInterval(ping);
      // closing a socket still connecting makes the browser warn: it closes once open instead
      if (socket?.readyState === WebSocket.CONNECTING) socket.onopen = () => socket?.close();
      else socket?.close();
    },
  };
};

/** Calls `poll` every `everyMs` until closed; the polling fallback when there is no stream. */
export const poll = (poll: () => Promise<unknown>, everyMs: number): Subscription => {
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    await poll().catch(() => undefined);
    if (!closed) timer = setTimeout(tick, everyMs);
  };
  timer = setTimeout(tick, everyMs);
  return {
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
};

/** The stream, falling back to polling when there is none. */
export const live = (
  options: Omit<FeedOptions, 'onUnavailable'> & { poll: () => Promise<unknown>; pollEveryMs: number },
): Subscription => {
  let fallback: Subscription | undefined;
  const stream = subscribe({
    ...options,
    onUnavailable: () => {
      fallback = poll(options.poll, options.pollEveryMs);
    },
  });
  return {
    close: () => {
      stream.close();
      fallback?.close();
    },
  };
};
