import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type RunningApiGateway, startApiGateway } from '../../infra/local/api-gateway.js';
import { createDevIssuer, type DevIssuer } from '../../infra/local/dev-auth.js';
import { type FunctionName, ROUTES, type RouteDefinition } from '../../shared/manifest.js';

const ISSUER = 'http://127.0.0.1/dev-issuer';
const AUDIENCE = 'execution-runs-api';

const TEST_ROUTES: RouteDefinition[] = [
  ...ROUTES,
  { method: 'GET', path: '/things/{thingId}', fn: 'api', auth: 'none' },
  { method: 'GET', path: '/things/latest', fn: 'agentApi', auth: 'none' },
  { method: 'POST', path: '/things/{thingId}', fn: 'api', auth: 'none' },
  { method: 'GET', path: '/files/{path+}', fn: 'api', auth: 'none' },
];

describe('startApiGateway', () => {
  let issuer: DevIssuer;
  let gateway: RunningApiGateway;
  let token: string;
  const calls: Array<{ fn: FunctionName; event: APIGatewayProxyEventV2 }> = [];
  const logged: string[] = [];
  let respond: (event: APIGatewayProxyEventV2) => unknown;

  beforeAll(async () => {
    issuer = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE });
    token = await issuer.sign({ sub: 'user-1', 'custom:accountId': 'acct_1', groups: ['admin', 'dev'] });
    gateway = await startApiGateway({
      routes: TEST_ROUTES,
      accountId: '111122223333',
      verifyJwt: issuer.verify,
      invoke: async (fn, event) => {
        calls.push({ fn, event });
        return respond(event);
      },
      logError: (message) => logged.push(message),
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  beforeEach(() => {
    calls.length = 0;
    respond = () => ({ statusCode: 200, body: 'ok' });
  });

  const lastEvent = () => calls.at(-1)?.event as APIGatewayProxyEventV2WithJWTAuthorizer;
  const authorized = (headers: Record<string, string> = {}) => ({
    authorization: `Bearer ${token}`,
    ...headers,
  });

  it('turns a request into a payload 2.0 event with the route, path, query, headers and cookies', async () => {
    await fetch(`${gateway.url}/v1/runs/run%201?status=RUNNING&status=QUEUED&q=a%20b&empty=`, {
      headers: authorized({ 'X-Custom': 'one', cookie: 'session=abc; theme=dark' }),
    });

    expect(calls).toHaveLength(1);
    expect(calls[0]?.fn).toBe('api');
    const event = lastEvent();
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: 'GET /v1/runs/{runId}',
      rawPath: '/v1/runs/run%201',
      rawQueryString: 'status=RUNNING&status=QUEUED&q=a%20b&empty=',
      queryStringParameters: { status: 'RUNNING,QUEUED', q: 'a b', empty: '' },
      pathParameters: { runId: 'run 1' },
      cookies: ['session=abc', 'theme=dark'],
      isBase64Encoded: false,
      requestContext: {
        accountId: '111122223333',
        routeKey: 'GET /v1/runs/{runId}',
        stage: '$default',
        http: { method: 'GET', path: '/v1/runs/run%201', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1' },
      },
    });
    expect(event.headers['x-custom']).toBe('one');
    expect(event.headers.cookie).toBeUndefined();
    expect(event.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(event.body).toBeUndefined();
    expect(event.requestContext.apiId).toMatch(/^[a-z0-9]{10}$/);
    expect(event.requestContext.time).toMatch(/^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000$/);
    expect(Math.abs(event.requestContext.timeEpoch - Date.now())).toBeLessThan(5000);
  });

  it('passes the verified claims as strings, as the JWT authorizer does', async () => {
    await fetch(`${gateway.url}/v1/runs`, { headers: authorized() });

    const { claims, scopes } = lastEvent().requestContext.authorizer.jwt;
    expect(claims).toMatchObject({
      sub: 'user-1',
      'custom:accountId': 'acct_1',
      groups: '[admin dev]',
      iss: ISSUER,
      aud: AUDIENCE,
    });
    expect(claims.exp).toMatch(/^\d+$/);
    expect(scopes).toBeNull();
  });

  it('joins repeated headers with commas', async () => {
    // fetch would merge them itself; a raw request sends the header twice
    await new Promise<void>((resolve, reject) => {
      const req = request(`${gateway.url}/v1/runs`, { headers: { authorization: `Bearer ${token}` } });
      req.setHeader('x-multi', ['a', 'b']);
      req.on('response', (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end();
    });

    expect(lastEvent().headers['x-multi']).toBe('a,b');
  });

  describe('the JWT authorizer', () => {
    const expectUnauthorized = async (headers: Record<string, string>) => {
      const response = await fetch(`${gateway.url}/v1/runs`, { headers });
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ message: 'Unauthorized' });
      expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(calls).toHaveLength(0);
    };

    it('refuses a request without a token', async () => {
      await expectUnauthorized({});
    });

    it('refuses a token signed by another key', async () => {
      const impostor = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE });
      await expectUnauthorized({ authorization: `Bearer ${await impostor.sign({ sub: 'x' })}` });
    });

    it('refuses an expired token', async () => {
      await expectUnauthorized({ authorization: `Bearer ${await issuer.sign({ sub: 'x' }, -10)}` });
    });

    it('refuses a token for another audience or from another issuer', async () => {
      await expectUnauthorized({ authorization: `Bearer ${await issuer.sign({ aud: 'someone-else' })}` });
      await expectUnauthorized({
        authorization: `Bearer ${await issuer.sign({ iss: 'https://elsewhere' })}`,
      });
    });

    it('refuses a token that is not valid yet', async () => {
      const notBefore = Math.floor(Date.now() / 1000) + 300;
      await expectUnauthorized({ authorization: `Bearer ${await issuer.sign({ nbf: notBefore })}` });
    });

    it('refuses garbage', async () => {
      await expectUnauthorized({ authorization: 'Bearer not.a.jwt' });
    });

    it('accepts an access token that names the audience in client_id', async () => {
      const accessToken = await issuer.sign({ client_id: AUDIENCE, token_use: 'access' });
      const response = await fetch(`${gateway.url}/v1/runs`, { headers: { authorization: accessToken } });

      expect(response.status).toBe(200);
      expect(lastEvent().requestContext.authorizer.jwt.claims.client_id).toBe(AUDIENCE);
    });

    it('leaves agent routes to the function, with no authorizer context', async () => {
      const response = await fetch(`${gateway.url}/agent/v1/runs/run_1/control`, {
        headers: { authorization: 'Bearer run-scoped-token' },
      });

      expect(response.status).toBe(200);
      expect(calls[0]?.fn).toBe('agentApi');
      expect(lastEvent().headers.authorization).toBe('Bearer run-scoped-token');
      expect('authorizer' in lastEvent().requestContext).toBe(false);
    });
  });

  describe('delivery faults', () => {
    const events = (body: string) =>
      fetch(`${gateway.url}/agent/v1/runs/run_1/events`, { method: 'POST', body });
    const fault = (rule: unknown) =>
      fetch(`${gateway.url}/_local/faults`, { method: 'POST', body: JSON.stringify(rule) });

    it('delivers a request again later, after what came meanwhile, as many times as asked', async () => {
      expect(
        (await fault({ routeKey: 'POST /agent/v1/runs/{runId}/events', times: 1, replayAfterMs: 100 }))
          .status,
      ).toBe(200);
      expect((await events('first')).status).toBe(200);
      expect((await events('second')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(calls.map((c) => c.event.body)).toEqual(['first', 'second', 'first']);
    });

    it('loses the answer of a request the function handled, as a timed-out gateway does', async () => {
      await fault({ routeKey: 'POST /agent/v1/runs/{runId}/events', times: 1, loseAnswer: true });
      expect((await events('lost')).status).toBe(504);
      expect(calls.map((c) => c.event.body)).toEqual(['lost']);
      expect((await events('kept')).status).toBe(200);
    });

    it('refuses a malformed rule and clears the rules on DELETE', async () => {
      expect((await fault({ routeKey: 'GET /x', times: 0 })).status).toBe(400);
      await fault({ routeKey: 'POST /agent/v1/runs/{runId}/events', times: 5, loseAnswer: true });
      expect((await fetch(`${gateway.url}/_local/faults`, { method: 'DELETE' })).status).toBe(200);
      expect((await events('after')).status).toBe(200);
    });
  });

  describe('route matching', () => {
    it('prefers a literal segment to a parameter', async () => {
      await fetch(`${gateway.url}/things/latest`);
      await fetch(`${gateway.url}/things/other`);

      expect(calls.map((c) => [c.fn, c.event.routeKey])).toEqual([
        ['agentApi', 'GET /things/latest'],
        ['api', 'GET /things/{thingId}'],
      ]);
    });

    it('gives a greedy parameter the rest of the path', async () => {
      await fetch(`${gateway.url}/files/a/b%20c/d.txt`);

      expect(lastEvent().pathParameters).toEqual({ path: 'a/b c/d.txt' });
    });

    it('answers 404 for an unknown path or a method the path has no route for', async () => {
      for (const [method, path] of [
        ['GET', '/nowhere'],
        ['GET', '/v1/runs/run_1/unknown'],
        ['PUT', '/v1/runs'],
        ['GET', '/things/'],
      ] as const) {
        const response = await fetch(`${gateway.url}${path}`, { method, headers: authorized() });
        expect(response.status).toBe(404);
        expect(await response.json()).toEqual({ message: 'Not Found' });
      }
      expect(calls).toHaveLength(0);
    });

    it('answers HEAD from a GET route with its headers and no body', async () => {
      respond = () => ({
        statusCode: 200,
        headers: { 'content-type': 'text/html' },
        body: '<p>approve?</p>',
      });

      const response = await fetch(`${gateway.url}/things/abc`, { method: 'HEAD' });

      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/html');
      expect(response.headers.get('content-length')).toBe('15');
      expect(await response.text()).toBe('');
      expect(lastEvent().routeKey).toBe('GET /things/{thingId}');
    });

    it('answers a CORS preflight for a route path without invoking anything', async () => {
      const response = await fetch(`${gateway.url}/v1/runs/run_1`, {
        method: 'OPTIONS',
        headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'GET' },
      });

      expect(response.status).toBe(204);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      expect(response.headers.get('access-control-allow-methods')).toBe('GET,OPTIONS');
      expect(response.headers.get('access-control-allow-headers')).toBe(
        'authorization,content-type,idempotency-key',
      );
      expect(calls).toHaveLength(0);
    });

    it('allows only the origins it is configured with, as the deployed CORS configuration does', async () => {
      const consoleOrigin = 'http://127.0.0.1:4524';
      const restricted = await startApiGateway({
        routes: TEST_ROUTES,
        verifyJwt: issuer.verify,
        invoke: async () => ({ statusCode: 200, body: 'ok' }),
        allowOrigins: [consoleOrigin],
      });
      try {
        const preflight = (origin: string) =>
          fetch(`${restricted.url}/v1/runs/run_1`, {
            method: 'OPTIONS',
            headers: { origin, 'access-control-request-method': 'GET' },
          });

        const fromConsole = await preflight(consoleOrigin);
        const fromElsewhere = await preflight('https://elsewhere.example');
        const read = await fetch(`${restricted.url}/things/abc`, { headers: { origin: consoleOrigin } });

        expect(fromConsole.headers.get('access-control-allow-origin')).toBe(consoleOrigin);
        expect(fromElsewhere.headers.get('access-control-allow-origin')).toBeNull();
        expect(read.headers.get('access-control-allow-origin')).toBe(consoleOrigin);
      } finally {
        await restricted.close();
      }
    });
  });

  describe('bodies', () => {
    it('passes a JSON body as text', async () => {
      await fetch(`${gateway.url}/v1/projects/proj_1/runs`, {
        method: 'POST',
        headers: authorized({ 'content-type': 'application/json; charset=utf-8', 'idempotency-key': 'k1' }),
        body: '{"prompt":"héllo"}',
      });

      expect(lastEvent()).toMatchObject({
        routeKey: 'POST /v1/projects/{projectId}/runs',
        pathParameters: { projectId: 'proj_1' },
        body: '{"prompt":"héllo"}',
        isBase64Encoded: false,
      });
      expect(lastEvent().headers['idempotency-key']).toBe('k1');
    });

    it('base64-encodes form posts and binary bodies, as HTTP APIs do', async () => {
      await fetch(`${gateway.url}/things/abc`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'decision=approve&sig=x',
      });
      expect(lastEvent()).toMatchObject({
        body: Buffer.from('decision=approve&sig=x').toString('base64'),
        isBase64Encoded: true,
      });

      await fetch(`${gateway.url}/things/abc`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: new Uint8Array([0, 255, 1]),
      });
      expect(lastEvent()).toMatchObject({ body: 'AP8B', isBase64Encoded: true });
    });

    it('answers 413 above 10 MB without invoking the function', async () => {
      const response = await fetch(`${gateway.url}/things/abc`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: 'x'.repeat(10 * 1024 * 1024 + 1),
      });

      expect(response.status).toBe(413);
      expect(calls).toHaveLength(0);
    });
  });

  describe('response mapping', () => {
    it('uses statusCode, headers, multiValueHeaders, cookies and body', async () => {
      respond = () => ({
        statusCode: 202,
        headers: { 'Content-Type': 'application/json', 'X-Run': 'run_1' },
        multiValueHeaders: { 'x-many': ['a', 'b'] },
        cookies: ['a=1; Path=/', 'b=2; HttpOnly'],
        body: '{"runId":"run_1"}',
      });

      const response = await fetch(`${gateway.url}/things/abc`);

      expect(response.status).toBe(202);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(response.headers.get('x-run')).toBe('run_1');
      expect(response.headers.get('x-many')).toBe('a, b');
      expect(response.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
      expect(response.headers.get('apigw-requestid')).toMatch(/=$/);
      expect(await response.json()).toEqual({ runId: 'run_1' });
    });

    it('decodes a base64 body', async () => {
      respond = () => ({
        statusCode: 200,
        headers: { 'content-type': 'image/png' },
        body: Buffer.from([137, 80, 78, 71]).toString('base64'),
        isBase64Encoded: true,
      });

      const response = await fetch(`${gateway.url}/things/abc`);

      expect([...new Uint8Array(await response.arrayBuffer())]).toEqual([137, 80, 78, 71]);
    });

    it('sends any other result as JSON with status 200', async () => {
      respond = () => ({ items: [1, 2], nextCursor: null });
      const objectResponse = await fetch(`${gateway.url}/things/abc`);
      respond = () => 'plain';
      const stringResponse = await fetch(`${gateway.url}/things/abc`);

      expect(objectResponse.status).toBe(200);
      expect(objectResponse.headers.get('content-type')).toBe('application/json');
      expect(await objectResponse.json()).toEqual({ items: [1, 2], nextCursor: null });
      expect(await stringResponse.json()).toBe('plain');
    });

    it('answers 500 and logs when the function fails or returns a broken response', async () => {
      respond = () => {
        throw new Error('boom');
      };
      const failed = await fetch(`${gateway.url}/things/abc`);
      respond = () => ({ statusCode: 'teapot' });
      const broken = await fetch(`${gateway.url}/things/abc`);

      for (const response of [failed, broken]) {
        expect(response.status).toBe(500);
        expect(await response.json()).toEqual({ message: 'Internal Server Error' });
      }
      expect(logged.slice(-2)).toEqual([
        expect.stringMatching(/GET \/things\/\{thingId\}.*api failed/),
        expect.stringMatching(/GET \/things\/\{thingId\}.*api failed/),
      ]);
    });
  });
});

describe('route throttles', () => {
  it('fill each route’s bucket of its own; a request that finds it empty gets 429 and reaches no function', async () => {
    const invoked: string[] = [];
    const throttled: RouteDefinition[] = [
      { method: 'GET', path: '/slow', fn: 'api', auth: 'none' },
      { method: 'GET', path: '/other', fn: 'api', auth: 'none' },
    ];
    const gateway = await startApiGateway({
      routes: throttled,
      verifyJwt: async () => ({}),
      invoke: async (_, event) => {
        invoked.push(event.routeKey);
        return { statusCode: 200, body: 'ok' };
      },
      throttleOf: (route) =>
        route.path === '/slow' ? { rateLimit: 5, burstLimit: 3 } : { rateLimit: 1000, burstLimit: 1000 },
    });
    try {
      const get = async (path: string) => {
        const res = await fetch(`${gateway.url}${path}`);
        return { status: res.status, body: await res.text() };
      };
      const burst = [];
      for (let i = 0; i < 4; i++) burst.push(await get('/slow'));
      expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 429]);
      expect(JSON.parse(burst[3]?.body ?? '')).toEqual({ message: 'Too Many Requests' });
      expect(invoked.filter((k) => k === 'GET /slow')).toHaveLength(3);
      expect((await get('/other')).status).toBe(200);
      // five a second: one more after 200 ms
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect((await get('/slow')).status).toBe(200);
    } finally {
      await gateway.close();
    }
  });
});

describe('createDevIssuer', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dev-issuer-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps its key pair, so tokens stay valid across restarts', async () => {
    const keyPath = join(dir, 'keys', 'dev-issuer.json');
    const first = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE, keyPath });
    const issued = await first.sign({ sub: 'user-1' });

    const second = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE, keyPath });

    await expect(second.verify(issued)).resolves.toMatchObject({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE });
    expect(JSON.parse(await readFile(keyPath, 'utf8'))).toHaveProperty('d');
  });

  it('publishes only the public key in its JWKS', async () => {
    const issuer = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE });

    const [key] = issuer.jwks().keys;

    expect(key).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
    expect(key?.kid).toBeTruthy();
    expect(key).not.toHaveProperty('d');
    expect(key).not.toHaveProperty('p');
  });

  it('refuses a token issued in the future', async () => {
    const issuer = await createDevIssuer({ issuer: ISSUER, audience: AUDIENCE });
    const future = Math.floor(Date.now() / 1000) + 600;

    await expect(issuer.verify(await issuer.sign({ iat: future }))).rejects.toThrow(/iat/);
  });
});
