import { PassThrough } from 'node:stream';
import { vi } from 'vitest';
import type { Io } from '../../cli/context.js';
import { main } from '../../cli/main.js';

/** The CLI run in-process against a fake API: what it wrote, and every request it made. */

export interface Request {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  headers: Headers;
}

export type Route = (request: Request) => {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
};

/** A `fetch` that answers from `route`; a route that throws is a network failure. */
export const fakeFetch = (route: Route) => {
  const requests: Request[] = [];
  const fetch = vi.fn(async (input: string | URL | globalThis.Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const request: Request = {
      method: init?.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
      headers: new Headers(init?.headers),
    };
    requests.push(request);
    const answer = route(request);
    const text =
      answer.body === undefined
        ? ''
        : typeof answer.body === 'string'
          ? answer.body
          : JSON.stringify(answer.body);
    return new Response(text || null, {
      status: answer.status ?? 200,
      headers: { 'content-type': 'application/json', ...answer.headers },
    });
  });
  return { fetch: fetch as unknown as typeof globalThis.fetch, requests };
};

export const sink = () => {
  let text = '';
  return {
    write: (s: string) => {
      text += s;
      return true;
    },
    get text() {
      return text;
    },
  };
};

/** An API without the WebSocket stream, as API Gateway answers a route it does not have. */
export const withoutStream =
  (route: Route): Route =>
  (request) =>
    request.method === 'POST' && request.path === '/v1/stream/tickets'
      ? { status: 404, body: { message: 'Not Found' } }
      : route(request);

/**
 * Runs `runs argv` against `route`. The fake API has no stream (`runs watch` polls it) unless
 * `stream` says the route answers `POST /v1/stream/tickets` itself.
 */
export const runCli = async (
  argv: string[],
  route: Route,
  io: Partial<Io> = {},
  { stream = false }: { stream?: boolean } = {},
) => {
  const stdout = sink();
  const stderr = sink();
  const api = fakeFetch(stream ? route : withoutStream(route));
  const code = await main(argv, {
    stdout,
    stderr,
    stdin: new PassThrough(),
    env: { RUNS_API_URL: 'http://api.test', RUNS_TOKEN: 'token-1', RUNS_CONFIG: '/nonexistent/runs.json' },
    fetch: api.fetch,
    now: () => new Date('2026-01-01T01:00:00.000Z'),
    pollMs: 1,
    ...io,
  });
  return { code, stdout: stdout.text, stderr: stderr.text, requests: api.requests };
};
