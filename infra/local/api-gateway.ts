import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEventV2, APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { z } from 'zod';
import type { FunctionName, RouteDefinition, RouteThrottle } from '../../shared/manifest.js';

/**
 * The local API Gateway HTTP API: it matches routes as API Gateway does, runs the JWT authorizer on
 * `jwt` routes, hands the function a payload format 2.0 event and maps its result back to HTTP, so the
 * handlers behind it run exactly as deployed.
 */

export interface ApiGatewayOptions {
  port?: number;
  host?: string;
  routes: RouteDefinition[];
  invoke: (fn: FunctionName, event: APIGatewayProxyEventV2) => Promise<unknown>;
  /** Resolves to the token's claims, rejects when the authorizer would refuse it. */
  verifyJwt: (token: string) => Promise<Record<string, unknown>>;
  accountId?: string;
  /** the origins a browser may call the API from, as the HTTP API's CORS configuration names them (default: any) */
  allowOrigins?: string[];
  /** each route's throttle, as the stage's route settings give it (default: none) */
  throttleOf?: (route: RouteDefinition) => RouteThrottle;
  logError?: (message: string, err: unknown) => void;
}

export interface RunningApiGateway {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** HTTP API's payload limit. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Verified against HTTP APIs: only these arrive as text; every other body (form posts too) is base64. */
const TEXT_MEDIA_TYPES = new Set(['application/json', 'application/xml', 'application/javascript']);

const CORS_ALLOW_HEADERS = 'authorization,content-type,idempotency-key';

/**
 * A network fault the gateway plays on the next `times` requests of a route (its route key, e.g.
 * `POST /agent/v1/runs/{runId}/events`): each is delivered again `replayAfterMs` later (a duplicate
 * that arrives after whatever came meanwhile), and/or its answer is lost (the caller gets API
 * Gateway's 504 although the function ran). Set with `POST /_local/faults`, cleared with DELETE.
 */
const deliveryFaultSchema = z.strictObject({
  routeKey: z.string(),
  times: z.int().positive(),
  replayAfterMs: z.int().nonnegative().optional(),
  loseAnswer: z.boolean().optional(),
});
type DeliveryFault = z.infer<typeof deliveryFaultSchema>;
const FAULTS_PATH = '/_local/faults';

type Segment =
  | { kind: 'literal'; value: string }
  | { kind: 'param'; name: string }
  | { kind: 'greedy'; name: string };

interface CompiledRoute {
  route: RouteDefinition;
  segments: Segment[];
}

interface RouteMatch {
  route: RouteDefinition;
  pathParameters: Record<string, string>;
  /** per segment: 0 literal, 1 parameter, 2 greedy; lower is more specific */
  rank: number[];
}

const splitPath = (path: string) => path.split('/').slice(1);

const compileRoute = (route: RouteDefinition): CompiledRoute => ({
  route,
  segments: splitPath(route.path).map((part): Segment => {
    const param = /^\{([^}+]+)(\+?)\}$/.exec(part);
    if (!param) return { kind: 'literal', value: part };
    return param[2]
      ? { kind: 'greedy', name: param[1] as string }
      : { kind: 'param', name: param[1] as string };
  }),
});

const decode = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

const matchRoute = (compiled: CompiledRoute, rawSegments: string[]): RouteMatch | undefined => {
  const pathParameters: Record<string, string> = {};
  const rank: number[] = [];
  for (const [i, segment] of compiled.segments.entries()) {
    const raw = rawSegments[i];
    if (raw === undefined || raw === '') return undefined;
    if (segment.kind === 'literal') {
      if (decode(raw) !== segment.value) return undefined;
      rank.push(0);
    } else if (segment.kind === 'param') {
      pathParameters[segment.name] = decode(raw);
      rank.push(1);
    } else {
      pathParameters[segment.name] = decode(rawSegments.slice(i).join('/'));
      rank.push(2);
      return { route: compiled.route, pathParameters, rank };
    }
  }
  return rawSegments.length === compiled.segments.length
    ? { route: compiled.route, pathParameters, rank }
    : undefined;
};

/** API Gateway prefers, segment by segment from the left, a literal over a parameter over a greedy one. */
const moreSpecific = (a: RouteMatch, b: RouteMatch): number => {
  for (let i = 0; i < Math.max(a.rank.length, b.rank.length); i++) {
    const diff = (a.rank[i] ?? 3) - (b.rank[i] ?? 3);
    if (diff !== 0) return diff;
  }
  return 0;
};

/** The authorizer passes claims on as strings, arrays as `[a b]` and objects as `map[k:v]` (Go's %v). */
const claimText = (value: unknown): string => {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return `[${value.map(claimText).join(' ')}]`;
  if (value === null || value === undefined) return '<nil>';
  if (typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `map[${entries.map(([k, v]) => `${k}:${claimText(v)}`).join(' ')}]`;
  }
  return String(value);
};

const pad = (n: number) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** `12/Mar/2020:19:03:58 +0000`, the requestContext.time format */
export const requestTime = (d: Date) =>
  `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(
    d.getUTCMinutes(),
  )}:${pad(d.getUTCSeconds())} +0000`;

const isTextBody = (contentType: string | undefined) => {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  return mediaType !== undefined && (mediaType.startsWith('text/') || TEXT_MEDIA_TYPES.has(mediaType));
};

/** The body, or undefined when it exceeds the limit (read to the end so the client gets the answer). */
const readBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });

const sendJson = (res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
};

interface HttpResponse {
  statusCode: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/** Payload format 2.0: a result with a statusCode is the response; anything else is a JSON 200. */
const toHttpResponse = (result: unknown): HttpResponse => {
  if (typeof result !== 'object' || result === null || !('statusCode' in result)) {
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(result) ?? 'null'),
    };
  }
  const r = result as {
    statusCode: unknown;
    headers?: Record<string, unknown>;
    multiValueHeaders?: Record<string, unknown[]>;
    cookies?: unknown[];
    body?: unknown;
    isBase64Encoded?: boolean;
  };
  const statusCode = Number(r.statusCode);
  if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 599) {
    throw new Error(`invalid statusCode in the function's response: ${String(r.statusCode)}`);
  }
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(r.headers ?? {})) headers[name.toLowerCase()] = String(value);
  for (const [name, values] of Object.entries(r.multiValueHeaders ?? {})) {
    const key = name.toLowerCase();
    const existing = headers[key];
    const previous = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
    headers[key] = [...previous, ...values.map(String)];
  }
  if (r.cookies?.length) headers['set-cookie'] = r.cookies.map(String);
  const text = typeof r.body === 'string' ? r.body : r.body === undefined ? '' : JSON.stringify(r.body);
  return { statusCode, headers, body: Buffer.from(text, r.isBase64Encoded ? 'base64' : 'utf8') };
};

/**
 * A route's token bucket, as API Gateway throttles: it holds `burstLimit` requests and refills at
 * `rateLimit` a second; a request that finds it empty is answered 429 before anything else is done.
 */
class RouteBucket {
  private tokens: number;
  private refilledAtMs: number;

  constructor(
    private readonly throttle: RouteThrottle,
    nowMs: number,
  ) {
    this.tokens = throttle.burstLimit;
    this.refilledAtMs = nowMs;
  }

  take(nowMs: number): boolean {
    const refill = ((nowMs - this.refilledAtMs) / 1000) * this.throttle.rateLimit;
    this.tokens = Math.min(this.throttle.burstLimit, this.tokens + refill);
    this.refilledAtMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export const startApiGateway = async (options: ApiGatewayOptions): Promise<RunningApiGateway> => {
  const { routes, invoke, verifyJwt, accountId = '000000000000', host = '127.0.0.1' } = options;
  const logError = options.logError ?? ((message, err) => console.error(message, err));
  const compiled = routes.map(compileRoute);
  const apiId = randomBytes(5).toString('hex');
  // CORS as HTTP APIs answer it: a listed origin is echoed, any origin is `*`, an unlisted one gets no header
  const allowedOrigin = (origin: string | undefined) => {
    if (!origin) return undefined;
    if (!options.allowOrigins) return '*';
    return options.allowOrigins.includes(origin) ? origin : undefined;
  };

  const find = (method: string, rawSegments: string[]): RouteMatch | undefined =>
    compiled
      .filter((c) => c.route.method === method)
      .map((c) => matchRoute(c, rawSegments))
      .filter((m): m is RouteMatch => m !== undefined)
      .sort(moreSpecific)[0];

  const buildEvent = (
    req: IncomingMessage,
    match: RouteMatch,
    body: Buffer,
    requestId: string,
    now: Date,
  ): APIGatewayProxyEventV2 => {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const rawPath = queryAt === -1 ? url : url.slice(0, queryAt);
    const rawQueryString = queryAt === -1 ? '' : (url.slice(queryAt + 1).split('#')[0] ?? '');
    const routeKey = `${match.route.method} ${match.route.path}`;
    const sourceIp = (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');

    const headers: Record<string, string> = {};
    let cookies: string[] | undefined;
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      if (!values) continue;
      // Cookies travel in their own field, not among the headers.
      if (name === 'cookie')
        cookies = values.flatMap((v) => v.split(';').map((c) => c.trim())).filter(Boolean);
      else headers[name] = values.join(',');
    }
    headers['x-forwarded-for'] = headers['x-forwarded-for']
      ? `${headers['x-forwarded-for']}, ${sourceIp}`
      : sourceIp;
    headers['x-forwarded-port'] = String(req.socket.localPort ?? '');
    headers['x-forwarded-proto'] = 'http';
    headers['x-amzn-trace-id'] =
      `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;

    const query: Record<string, string> = {};
    for (const [key, value] of new URLSearchParams(rawQueryString)) {
      query[key] = key in query ? `${query[key]},${value}` : value;
    }

    const domainName = headers.host ?? `${host}:${req.socket.localPort}`;
    const text = isTextBody(headers['content-type']);
    return {
      version: '2.0',
      routeKey,
      rawPath,
      rawQueryString,
      ...(cookies ? { cookies } : {}),
      headers,
      ...(rawQueryString ? { queryStringParameters: query } : {}),
      ...(Object.keys(match.pathParameters).length > 0 ? { pathParameters: match.pathParameters } : {}),
      requestContext: {
        accountId,
        apiId,
        domainName,
        domainPrefix: domainName.split('.')[0] ?? domainName,
        http: {
          // a HEAD served by a GET route reaches the function as the GET it is
          method: match.route.method,
          path: rawPath,
          protocol: `HTTP/${req.httpVersion}`,
          sourceIp,
          userAgent: headers['user-agent'] ?? '',
        },
        requestId,
        routeKey,
        stage: '$default',
        time: requestTime(now),
        timeEpoch: now.getTime(),
      },
      ...(body.length > 0 ? { body: body.toString(text ? 'utf8' : 'base64') } : {}),
      isBase64Encoded: body.length > 0 && !text,
    };
  };

  /** The JWT authorizer: claims for the event, or undefined after answering 401. */
  const authorize = async (req: IncomingMessage, res: ServerResponse, baseHeaders: OutgoingHttpHeaders) => {
    const header = req.headers.authorization;
    const token = header?.replace(/^Bearer\s+/i, '').trim();
    if (!token) {
      sendJson(res, 401, { message: 'Unauthorized' }, { ...baseHeaders, 'www-authenticate': 'Bearer' });
      return undefined;
    }
    try {
      return await verifyJwt(token);
    } catch {
      sendJson(
        res,
        401,
        { message: 'Unauthorized' },
        { ...baseHeaders, 'www-authenticate': 'Bearer error="invalid_token"' },
      );
      return undefined;
    }
  };

  const buckets = new Map<string, RouteBucket>();
  const faults: DeliveryFault[] = [];
  const takeFault = (routeKey: string): DeliveryFault | undefined => {
    const fault = faults.find((f) => f.routeKey === routeKey && f.times > 0);
    if (fault) fault.times -= 1;
    return fault;
  };
  const setFaults = (method: string, body: Buffer, res: ServerResponse) => {
    if (method === 'DELETE') faults.length = 0;
    else {
      let input: unknown;
      try {
        input = JSON.parse(body.toString('utf8') || '{}');
      } catch {
        return sendJson(res, 400, { message: 'the body is not JSON' });
      }
      const parsed = deliveryFaultSchema.safeParse(input);
      if (!parsed.success) return sendJson(res, 400, { message: parsed.error.message });
      faults.push(parsed.data);
    }
    sendJson(res, 200, { faults });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const now = new Date();
    const requestId = `${randomBytes(10).toString('base64').slice(0, 14)}=`;
    const baseHeaders: OutgoingHttpHeaders = { 'apigw-requestid': requestId };
    const origin = allowedOrigin(req.headers.origin);
    if (origin) baseHeaders['access-control-allow-origin'] = origin;

    const body = await readBody(req);
    const method = req.method ?? 'GET';
    const rawSegments = splitPath((req.url ?? '/').split('?')[0] ?? '/');

    if (method === 'OPTIONS') {
      const methods = new Set(
        compiled.filter((c) => matchRoute(c, rawSegments)).map((c) => c.route.method as string),
      );
      if (methods.size === 0) return sendJson(res, 404, { message: 'Not Found' }, baseHeaders);
      res.writeHead(204, {
        ...baseHeaders,
        'access-control-allow-methods': [...methods, 'OPTIONS'].join(','),
        'access-control-allow-headers': CORS_ALLOW_HEADERS,
        'access-control-max-age': '600',
      });
      return res.end();
    }

    if (body === undefined) return sendJson(res, 413, { message: 'Request Entity Too Large' }, baseHeaders);
    if ((req.url ?? '').split('?')[0] === FAULTS_PATH && (method === 'POST' || method === 'DELETE')) {
      return setFaults(method, body, res);
    }
    // Browsers and mail scanners send HEAD to links; a GET route answers it unless a HEAD route exists.
    const match = find(method, rawSegments) ?? (method === 'HEAD' ? find('GET', rawSegments) : undefined);
    if (!match) return sendJson(res, 404, { message: 'Not Found' }, baseHeaders);

    const routeKey = `${match.route.method} ${match.route.path}`;
    if (options.throttleOf) {
      let bucket = buckets.get(routeKey);
      if (!bucket) {
        bucket = new RouteBucket(options.throttleOf(match.route), now.getTime());
        buckets.set(routeKey, bucket);
      }
      if (!bucket.take(now.getTime()))
        return sendJson(res, 429, { message: 'Too Many Requests' }, baseHeaders);
    }

    let event = buildEvent(req, match, body, requestId, now);
    if (match.route.auth === 'jwt') {
      const claims = await authorize(req, res, baseHeaders);
      if (!claims) return;
      const withAuthorizer: APIGatewayProxyEventV2WithJWTAuthorizer = {
        ...event,
        requestContext: {
          ...event.requestContext,
          authorizer: {
            jwt: {
              claims: Object.fromEntries(Object.entries(claims).map(([k, v]) => [k, claimText(v)])),
              // routes carry no authorization scopes, and then API Gateway passes none
              scopes: null,
            },
          },
        },
      };
      event = withAuthorizer;
    }

    const fault = takeFault(event.routeKey);
    if (fault?.replayAfterMs !== undefined) {
      const copy = structuredClone(event);
      setTimeout(() => {
        invoke(match.route.fn, copy).catch((err: unknown) =>
          logError(`${copy.routeKey}: replay failed`, err),
        );
      }, fault.replayAfterMs).unref();
    }
    let response: HttpResponse;
    try {
      response = toHttpResponse(await invoke(match.route.fn, event));
    } catch (err) {
      logError(`${event.routeKey} (${requestId}): function ${match.route.fn} failed`, err);
      return sendJson(res, 500, { message: 'Internal Server Error' }, baseHeaders);
    }
    if (fault?.loseAnswer) return sendJson(res, 504, { message: 'Endpoint request timed out' }, baseHeaders);
    res.writeHead(response.statusCode, {
      ...baseHeaders,
      ...response.headers,
      'content-length': response.body.length,
    });
    res.end(response.body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logError(`${req.method} ${req.url}: the gateway failed`, err);
      if (!res.headersSent) sendJson(res, 500, { message: 'Internal Server Error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
