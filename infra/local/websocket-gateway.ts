import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { requestTime } from './api-gateway.js';

/**
 * The local API Gateway WebSocket API: $connect decides the upgrade, each message goes to the route its
 * route selection expression names (else $default), $disconnect follows every close, and the
 * `@connections` management API on the same host lets handlers post to, read and close connections
 * with the real ApiGatewayManagementApiClient, so the handlers behind it run exactly as deployed.
 */

export interface WebSocketGatewayOptions {
  /** 0: any free port */
  port: number;
  host: string;
  /** route keys with an integration besides $connect/$disconnect/$default, e.g. ['follow', 'ping'] */
  routes: string[];
  /** the route selection expression's field, `$request.body.<field>` (dots for nested ones); usually `action` */
  routeSelectionField: string;
  /** invokes the Lambda integration of a route with the event API Gateway builds; answers its result */
  invoke: (routeKey: string, event: WebSocketEvent) => Promise<unknown>;
  /** API Gateway closes a connection idle this long (default 10 minutes) and any after maxConnectionMs (default 2 hours) */
  idleTimeoutMs?: number;
  maxConnectionMs?: number;
  /** the stage the events name (default `$default`); clients may connect on any path */
  stage?: string;
  log?: (line: string) => void;
}

export interface WebSocketGateway {
  /** ws://host:port: clients connect here, with a query string */
  url: string;
  /** http://host:port: the @connections management API's endpoint (an ApiGatewayManagementApiClient's `endpoint`) */
  callbackUrl: string;
  /** ids of the open connections */
  connections(): string[];
  close(): Promise<void>;
}

export interface WebSocketRequestContext {
  routeKey: string;
  eventType: 'CONNECT' | 'MESSAGE' | 'DISCONNECT';
  /** MESSAGE only */
  messageId?: string;
  extendedRequestId: string;
  /** `12/Mar/2020:19:03:58 +0000` */
  requestTime: string;
  messageDirection: 'IN';
  stage: string;
  connectedAt: number;
  requestTimeEpoch: number;
  identity: { sourceIp: string; userAgent?: string };
  requestId: string;
  domainName: string;
  connectionId: string;
  apiId: string;
  /** DISCONNECT only */
  disconnectStatusCode?: number;
  disconnectReason?: string;
}

/** What a WebSocket API's Lambda proxy integration receives. */
export interface WebSocketEvent {
  requestContext: WebSocketRequestContext;
  /** CONNECT and DISCONNECT, with the names cased as the client sent them */
  headers?: Record<string, string>;
  multiValueHeaders?: Record<string, string[]>;
  /** CONNECT, when the upgrade request has a query string */
  queryStringParameters?: Record<string, string>;
  multiValueQueryStringParameters?: Record<string, string[]>;
  /** MESSAGE: the text frame as sent */
  body?: string;
  isBase64Encoded: boolean;
}

/** The message payload quota; a bigger message closes the connection with 1009, as API Gateway does. */
const MAX_MESSAGE_BYTES = 128 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_MAX_CONNECTION_MS = 2 * 60 * 60_000;
/** how long close() waits for a client's close frame before dropping its socket */
const CLOSE_GRACE_MS = 1000;

/** `/@connections/{id}`, or `/{stage}/@connections/{id}` as the endpoint AWS gives includes the stage */
const CONNECTION_PATH = /^(?:\/[^/]+)?\/@connections\/([^/]+)$/;

/** API Gateway's ids (connection, request, message) look like `WyHPAfymhcwCENw=`. */
const awsId = () => `${randomBytes(11).toString('base64url')}=`;

interface Close {
  code: number;
  reason: string;
}

/** Close codes and reasons API Gateway reports in $disconnect for the closes it makes. */
const DELETED: Close = { code: 1000, reason: 'Connection Closed Normally' };
const GOING_AWAY: Close = { code: 1001, reason: 'Going away' };
/** API Gateway takes text frames only and disconnects a client that sends a binary one with 1003. */
const BINARY_REFUSED: Close = { code: 1003, reason: 'Binary frames are not supported' };
const CLIENT_CLOSE_WITHOUT_STATUS = 'Client-side close frame status not set';
/** The close codes of the frames ws refuses: a message over the quota, text that is not UTF-8; else 1002. */
const RECEIVE_ERROR_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007,
};

interface Connection {
  id: string;
  socket: WebSocket;
  state: 'open' | 'closing';
  connectedAt: number;
  lastActiveAt: number;
  domainName: string;
  identity: { sourceIp: string; userAgent?: string };
  /** set when the gateway closes it, so $disconnect tells why rather than what the client echoed */
  closedBy?: Close;
  idleTimer: NodeJS.Timeout;
  maxAgeTimer: NodeJS.Timeout;
}

/** The selected route key: the field's value when a route has that key, else $default (non-JSON too). */
const selectRoute = (body: string, field: string, routes: readonly string[]): string => {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return '$default';
  }
  for (const key of field.split('.')) {
    value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  }
  return typeof value === 'string' && routes.includes(value) ? value : '$default';
};

/** The upgrade request's headers as API Gateway passes them: names as sent, hop-by-hop ones left out. */
const upgradeHeaders = (req: IncomingMessage) => {
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string;
    if (/^(connection|upgrade)$/i.test(name)) continue;
    multiValueHeaders[name] = [...(multiValueHeaders[name] ?? []), req.rawHeaders[i + 1] as string];
  }
  return multiValueHeaders;
};

const lastValues = (multi: Record<string, string[]>) =>
  Object.fromEntries(Object.entries(multi).map(([name, values]) => [name, values.at(-1) as string]));

/** An HTTP answer written on the socket of an upgrade that is refused. */
const refuseUpgrade = (
  socket: Duplex,
  status: number,
  body: string,
  headers: Record<string, string> = {},
) => {
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value.replace(/[\r\n]/g, ' ')}`),
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
};

/** The $connect result's verdict: a proxy result without statusCode accepts, as Lambda proxy does. */
const connectVerdict = (result: unknown) => {
  const r = (typeof result === 'object' && result !== null ? result : {}) as {
    statusCode?: unknown;
    headers?: Record<string, unknown>;
    body?: unknown;
  };
  const headers = Object.fromEntries(
    Object.entries(r.headers ?? {})
      .filter(([name]) => !/^(content-length|connection)$/i.test(name))
      .map(([name, value]) => [name, String(value)]),
  );
  const status = r.statusCode === undefined ? 200 : Number(r.statusCode);
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new Error(`invalid statusCode in the $connect response: ${String(r.statusCode)}`);
  }
  const body = typeof r.body === 'string' ? r.body : r.body === undefined ? '' : JSON.stringify(r.body);
  const protocol = Object.entries(headers).find(([k]) => k.toLowerCase() === 'sec-websocket-protocol')?.[1];
  return { accepted: status < 300, status, headers, body, protocol };
};

/** The body, or undefined when it is over the limit (read to the end so the caller gets the answer). */
const readPayload = (req: IncomingMessage, limit: number): Promise<Buffer | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });

/** The management API's errors: the SDK names them after `x-amzn-errortype`. */
const sendError = (res: ServerResponse, status: number, type: string, message?: string) => {
  // GoneException comes without a body (the SDKs report its message as null or the status)
  const body = message === undefined ? '' : JSON.stringify({ message });
  const headers: OutgoingHttpHeaders = {
    'x-amzn-errortype': type,
    'content-length': Buffer.byteLength(body),
  };
  if (body) headers['content-type'] = 'application/json';
  res.writeHead(status, headers);
  res.end(body);
};

export const startWebSocketGateway = async (options: WebSocketGatewayOptions): Promise<WebSocketGateway> => {
  const { routes, routeSelectionField, invoke, host, stage = '$default' } = options;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const maxConnectionMs = options.maxConnectionMs ?? DEFAULT_MAX_CONNECTION_MS;
  const log = options.log ?? ((line) => console.error(line));
  const apiId = randomBytes(5).toString('hex');

  const connections = new Map<string, Connection>();
  /** upgrades waiting for $connect, dropped if the gateway closes meanwhile */
  const pendingUpgrades = new Set<Duplex>();
  /** $disconnect invocations under way, awaited by close() */
  const disconnects = new Set<Promise<void>>();
  /** the subprotocol each accepted upgrade's $connect chose */
  const chosenProtocols = new WeakMap<IncomingMessage, string>();
  let closing = false;

  // $connect answers the upgrade, so ws never picks a subprotocol by itself.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    handleProtocols: (_offered, req) => chosenProtocols.get(req) ?? false,
  });

  const context = (
    connection: Pick<Connection, 'id' | 'connectedAt' | 'domainName' | 'identity'>,
    routeKey: string,
    eventType: WebSocketRequestContext['eventType'],
    now: Date,
  ): WebSocketRequestContext => {
    const requestId = awsId();
    return {
      routeKey,
      eventType,
      extendedRequestId: requestId,
      requestTime: requestTime(now),
      messageDirection: 'IN',
      stage,
      connectedAt: connection.connectedAt,
      requestTimeEpoch: now.getTime(),
      identity: connection.identity,
      requestId,
      domainName: connection.domainName,
      connectionId: connection.id,
      apiId,
    };
  };

  /** A frame either way is the activity that keeps a connection from idling out. */
  const touch = (connection: Connection) => {
    connection.lastActiveAt = Date.now();
    connection.idleTimer.refresh();
  };

  const send = (connection: Connection, data: Buffer | string) => {
    connection.socket.send(data, { binary: false });
    touch(connection);
  };

  /** The gateway closes a connection: unusable at once, $disconnect once its socket is gone. */
  const end = (connection: Connection, why: Close) => {
    if (connection.state !== 'open') return;
    connection.state = 'closing';
    connection.closedBy = why;
    clearTimeout(connection.idleTimer);
    clearTimeout(connection.maxAgeTimer);
    connection.socket.close(why.code, why.reason);
  };

  const onMessage = (connection: Connection, data: RawData, isBinary: boolean) => {
    if (connection.state !== 'open') return;
    if (isBinary) return end(connection, BINARY_REFUSED);
    touch(connection);
    // a Buffer, as the socket's binaryType is ws's default 'nodebuffer'
    const body = (data as Buffer).toString('utf8');
    const routeKey = selectRoute(body, routeSelectionField, routes);
    const requestContext = { ...context(connection, routeKey, 'MESSAGE', new Date()), messageId: awsId() };
    const event: WebSocketEvent = { requestContext, body, isBase64Encoded: false };
    // API Gateway invokes each message as it arrives, without waiting for the one before.
    invoke(routeKey, event).catch((err: unknown) => {
      log(`${routeKey} (${connection.id}): the integration failed: ${String(err)}`);
      if (connection.state !== 'open') return;
      const { connectionId, requestId } = requestContext;
      send(connection, JSON.stringify({ message: 'Internal server error', connectionId, requestId }));
    });
  };

  const onClose = (connection: Connection, code: number, reason: Buffer) => {
    connection.state = 'closing';
    clearTimeout(connection.idleTimer);
    clearTimeout(connection.maxAgeTimer);
    connections.delete(connection.id);
    const why = connection.closedBy ?? {
      code,
      reason: code === 1005 ? CLIENT_CLOSE_WITHOUT_STATUS : reason.toString('utf8'),
    };
    const headers = {
      Host: connection.domainName,
      'x-api-key': '',
      'X-Forwarded-For': '',
      'x-restapi': '',
    };
    const event: WebSocketEvent = {
      // the headers API Gateway sends with $disconnect, whatever the upgrade had
      headers,
      multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
      requestContext: {
        ...context(connection, '$disconnect', 'DISCONNECT', new Date()),
        disconnectStatusCode: why.code,
        disconnectReason: why.reason,
      },
      isBase64Encoded: false,
    };
    const done: Promise<void> = invoke('$disconnect', event)
      .then(
        () => undefined,
        (err: unknown) => log(`$disconnect (${connection.id}) failed: ${String(err)}`),
      )
      .finally(() => disconnects.delete(done));
    disconnects.add(done);
  };

  const accept = (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    connection: Omit<Connection, 'socket' | 'state' | 'lastActiveAt' | 'idleTimer' | 'maxAgeTimer'>,
  ) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      const open: Connection = {
        ...connection,
        socket: ws,
        state: 'open',
        lastActiveAt: Date.now(),
        idleTimer: setTimeout(() => end(open, GOING_AWAY), idleTimeoutMs).unref(),
        maxAgeTimer: setTimeout(() => end(open, GOING_AWAY), maxConnectionMs).unref(),
      };
      connections.set(open.id, open);
      ws.on('message', (data, isBinary) => onMessage(open, data, isBinary));
      // ws has already answered the frame it refused with a close frame; $disconnect says which
      ws.on('error', (err: Error & { code?: string }) => {
        open.closedBy ??= { code: RECEIVE_ERROR_CODES[err.code ?? ''] ?? 1002, reason: err.message };
        open.state = 'closing';
      });
      ws.on('close', (code, reason) => onClose(open, code, reason));
    });
  };

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (closing) return socket.destroy();
    const now = new Date();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const sourceIp = (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    const multiValueHeaders = upgradeHeaders(req);
    const added = {
      'X-Amzn-Trace-Id': `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`,
      'X-Forwarded-For': sourceIp,
      'X-Forwarded-Port': String(req.socket.localPort ?? ''),
      'X-Forwarded-Proto': 'http',
    };
    for (const [name, value] of Object.entries(added)) multiValueHeaders[name] = [value];
    const query: Record<string, string[]> = {};
    for (const [key, value] of url.searchParams) query[key] = [...(query[key] ?? []), value];

    const connection = {
      id: awsId(),
      connectedAt: now.getTime(),
      domainName: req.headers.host ?? `${host}:${req.socket.localPort}`,
      identity: { sourceIp, ...(req.headers['user-agent'] ? { userAgent: req.headers['user-agent'] } : {}) },
    };
    const event: WebSocketEvent = {
      headers: lastValues(multiValueHeaders),
      multiValueHeaders,
      ...(url.search
        ? { queryStringParameters: lastValues(query), multiValueQueryStringParameters: query }
        : {}),
      requestContext: context(connection, '$connect', 'CONNECT', now),
      isBase64Encoded: false,
    };

    pendingUpgrades.add(socket);
    let verdict: ReturnType<typeof connectVerdict>;
    try {
      // the function failing and its answer being malformed both refuse with 500
      verdict = connectVerdict(await invoke('$connect', event));
    } catch (err) {
      log(`$connect (${connection.id}) failed: ${String(err)}`);
      verdict = { accepted: false, status: 500, headers: {}, body: '', protocol: undefined };
    } finally {
      pendingUpgrades.delete(socket);
    }
    if (closing || socket.destroyed) return socket.destroy();
    if (!verdict.accepted) return refuseUpgrade(socket, verdict.status, verdict.body, verdict.headers);
    if (verdict.protocol) chosenProtocols.set(req, verdict.protocol);
    accept(req, socket, head, connection);
  };

  /** The @connections management API: post a message, read a connection, close it. */
  const manage = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const match = CONNECTION_PATH.exec(path);
    if (!match) return sendError(res, 404, 'NotFoundException', 'Not Found');
    const connection = connections.get(decodeURIComponent(match[1] as string));
    const payload = await readPayload(req, MAX_MESSAGE_BYTES);
    if (connection?.state !== 'open') return sendError(res, 410, 'GoneException');

    if (req.method === 'POST') {
      if (payload === undefined) {
        return sendError(res, 413, 'PayloadTooLargeException', 'Message too long');
      }
      send(connection, payload);
      res.writeHead(200, { 'content-length': 0 });
      return res.end();
    }
    if (req.method === 'DELETE') {
      end(connection, DELETED);
      res.writeHead(204);
      return res.end();
    }
    if (req.method === 'GET') {
      const body = JSON.stringify({
        connectedAt: new Date(connection.connectedAt).toISOString(),
        identity: { sourceIp: connection.identity.sourceIp, userAgent: connection.identity.userAgent ?? '' },
        lastActiveAt: new Date(connection.lastActiveAt).toISOString(),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      return res.end(body);
    }
    sendError(res, 403, 'ForbiddenException', 'Forbidden');
  };

  const server = createServer((req, res) => {
    manage(req, res).catch((err: unknown) => {
      log(`${req.method} ${req.url}: the gateway failed: ${String(err)}`);
      if (!res.headersSent) sendError(res, 500, 'InternalServerErrorException', 'Internal server error');
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrade(req, socket, head).catch((err: unknown) => {
      log(`upgrade ${req.url}: the gateway failed: ${String(err)}`);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  /** Closes a connection as the gateway going away, and settles once its socket is gone. */
  const shutDown = (connection: Connection) =>
    new Promise<void>((resolve) => {
      const drop = setTimeout(() => connection.socket.terminate(), CLOSE_GRACE_MS).unref();
      connection.socket.once('close', () => {
        clearTimeout(drop);
        resolve();
      });
      end(connection, GOING_AWAY);
    });

  return {
    url: `ws://${host}:${port}`,
    callbackUrl: `http://${host}:${port}`,
    connections: () => [...connections.values()].filter((c) => c.state === 'open').map((c) => c.id),
    close: async () => {
      closing = true;
      for (const socket of pendingUpgrades) socket.destroy();
      await Promise.all([...connections.values()].map(shutDown));
      await Promise.all(disconnects);
      wss.close();
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
};
