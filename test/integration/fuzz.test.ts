import { createHash } from 'node:crypto';
import { type AttributeValue, paginateScan } from '@aws-sdk/client-dynamodb';
import { paginateListExecutions } from '@aws-sdk/client-sfn';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import fc from 'fast-check';
import { generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { newRunId } from '../../shared/domain/ids.js';
import type { Run } from '../../shared/domain/run.js';
import { MAX_BODY_BYTES } from '../../shared/http/request.js';
import { ROUTES, type RouteDefinition } from '../../shared/manifest.js';
import { agentEventBatchSchema } from '../../shared/schemas/agent-events.js';
import { api, dispatch, endpoints, waitForTerminal } from './support/api.js';
import { approvalLinkFor, dispatchSupervised, waitForApproval } from './support/approvals.js';
import { dynamodb, ecsControl, sfn, sqs, takeOverPod, tokenFor, waitForTaskStopped } from './support/aws.js';

/**
 * Malformed requests over the whole route table, against the local cloud over HTTP: bodies, path
 * ids, query strings, cursors, tokens, approval links and Agent API batches. Whatever arrives, the
 * answer is never a 5xx; a refusal says what was wrong (a JSON error, or an HTML page on the approval
 * link's routes); and nothing is written: no item of the table, no queue message, no execution.
 * API Gateway's own answers (the authorizer's 401, no route's 404, the 10 MB payload limit's 413)
 * keep its own shape, as on AWS.
 *
 * Every request is one the API must refuse or may only read: write routes always get a body their
 * schema refuses, run actions never a run the caller administers, link posts never a valid signature
 * with a valid decision.
 */

const REQUESTS = {
  bodies: 2500,
  pathIds: 2000,
  queries: 1500,
  cursors: 1000,
  tokens: 1300,
  approvalLinks: 1000,
  agentBatches: 700,
};

/** One lane per category sends in sequence; the lanes run side by side. */
const LANES = 2;

type Params = Record<string, string>;

interface Probe {
  route: RouteDefinition;
  /** path parameters, already encoded for the URL */
  params: Params;
  /** raw query string, without `?` */
  query?: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

const routeKey = (route: RouteDefinition) => `${route.method} ${route.path}`;
const parametersOf = (route: RouteDefinition) =>
  [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
const pathOf = (probe: Probe) =>
  probe.route.path.replace(/\{(\w+)\}/g, (_, name: string) => probe.params[name] ?? '');
const route = (key: string): RouteDefinition => {
  const found = ROUTES.find((r) => routeKey(r) === key);
  if (!found) throw new Error(`no route ${key}`);
  return found;
};

/** A valid body of each route that takes one; the fuzzer only ever sends bodies these schemas refuse. */
const AT = '2026-01-01T00:00:00.000Z';
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  'POST /v1/projects/{projectId}/runs': {
    itemId: 'FUZZ-1',
    podId: 'demo-pod',
    mode: 'autopilot',
    prompt: 'p',
  },
  'PUT /v1/pods/{podId}': { name: 'Fuzz', cpu: 256, memoryMiB: 512, agent: { kind: 'demo' } },
  'PUT /v1/projects/{projectId}': { name: 'Fuzz', repos: [], members: [] },
  'PUT /v1/account/limits': { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
  'PUT /v1/account/github': { installationId: 1 },
  'PUT /v1/projects/{projectId}/schedules/{scheduleId}': {
    expression: 'rate(1 hour)',
    podId: 'demo-pod',
    itemId: 'FUZZ-1',
    prompt: 'p',
    mode: 'autopilot',
  },
  'POST /agent/v1/runs/{runId}/events': { events: [{ seq: 1, at: AT, type: 'heartbeat' }] },
  'POST /agent/v1/runs/{runId}/token': {
    code: 'a-launch-code-of-sixteen',
    taskArn: 'arn:aws:ecs:us-east-1:000000000000:task/execution-runs/0123',
  },
};
/** Run actions: they act on the run in the path, so they only ever get one the caller cannot act on. */
const isRunAction = (r: RouteDefinition) =>
  r.method === 'POST' && /^\/v1\/runs\/\{runId\}\/\w+$/.test(r.path);
/** The approval mail's link and its form: public, and answering in HTML. */
const isLink = (r: RouteDefinition) => r.auth === 'none' && r.fn === 'approvals';
/** Deletes: they only ever name a schedule that does not exist (the fixture has none). */
const isDelete = (r: RouteDefinition) => r.method === 'DELETE';
/**
 * Routes that write no record whatever they are sent: a git credential is minted on the git server;
 * GitHub's webhook acts only on a body signed with the App's webhook secret, which no probe has.
 */
const WRITES_NO_RECORD = new Set(['POST /agent/v1/runs/{runId}/git-credentials', 'POST /webhooks/github']);
const takesJsonBody = (r: RouteDefinition) => routeKey(r) in VALID_BODIES;
/**
 * A stream ticket is issued to whoever holds a token, whatever else the request says: an item that
 * expires within a minute, and nothing else. It is not probed (its own tests are the stream's).
 */
const ISSUES_TICKET = (r: RouteDefinition) => routeKey(r) === 'POST /v1/stream/tickets';

// ---------------------------------------------------------------------------------------------------
// what the local cloud holds: the digest of every table item, executions, queue depths

/** Map keys in a fixed order, so the same item always hashes alike. */
const canonical = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;
};

/** the partitions of the request counts (keys.requestWindow) */
const REQUEST_COUNTS = 'REQS#';

const tableItems = async (): Promise<Map<string, string>> => {
  const client = dynamodb();
  const items = new Map<string, string>();
  for await (const page of paginateScan(
    { client },
    { TableName: endpoints().tableName, ConsistentRead: true },
  )) {
    for (const item of (page.Items ?? []) as Record<string, AttributeValue>[]) {
      // every request of an account counts against its limit, refused ones too: the limit's own writes
      if (item.pk?.S?.startsWith(REQUEST_COUNTS)) continue;
      const key = `${item.pk?.S}|${item.sk?.S}`;
      items.set(
        key,
        createHash('sha256')
          .update(JSON.stringify(canonical(item)))
          .digest('hex'),
      );
    }
  }
  client.destroy();
  return items;
};

const digest = (items: Map<string, string>) =>
  createHash('sha256')
    .update([...items.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).join('\n'))
    .digest('hex');

const executionCount = async () => {
  let count = 0;
  for await (const page of paginateListExecutions(
    { client: sfn() },
    { stateMachineArn: endpoints().stateMachineArn },
  )) {
    count += page.executions?.length ?? 0;
  }
  return count;
};

const queueDepth = async (queueUrl: string) => {
  const { Attributes = {} } = await sqs().send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  return Attributes;
};

const snapshot = async () => {
  const items = await tableItems();
  return {
    items,
    state: {
      table: { items: items.size, digest: digest(items) },
      executions: await executionCount(),
      queue: await queueDepth(endpoints().queueUrl),
      deadLetterQueue: await queueDepth(endpoints().deadLetterQueueUrl),
    },
  };
};

/** What earlier test files left running settles first: the table must stay the same for a while. */
const quietSnapshot = async (timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs;
  let last = await snapshot();
  for (;;) {
    await new Promise((r) => setTimeout(r, 1500));
    const next = await snapshot();
    if (JSON.stringify(next.state) === JSON.stringify(last.state)) return next;
    if (Date.now() > deadline) throw new Error('the local cloud did not settle before the fuzzing');
    last = next;
  }
};

// ---------------------------------------------------------------------------------------------------
// the fixture: real runs, cursors, a decided approval link and tokens of every kind

interface Fixture {
  /** `paused` waits for a decision with its pod frozen, so the test can play its pod and nothing moves */
  runs: { finished: Run; supervised: Run; paused: Run };
  agentToken: string;
  approval: { approvalId: string; for: string; sig: string };
  cursors: { list: string; listOfCompleted: string; logsOlder: string; logsAfter: string };
  /**
   * Authorization header values: `admins` may act on the demo project's runs, `others` are valid tokens
   * that may not (a member, another tenant), `invalid` the authorizer or the handler refuses.
   */
  auth: { admins: string[]; others: string[]; invalid: string[] };
}

/**
 * A run paused at a checkpoint whose pod is frozen (SIGSTOP), and a token of the test's own for it: the
 * Agent API takes it, the run stays as it is, and what the fuzzer sends it must never write.
 */
const pausedRunWithToken = async () => {
  const { body } = await dispatchSupervised({ steps: 1, stepDelayMs: 0 });
  const { run } = await waitForApproval(body.runId);
  expect((await ecsControl('/_local/kill', { taskArn: run.taskArn, signal: 'SIGSTOP' })).status).toBe(200);
  return { run, token: await takeOverPod(run.runId) };
};

/** A token the local issuer's checks refuse: signed with another key under the issuer's key id. */
const forgedToken = async (valid: string) => {
  const { privateKey } = await generateKeyPair('RS256');
  const header = JSON.parse(Buffer.from(valid.split('.')[0] ?? '', 'base64url').toString());
  const claims = JSON.parse(Buffer.from(valid.split('.')[1] ?? '', 'base64url').toString());
  return new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
};

const unsigned = (valid: string) => {
  const [, payload] = valid.split('.');
  return `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${payload}.`;
};

const setUp = async (): Promise<Fixture> => {
  const e = endpoints();
  const { body: queued } = await dispatch({ config: { demo: { steps: 2, stepDelayMs: 0, logLines: 40 } } });
  const { body: supervisedQueued } = await dispatchSupervised({ steps: 1, stepDelayMs: 0 });
  const { link } = await approvalLinkFor(supervisedQueued.runId);
  const paused = await pausedRunWithToken();
  expect((await api('POST', `/v1/runs/${supervisedQueued.runId}/approve`)).status).toBe(200);
  const [{ run: finished }, { run: supervised }] = await Promise.all([
    waitForTerminal(queued.runId, 90_000),
    waitForTerminal(supervisedQueued.runId, 90_000),
  ]);
  await Promise.all([finished, supervised].map((r) => waitForTaskStopped(r.taskArn as string)));

  const logs = await api<{ nextCursor: string; afterCursor: string }>(
    'GET',
    `/v1/runs/${finished.runId}/logs?limit=10`,
  );
  const list = await api<{ nextCursor: string }>('GET', '/v1/runs?limit=1');
  const listOfCompleted = await api<{ nextCursor: string }>('GET', '/v1/runs?limit=1&status=COMPLETED');
  const member = await tokenFor({ sub: 'demo-member', accountId: e.accountId, accountRole: 'member' });
  const stranger = (accountId: string) => tokenFor({ sub: 'mallory', accountId, accountRole: 'admin' });
  const expired = await tokenFor(
    { sub: 'demo-admin', accountId: e.accountId, accountRole: 'admin' },
    Math.floor(Date.now() / 1000) - 60,
  );
  return {
    runs: { finished, supervised, paused: paused.run },
    agentToken: paused.token,
    approval: {
      approvalId: link.pathname.split('/').pop() as string,
      for: link.searchParams.get('for') as string,
      sig: link.searchParams.get('sig') as string,
    },
    cursors: {
      list: list.body.nextCursor,
      listOfCompleted: listOfCompleted.body.nextCursor,
      logsOlder: logs.body.nextCursor,
      logsAfter: logs.body.afterCursor,
    },
    auth: {
      // the authorizer takes a token with or without its scheme
      admins: [`Bearer ${e.token}`, e.token],
      others: [`Bearer ${member}`, `Bearer ${await stranger(`acct-other-${Date.now()}`)}`],
      invalid: [
        // tenant claims no account id looks like
        ...(await Promise.all(['x'.repeat(3000), 'a#b', 'ünïcødé', ' ', 'demo-account#x'].map(stranger))).map(
          (t) => `Bearer ${t}`,
        ),
        `Bearer ${expired}`,
        `Bearer ${await forgedToken(e.token)}`,
        `Bearer ${unsigned(e.token)}`,
        `Bearer ${e.token.slice(0, -3)}abc`,
        `Bearer ${e.token.split('.').slice(0, 2).join('.')}`,
        'Bearer',
        'Bearer ',
        'Bearer a.b.c',
        'Bearer not-a-jwt',
        `Bearer ${'x'.repeat(6000)}`,
        'Basic ZGVtby1hZG1pbjpzZWNyZXQ=',
        `Bearer ${e.token} extra`,
      ],
    },
  };
};

// ---------------------------------------------------------------------------------------------------
// arbitraries

const printable = (maxLength: number, minLength = 0) =>
  fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    minLength,
    maxLength,
  });
/** Lone surrogates become U+FFFD, as a client's UTF-8 encoder makes them. */
const wellFormed = (text: string) =>
  text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
const encode = (text: string) => encodeURIComponent(wellFormed(text));
const base64url = fc
  .base64String({ maxLength: 400 })
  .map((b) => b.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'));

/** Ids as a caller could put them in a path: malformed, hostile, or well-formed and unknown. */
const hostileId = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '#',
    'a#b',
    'demo-project#POD#demo-pod',
    '%',
    '%zz',
    '..',
    '.',
    'a b',
    'a/b',
    '?',
    '&x=1',
    'run_',
    'run_0',
    'run_01J0000000000000000000000a',
    '\u0000',
    'null',
    '-lead',
    '9'.repeat(40),
    '-1',
    '1e3',
    '0x10',
    '1.5',
  ),
  fc.string({ minLength: 129, maxLength: 3000, size: 'max' }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,140}$/),
);

/** How the id travels: percent-encoded as a client library would, as typed, or encoded twice. */
const inPath = (id: fc.Arbitrary<string>) =>
  fc.tuple(id, fc.constantFrom('encoded', 'encoded', 'raw', 'twice')).map(([text, how]) => {
    if (how === 'raw') return wellFormed(text);
    return how === 'twice' ? encodeURIComponent(encode(text)) : encode(text);
  });

const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, '', 'x', [], {}, [null], { a: 1 }, '1', 'NaN'),
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.integer(),
  fc.double(),
  fc.bigInt().map((b) => Number(b)),
  fc
    .integer({ min: 1, max: 200 })
    .map((depth) => JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`)),
  fc.anything({ maxDepth: 3 }),
);

const BROKEN_JSON = [
  '',
  ' ',
  '{',
  '[',
  '{"a":',
  '{"a":1,}',
  "{'a':1}",
  'null',
  'true',
  '0',
  '"text"',
  '[]',
  '{}',
  '\u0000',
  'undefined',
  'NaN',
  '\ufeff{}',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
];

/** Texts that are JSON of the wrong shape, or no JSON at all. */
const junkText = fc.oneof(
  fc.constantFrom(...BROKEN_JSON),
  fc.string({ maxLength: 500 }).filter((t) => !t.trim().startsWith('{')),
  fc
    .oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.anything({ maxDepth: 2 })))
    .map((v) => JSON.stringify(v)),
  fc
    .integer({ min: 1, max: 100_000 })
    .map((depth) =>
      depth % 2
        ? `${'['.repeat(depth)}${']'.repeat(depth)}`
        : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
    ),
);

/**
 * A body the route's schema refuses: the valid one with a field changed, dropped or added, junk,
 * raw bytes, or a body over the limit. Strict schemas refuse the unknown field every mutation carries
 * (and still check, and answer for, every other field); the Agent API only reads for a finished run.
 */
const invalidBody = (r: RouteDefinition): fc.Arbitrary<string | Uint8Array> => {
  const valid = VALID_BODIES[routeKey(r)] ?? {};
  const strict = r.auth !== 'agent';
  const mutated = fc
    .record({
      field: fc.constantFrom(...Object.keys(valid), 'unknownField', '__proto__', 'constructor', ''),
      value: wrongValue,
      drop: fc.constantFrom(...Object.keys(valid), 'none'),
    })
    .map(({ field, value, drop }) => {
      const body: Record<string, unknown> = { ...valid, ...(strict ? { fuzzUnknownField: true } : {}) };
      delete body[drop];
      Object.defineProperty(body, field, { value, enumerable: true, configurable: true, writable: true });
      return JSON.stringify(body);
    });
  // over the v1 limit (the Agent API's, 16 times as much, is tried with the batches)
  const oversized = fc
    .integer({ min: 1, max: 4096 })
    .map((extra) => JSON.stringify({ fuzzUnknownField: 'a'.repeat(MAX_BODY_BYTES + extra) }));
  return fc.oneof(
    { weight: 6, arbitrary: mutated },
    { weight: 3, arbitrary: junkText },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2000 }) },
    ...(strict ? [{ weight: 1, arbitrary: oversized }] : []),
  );
};

const CONTENT_TYPES = [
  undefined,
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'text/html',
  'application/xml',
];
const contentType = fc.constantFrom(...CONTENT_TYPES);

const QUERY_VALUES = [
  '0',
  '1',
  '25',
  '100',
  '101',
  '1000',
  '1001',
  '-1',
  '1e2',
  '0x10',
  '1.5',
  '',
  ' 5',
  'NaN',
  'Infinity',
  '9999999999',
  '10000000000',
  'RUNNING',
  'RUNNING,NOPE',
  ',,,',
  'QUEUED,RUNNING,COMPLETED,FAILED,DONE',
  'api',
  'cron',
  'nope',
  '24h',
  '30d',
  '7d',
  'demo-pod',
  'a#b',
];
const QUERY_KEYS: Record<string, string[]> = {
  'GET /v1/runs': ['status', 'source', 'podId', 'limit', 'cursor'],
  'GET /v1/projects/{projectId}/runs': ['status', 'source', 'podId', 'limit', 'cursor'],
  'GET /v1/runs/{runId}/steps': ['after', 'limit'],
  'GET /v1/runs/{runId}/logs': ['limit', 'cursor', 'after'],
  'GET /v1/account/spend': ['window'],
  'GET /approve/{approvalId}': ['for', 'sig'],
};

/** A raw query string, keys repeated at will (API Gateway joins repeated values with commas). */
const queryString = (r: RouteDefinition) =>
  fc
    .array(
      fc.tuple(
        fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom(...(QUERY_KEYS[routeKey(r)] ?? ['limit'])) },
          {
            weight: 1,
            arbitrary: fc.constantFrom('x', 'LIMIT', '', 'limit[]', 'a b', 'cursor ', '__proto__'),
          },
        ),
        fc.oneof(
          fc.constantFrom(...QUERY_VALUES),
          printable(300),
          fc.string({ unit: 'grapheme', maxLength: 40 }),
        ),
        fc.boolean(),
      ),
      { minLength: 1, maxLength: 6 },
    )
    .map((pairs) =>
      pairs
        .map(([k, v, raw]) =>
          raw ? `${k.replace(/[#&=]/g, '')}=${v.replace(/[#&]/g, '')}` : `${encode(k)}=${encode(v)}`,
        )
        .join('&'),
    );

// ---------------------------------------------------------------------------------------------------
// the checks

const GATEWAY_ANSWERS: Record<number, string> = {
  401: 'Unauthorized',
  404: 'Not Found',
  413: 'Request Entity Too Large',
  429: 'Too Many Requests',
};

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

let sent = 0;
const statuses = new Map<number, number>();

const send = async (probe: Probe): Promise<Answer> => {
  const path = pathOf(probe);
  const res = await fetch(`${endpoints().apiUrl}${path}${probe.query ? `?${probe.query}` : ''}`, {
    method: probe.route.method,
    headers: probe.headers,
    body: probe.route.method === 'GET' ? undefined : probe.body,
  });
  sent++;
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
};

const shown = (text: string | Uint8Array | undefined, max = 200) => {
  if (text === undefined) return '';
  const s = typeof text === 'string' ? text : `<${text.length} bytes>`;
  return s.length > max ? `${s.slice(0, max)}…(${s.length})` : s;
};

const check = (probe: Probe, answer: Answer) => {
  const where = `${probe.route.method} ${shown(pathOf(probe))}${probe.query ? `?${shown(probe.query)}` : ''} ${shown(
    JSON.stringify(probe.headers),
  )} ${shown(probe.body)} → ${answer.status} ${shown(answer.text, 400)}`;
  expect(answer.status, where).toBeLessThan(500);
  if (answer.status < 400) return;
  const json = parse(answer.text) as
    | { message?: unknown; error?: { code?: unknown; message?: unknown } }
    | undefined;
  const gateway = GATEWAY_ANSWERS[answer.status];
  if (gateway && json && Object.keys(json).length === 1 && json.message === gateway) return;
  if (isLink(probe.route)) {
    expect(answer.contentType, where).toMatch(/^text\/html/);
    expect(answer.text, where).toMatch(/<h1>[^<]+<\/h1>\s*<p[^>]*>[^<]*\w[^<]*</);
    return;
  }
  expect(answer.contentType, where).toMatch(/^application\/json/);
  expect(json?.error?.code, where).toEqual(expect.any(String));
  expect(json?.error?.message, where).toEqual(expect.stringMatching(/\w/));
};

const fuzz = async (arbitrary: fc.Arbitrary<Probe>, requests: number) => {
  await Promise.all(
    Array.from({ length: LANES }, () =>
      fc.assert(
        fc.asyncProperty(arbitrary, async (probe) => check(probe, await send(probe))),
        { numRuns: Math.ceil(requests / LANES) },
      ),
    ),
  );
};

// ---------------------------------------------------------------------------------------------------

// In order, even when the run shuffles tests: the last one compares what all the others left behind.
describe('the API under malformed input', { shuffle: false }, () => {
  let f: Fixture;
  let before: Awaited<ReturnType<typeof snapshot>>;
  let started = 0;

  beforeAll(async () => {
    f = await setUp();
    before = await quietSnapshot();
    started = Date.now();
  }, 180_000);

  /** Valid and unknown ids of each path parameter; run actions never get a run the caller may act on. */
  const knownIds = (): Record<string, string[]> => ({
    runId: [f.runs.finished.runId, f.runs.supervised.runId],
    projectId: [endpoints().projectId],
    podId: [endpoints().podId],
    approvalId: [f.approval.approvalId],
    seq: ['1', '2'],
    scheduleId: [],
  });
  const UNKNOWN: Record<string, string> = {
    runId: newRunId(),
    projectId: 'no-such-project',
    podId: 'no-such-pod',
    approvalId: 'AAAAAAAAAAAAAAAAAAAAAAAA',
    seq: '9999999999',
    scheduleId: 'no-such-schedule',
  };
  const anyRoute = () => fc.constantFrom(...ROUTES.filter((r) => !ISSUES_TICKET(r)));

  /** Well-formed path parameters: known ones where nothing can be written through them, else unknown. */
  const wellFormedParams = (r: RouteDefinition, authorization: string | undefined) =>
    fc.record(
      Object.fromEntries(
        parametersOf(r).map((name) => {
          const known = knownIds()[name] ?? [];
          // whatever carries the admin's token counts as the admin's
          const actsOnRun = isRunAction(r) && authorization?.includes(endpoints().token) === true;
          return [
            name,
            actsOnRun ? fc.constant(UNKNOWN[name] ?? '') : fc.constantFrom(...known, UNKNOWN[name] ?? ''),
          ];
        }),
      ) as Record<string, fc.Arbitrary<string>>,
    );

  const authFor = (r: RouteDefinition) =>
    r.auth === 'agent'
      ? fc.constantFrom(`Bearer ${f.agentToken}`, `Bearer ${f.runs.finished.runId}.wrong`, ...f.auth.admins)
      : fc.constantFrom(...f.auth.admins, ...f.auth.others);

  /** A request on `r` with well-formed ids, a body its schema refuses, and no query. */
  const baseProbe = (r: RouteDefinition, authorization: fc.Arbitrary<string | undefined> = authFor(r)) =>
    authorization.chain((auth) =>
      fc
        .record({
          params: wellFormedParams(r, auth),
          body: takesJsonBody(r) ? invalidBody(r) : fc.constant(undefined),
          type: contentType,
        })
        .map(
          ({ params, body, type }): Probe => ({
            route: r,
            params,
            headers: {
              ...(auth === undefined ? {} : { authorization: auth }),
              ...(type ? { 'content-type': type } : {}),
            },
            ...(body === undefined ? {} : { body }),
          }),
        ),
    );

  it('knows how to keep every route from writing', () => {
    for (const r of ROUTES) {
      const safe =
        r.method === 'GET' ||
        takesJsonBody(r) ||
        isRunAction(r) ||
        isLink(r) ||
        isDelete(r) ||
        ISSUES_TICKET(r) ||
        WRITES_NO_RECORD.has(routeKey(r));
      expect(safe, routeKey(r)).toBe(true);
    }
  });

  it('answers bodies of the wrong shape, size, encoding or type with a 4xx that says so', async () => {
    const writes = ROUTES.filter(takesJsonBody);
    const arbitrary = fc.constantFrom(...writes).chain((r) => baseProbe(r));
    await fuzz(arbitrary, REQUESTS.bodies);
  });

  it('answers malformed, unknown and hostile path ids with 400 or 404', async () => {
    const withIds = ROUTES.filter((r) => parametersOf(r).length > 0);
    const arbitrary = fc.constantFrom(...withIds).chain((r) =>
      fc
        .tuple(
          baseProbe(r),
          fc.subarray(parametersOf(r), { minLength: 1 }),
          fc.array(inPath(hostileId), { minLength: 2, maxLength: 2 }),
        )
        .map(([probe, names, ids]) => {
          const params = { ...probe.params };
          for (const [i, name] of names.entries()) params[name] = ids[i] ?? '';
          return { ...probe, params };
        }),
    );
    await fuzz(arbitrary, REQUESTS.pathIds);
  });

  it('answers bad limits, statuses, filters, windows and repeated keys in query strings with 400', async () => {
    const reads = ROUTES.filter((r) => r.method === 'GET');
    const arbitrary = fc
      .constantFrom(...reads)
      .chain((r) => fc.tuple(baseProbe(r), queryString(r)))
      .map(([probe, query]) => ({ ...probe, query }));
    await fuzz(arbitrary, REQUESTS.queries);
  });

  it('answers forged, tampered and misused cursors with 400', async () => {
    const valid = Object.values(f.cursors);
    const tampered = fc
      .tuple(
        fc.constantFrom(...valid),
        fc.nat(),
        printable(3, 1),
        fc.constantFrom('replace', 'cut', 'append', 'swap'),
      )
      .map(([cursor, at, text, how]) => {
        const i = at % cursor.length;
        if (how === 'cut') return cursor.slice(0, i);
        if (how === 'append') return `${cursor}${text}`;
        if (how === 'swap') {
          const [payload] = cursor.split('.');
          const other = valid.find((v) => v !== cursor) ?? '';
          return `${payload}.${other.split('.')[1]}`;
        }
        return `${cursor.slice(0, i)}${text}${cursor.slice(i + text.length)}`;
      });
    // what a client could write without the key: a position and the query's public fingerprint
    const handMade = fc
      .tuple(
        fc.oneof(printable(200), fc.string({ unit: 'grapheme', maxLength: 50 }), fc.constantFrom('', 'run_')),
        fc.constantFrom(
          { logs: f.runs.finished.runId, direction: 'older' },
          { logs: f.runs.finished.runId, direction: 'newer' },
          { a: endpoints().accountId },
          { a: endpoints().accountId, p: endpoints().projectId },
        ),
      )
      .map(([position, scope]) =>
        Buffer.from(
          JSON.stringify({
            p: 'logs' in scope ? JSON.stringify({ s: f.runs.finished.logStream, t: position }) : position,
            f: createHash('sha256').update(JSON.stringify(scope)).digest('base64url').slice(0, 12),
          }),
        ).toString('base64url'),
      );
    const cursor = fc.oneof(
      base64url,
      fc.tuple(base64url, base64url).map(([a, b]) => `${a}.${b}`),
      tampered,
      handMade,
      fc.constantFrom(...valid),
    );
    const paged = [
      route('GET /v1/runs'),
      route('GET /v1/projects/{projectId}/runs'),
      route('GET /v1/runs/{runId}/logs'),
    ];
    const arbitrary = fc
      .constantFrom(...paged)
      .chain((r) =>
        fc.tuple(
          baseProbe(r, fc.constant(f.auth.admins[0])),
          fc.constantFrom(...(r.path.endsWith('/logs') ? ['cursor', 'after'] : ['cursor'])),
          cursor,
          fc.constantFrom('', '&limit=5', '&status=COMPLETED', '&status=RUNNING', '&cursor=x'),
        ),
      )
      .map(([probe, name, value, rest]) => ({ ...probe, query: `${name}=${encode(value)}${rest}` }));
    await fuzz(arbitrary, REQUESTS.cursors);
  });

  it('answers missing, malformed, forged, expired and other tenants’ tokens with 401, 403 or 404', async () => {
    const auth = fc.oneof(
      fc.constant(undefined),
      fc.constantFrom(...f.auth.invalid, ...f.auth.others),
      printable(300).map((t) => `Bearer ${t}`),
      printable(100),
    );
    const arbitrary = anyRoute().chain((r) => baseProbe(r, auth));
    await fuzz(arbitrary, REQUESTS.tokens);
  });

  it('answers approval links with bad ids, signatures or forms with an HTML page that says why', async () => {
    const linkValue = (real: string) =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(real) },
        { weight: 1, arbitrary: fc.constant(undefined) },
        {
          weight: 1,
          arbitrary: fc.constantFrom('', 'someone-else', real.slice(1), `${real}x`, real.toUpperCase()),
        },
        { weight: 1, arbitrary: printable(300) },
        { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 60 }) },
        { weight: 1, arbitrary: fc.constant('a'.repeat(3000)) },
      );
    const fields = fc.record({
      approvalId: fc.oneof(
        { weight: 3, arbitrary: fc.constant(encode(f.approval.approvalId)) },
        { weight: 1, arbitrary: fc.constant(UNKNOWN.approvalId ?? '') },
        { weight: 2, arbitrary: inPath(hostileId) },
      ),
      for: linkValue(f.approval.for),
      sig: linkValue(f.approval.sig),
      decision: fc.oneof(
        fc.constantFrom('approve', 'cancel'),
        fc.constantFrom(undefined, '', 'maybe', 'APPROVE', 'approve ', 'approve,cancel'),
        printable(40),
      ),
      extra: fc.array(fc.tuple(printable(20), printable(40)), { maxLength: 3 }),
      method: fc.constantFrom('GET', 'POST'),
      encoding: fc.constantFrom('form', 'form', 'json', 'text', 'oversized', 'bytes'),
      type: contentType,
    });
    const arbitrary = fields
      // a post that could decide (this approval, its recipient, its signature, a real decision) is not sent
      .filter(
        (x) =>
          x.method === 'GET' ||
          !(
            x.approvalId === encode(f.approval.approvalId) &&
            x.for === f.approval.for &&
            x.sig === f.approval.sig &&
            (x.decision === 'approve' || x.decision === 'cancel')
          ),
      )
      .map((x): Probe => {
        const pairs: [string, string][] = [
          ...(x.for === undefined ? [] : [['for', x.for] as [string, string]]),
          ...(x.sig === undefined ? [] : [['sig', x.sig] as [string, string]]),
        ];
        if (x.method === 'GET') {
          return {
            route: route('GET /approve/{approvalId}'),
            params: { approvalId: x.approvalId },
            query: new URLSearchParams([...pairs, ...x.extra]).toString(),
            headers: {},
          };
        }
        // extra fields go first: a repeated key counts with its last value, which stays the one above
        const form = [...x.extra.filter(([k]) => !['for', 'sig', 'decision'].includes(k)), ...pairs];
        if (x.decision !== undefined) form.push(['decision', x.decision]);
        const encoded = new URLSearchParams(form).toString();
        const body = {
          form: encoded,
          json: JSON.stringify(Object.fromEntries(form)),
          text: form.map(([k, v]) => `${k}: ${v}`).join('\n'),
          oversized: `${encoded}&pad=${'a'.repeat(9000)}`,
          bytes: new Uint8Array([0xff, 0xfe, ...Buffer.from(encoded)]),
        }[x.encoding];
        return {
          route: route('POST /approve/{approvalId}'),
          params: { approvalId: x.approvalId },
          headers: { 'content-type': x.type ?? 'application/x-www-form-urlencoded' },
          body,
        };
      });
    await fuzz(arbitrary, REQUESTS.approvalLinks);
  });

  it('answers Agent API calls with bad tokens, malformed events or huge batches with a 4xx, writing nothing', async () => {
    /** Events the schema takes. */
    const event = fc.constantFrom(
      { seq: 1, at: AT, type: 'heartbeat' },
      { seq: 2, at: AT, type: 'phase', phase: 'EXECUTING' },
      {
        seq: 3,
        at: AT,
        type: 'step',
        kind: 'assistant',
        content: 'x',
        usage: { inputTokens: 1, outputTokens: 1 },
      },
      { seq: 4, at: AT, type: 'usage', model: 'm', inputTokens: 1, outputTokens: 1 },
      {
        seq: 5,
        at: AT,
        type: 'artifact',
        kind: 'commit',
        url: 'https://github.com/a/b/commit/1',
      },
      { seq: 6, at: AT, type: 'checkpoint', name: 'plan', summary: 's' },
      { seq: 7, at: AT, type: 'result', outcome: 'completed' },
    );
    /** An event the schema refuses: a valid one with one field made wrong. */
    const malformedEvent = fc
      .tuple(
        fc.constantFrom(
          { seq: 1, at: AT, type: 'usage', model: 'm', inputTokens: 1, outputTokens: 1 },
          {
            seq: 1,
            at: AT,
            type: 'artifact',
            kind: 'commit',
            url: 'https://github.com/a/b/commit/1',
          },
        ),
        fc.constantFrom(
          'seq',
          'at',
          'type',
          'url',
          'inputTokens',
          'outputTokens',
          'cacheReadTokens',
          'kind',
          'model',
        ),
        fc.oneof(
          wrongValue,
          fc.constantFrom(
            -1,
            1.5,
            1e10,
            1e20,
            10_000_000_000,
            100_000_001,
            'javascript:alert(1)',
            'file:///etc/passwd',
            `https://x.io/${'a'.repeat(3000)}`,
          ),
        ),
      )
      .map(([valid, field, value]) => ({ ...valid, [field]: value }));
    const anyEvent = fc.oneof(event, malformedEvent);
    /** Batches the schema refuses: a malformed event among others, too many, too large, or not JSON. */
    const refusedBatch = fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .tuple(fc.array(anyEvent, { maxLength: 10 }), malformedEvent, fc.array(anyEvent, { maxLength: 10 }))
          .map(([before, bad, after]) => JSON.stringify({ events: [...before, bad, ...after] }))
          // a wrong value in a field the event does not have is dropped, not refused
          .filter((body) => !agentEventBatchSchema.safeParse(JSON.parse(body)).success),
      },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 501, max: 2000 }).map((n) =>
          JSON.stringify({
            events: Array.from({ length: n }, (_, seq) => ({ seq, at: AT, type: 'heartbeat' })),
          }),
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constant(
          JSON.stringify({
            events: [
              { seq: 1, at: AT, type: 'step', kind: 'assistant', content: 'a'.repeat(4 * 1024 * 1024) },
            ],
          }),
        ),
      },
      { weight: 2, arbitrary: junkText },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2000 }) },
    );
    /** Any batch, the schema's accepted ones included: for runs no token of the test's may write to. */
    const anyBatch = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.array(event, { maxLength: 20 }).map((events) => JSON.stringify({ events })),
      },
      { weight: 7, arbitrary: refusedBatch },
    );
    const agent = ROUTES.filter((r) => r.auth === 'agent');
    // The paused run takes the test's token, so it only ever gets what the schema refuses; the others
    // (ended, unknown, hostile ids) refuse the token, so they get anything.
    const target = fc.oneof(
      { weight: 4, arbitrary: fc.record({ runId: fc.constant(f.runs.paused.runId), body: refusedBatch }) },
      {
        weight: 3,
        arbitrary: fc.record({
          runId: fc.oneof(
            fc.constant(f.runs.finished.runId),
            fc.constant(f.runs.supervised.runId),
            fc.constant(newRunId()),
            inPath(hostileId),
          ),
          body: anyBatch,
        }),
      },
    );
    const arbitrary = fc
      .record({
        r: fc.constantFrom(...agent),
        target,
        auth: fc.oneof(
          { weight: 4, arbitrary: fc.constant(`Bearer ${f.agentToken}`) },
          {
            weight: 2,
            arbitrary: fc.constantFrom(
              undefined,
              'Bearer',
              `Bearer ${f.runs.finished.runId}.wrong`,
              `Bearer ${f.runs.supervised.runId}.${f.agentToken.split('.')[1]}`,
              `Bearer ${f.agentToken}x`,
              f.agentToken,
              ...f.auth.admins,
            ),
          },
          { weight: 1, arbitrary: printable(200).map((t) => `Bearer ${t}`) },
        ),
        type: contentType,
      })
      .map(
        ({ r, target: { runId, body }, auth, type }): Probe => ({
          route: r,
          params: { runId },
          headers: {
            ...(auth === undefined ? {} : { authorization: auth }),
            ...(type ? { 'content-type': type } : {}),
          },
          ...(r.method === 'POST' ? { body } : {}),
        }),
      );
    await fuzz(arbitrary, REQUESTS.agentBatches);
  });

  it('answers bodies over API Gateway’s 10 MB with its own 413', async () => {
    for (const r of [route('PUT /v1/pods/{podId}'), route('POST /agent/v1/runs/{runId}/events')]) {
      const probe: Probe = {
        route: r,
        params: { podId: 'demo-pod', runId: f.runs.paused.runId },
        headers: { authorization: `Bearer ${r.auth === 'agent' ? f.agentToken : endpoints().token}` },
        body: `{"a":"${'a'.repeat(10 * 1024 * 1024)}"}`,
      };
      const answer = await send(probe);
      expect(answer.status).toBe(413);
      check(probe, answer);
    }
  });

  it('wrote nothing: the same table items, no queue message, no execution', async () => {
    expect(sent).toBeGreaterThanOrEqual(Object.values(REQUESTS).reduce((a, b) => a + b, 0));
    // anything a request set off (a queued run, an execution) would be under way by now
    await new Promise((r) => setTimeout(r, 1000));
    const after = await snapshot();
    const changed = [...new Set([...before.items.keys(), ...after.items.keys()])].filter(
      (key) => before.items.get(key) !== after.items.get(key),
    );
    expect(changed).toEqual([]);
    expect(after.state).toEqual(before.state);
    console.info(
      `fuzzed ${sent} requests in ${Math.round((Date.now() - started) / 1000)} s; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`,
    );
  });
});
