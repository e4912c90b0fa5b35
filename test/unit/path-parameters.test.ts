import { describe, expect, it, vi } from 'vitest';
import { makeHandler as makeAgentApi } from '../../functions/agent-api.js';
import { makeHandler as makeApi } from '../../functions/api.js';
import { makeHandler as makeApprovals } from '../../functions/approvals.js';
import { makeHandler as makeSchedules } from '../../functions/schedules.js';
import { ROUTES } from '../../shared/manifest.js';
import { PATH_PARAMETERS } from '../../shared/schemas/ids.js';
import { httpEvent, lambdaContext } from '../support/factories.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

/**
 * The account's request limit comes before anything: its counter and the read of the account's own
 * limit look up the caller's account, not the request's ids.
 */
const ACCOUNT_LIMIT_CALLS = new Set(['requests.count', 'directory.getAccount']);

/** Dependencies that find nothing and record every call, so a test can tell whether a request got past the edge. */
const emptyDeps = () => {
  const calls: string[] = [];
  const port = (name: string) =>
    new Proxy(
      {},
      {
        get: (_, method) =>
          vi.fn(async () => {
            const call = `${name}.${String(method)}`;
            if (!ACCOUNT_LIMIT_CALLS.has(call)) calls.push(call);
            // the limit admits every request
            return call === 'requests.count' ? 1 : undefined;
          }),
      },
    );
  const deps = new Proxy({} as Record<string, unknown>, {
    get: (_, name) => (name === 'clock' ? { now: () => new Date() } : port(String(name))),
  });
  return { deps, calls };
};

const claims = { tenant: 'custom:accountId', accountRole: 'custom:accountRole' };

const handlerFor = (fn: string, deps: never) => {
  switch (fn) {
    case 'api':
      return makeApi(deps, { ...claims, webSocketUrl: 'wss://ws.example.com/live' });
    case 'agentApi':
      return makeAgentApi(deps, { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 });
    case 'schedules':
      return makeSchedules(deps, claims);
    default:
      return makeApprovals(deps, { secret: async () => 's'.repeat(32), claims });
  }
};

const VALID: Record<string, string> = {
  runId: 'run_01J0000000000000000000000A',
  projectId: 'proj-1',
  podId: 'pod-1',
  scheduleId: 'nightly',
  approvalId: 'AbCdEfGhIjKlMnOpQrStUvWx',
  seq: '12',
};

const INVALID: Record<string, string[]> = {
  runId: [
    'r'.repeat(3000),
    'run_1',
    'run_01J0000000000000000000000a',
    'run_01J000000000000000000000#A',
    'run_ü',
  ],
  projectId: ['p'.repeat(3000), 'a#b', 'a/b', '-lead', 'ünïcødé', 'a b'],
  podId: ['p'.repeat(129), 'a#b', '.hidden', 'pod\u0000'],
  scheduleId: ['s'.repeat(129), 'a#b', 'a/b', '_lead', 'every minute'],
  approvalId: ['short', 'x'.repeat(65), 'AbCdEfGhIjKlMnOp#rStUvWx', 'AbCdEfGhIjKlMnOp/rStUvWx'],
  seq: ['-1', '1e3', '0x10', ' 7', '10000000000', '99999999999999999999', 'abc', '1.5'],
};

const parametersOf = (path: string) => [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);

const cases = ROUTES.flatMap((route) =>
  parametersOf(route.path).flatMap((name) => (INVALID[name] ?? []).map((value) => ({ route, name, value }))),
);

describe('path parameters', () => {
  it('are each described in one place', () => {
    const used = new Set(ROUTES.flatMap((route) => parametersOf(route.path)));
    expect([...used].sort()).toEqual(Object.keys(PATH_PARAMETERS).sort());
    for (const name of used) expect(INVALID[name]?.length).toBeGreaterThan(0);
  });

  it.each(
    cases.map((c) => [
      `${c.route.method} ${c.route.path}`,
      c.name,
      c.value.length > 40 ? `${c.value.slice(0, 12)}… (${c.value.length})` : JSON.stringify(c.value),
      c,
    ]),
  )('%s refuses %s %s with a 400 that says what is wrong, before any lookup', async (_, __, ___, c) => {
    const { deps, calls } = emptyDeps();
    const pathParameters = Object.fromEntries(
      parametersOf(c.route.path).map((name) => [name, name === c.name ? c.value : (VALID[name] as string)]),
    );
    const res = await handlerFor(c.route.fn, deps as never)(
      httpEvent(`${c.route.method} ${c.route.path}`, {
        pathParameters,
        headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
        body: '{}',
      }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(400);
    expect(calls).toEqual([]);
    if (c.route.auth === 'none') {
      expect((res as { headers: Record<string, string> }).headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain(c.name);
    } else {
      const { error } = JSON.parse(res.body);
      expect(error.code).toBe('ValidationError');
      expect(error.message).toContain(c.name);
      // the answer does not echo a huge value back
      expect(res.body.length).toBeLessThan(1000);
    }
  });

  it.each([
    ['GET /v1/runs/{runId}', { runId: VALID.runId }],
    ['GET /v1/runs/{runId}/steps/{seq}/content', { runId: VALID.runId, seq: '9999999999' }],
    ['GET /v1/pods/{podId}', { podId: 'a'.repeat(128) }],
    ['GET /v1/projects/{projectId}', { projectId: VALID.projectId }],
    ['GET /v1/projects/{projectId}/schedules/{scheduleId}', { projectId: 'p', scheduleId: 'nightly' }],
  ])('%s answers a well-formed id it does not know with 404', async (routeKey, pathParameters) => {
    const { deps } = emptyDeps();
    const route = ROUTES.find((r) => `${r.method} ${r.path}` === routeKey);
    const res = await handlerFor(route?.fn ?? 'api', deps as never)(
      httpEvent(routeKey, { pathParameters: pathParameters as Record<string, string> }),
      lambdaContext(),
    );
    expect(res.statusCode).toBe(404);
  });
});
