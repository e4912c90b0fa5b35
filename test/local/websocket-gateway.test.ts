import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import {
  startWebSocketGateway,
  type WebSocketEvent,
  type WebSocketGateway,
  type WebSocketGatewayOptions,
} from '../../infra/local/websocket-gateway.js';

interface Invocation {
  routeKey: string;
  event: WebSocketEvent;
}

/** A gateway that records what it invokes; `respond` answers per route (200 by default). */
const startRecordingGateway = async (overrides: Partial<WebSocketGatewayOptions> = {}) => {
  const calls: Invocation[] = [];
  const logged: string[] = [];
  const recording = {
    calls,
    logged,
    respond: (_routeKey: string, _event: WebSocketEvent): unknown => ({ statusCode: 200 }),
    gateway: undefined as unknown as WebSocketGateway,
  };
  recording.gateway = await startWebSocketGateway({
    port: 0,
    host: '127.0.0.1',
    routes: ['follow', 'ping'],
    routeSelectionField: 'action',
    invoke: async (routeKey, event) => {
      calls.push({ routeKey, event });
      return recording.respond(routeKey, event);
    },
    log: (line) => logged.push(line),
    ...overrides,
  });
  return recording;
};

const managementClient = (endpoint: string) =>
  new ApiGatewayManagementApiClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });

/** A client connection that keeps what it receives and how it closed. */
interface Client {
  socket: WebSocket;
  received: string[];
  closed: Promise<{ code: number; reason: string }>;
}

const connect = (url: string, options: { headers?: Record<string, string>; protocols?: string[] } = {}) =>
  new Promise<Client>((resolve, reject) => {
    const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers });
    const received: string[] = [];
    socket.on('message', (data) => received.push(data.toString()));
    const closed = new Promise<{ code: number; reason: string }>((settle) =>
      socket.on('close', (code, reason) => settle({ code, reason: reason.toString() })),
    );
    socket.once('open', () => resolve({ socket, received, closed }));
    socket.once('error', reject);
  });

/** The HTTP status and body of an upgrade the gateway refuses. */
const refusal = (url: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    socket.on('open', () => reject(new Error('the upgrade was accepted')));
    socket.on('error', () => undefined);
  });

const errorOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (err) {
    return err as Error & { $metadata?: { httpStatusCode?: number } };
  }
  throw new Error('expected the call to fail');
};

const invocationsOf = (calls: Invocation[], routeKey: string) => calls.filter((c) => c.routeKey === routeKey);

/** The connection id the gateway gave the latest $connect. */
const lastConnectionId = (calls: Invocation[]) =>
  invocationsOf(calls, '$connect').at(-1)?.event.requestContext.connectionId as string;

describe('startWebSocketGateway', () => {
  let recording: Awaited<ReturnType<typeof startRecordingGateway>>;
  let gateway: WebSocketGateway;
  let management: ApiGatewayManagementApiClient;
  const clients: Client[] = [];

  const open = async (query = '', options?: Parameters<typeof connect>[1]) => {
    const client = await connect(`${gateway.url}${query}`, options);
    clients.push(client);
    return { client, connectionId: lastConnectionId(recording.calls) };
  };

  beforeAll(async () => {
    recording = await startRecordingGateway();
    gateway = recording.gateway;
    management = managementClient(gateway.callbackUrl);
  });

  afterAll(async () => {
    for (const client of clients) client.socket.terminate();
    management.destroy();
    await gateway.close();
  });

  beforeEach(() => {
    recording.calls.length = 0;
    recording.respond = () => ({ statusCode: 200 });
  });

  describe('$connect', () => {
    it('invokes $connect with the upgrade request, its query string and the new connection id', async () => {
      const { connectionId } = await open('/?token=abc&tag=a&tag=b', {
        headers: { 'User-Agent': 'test-agent' },
      });

      const [call] = recording.calls;
      expect(call?.routeKey).toBe('$connect');
      const event = call?.event as WebSocketEvent;
      expect(event).toMatchObject({
        isBase64Encoded: false,
        queryStringParameters: { token: 'abc', tag: 'b' },
        multiValueQueryStringParameters: { token: ['abc'], tag: ['a', 'b'] },
        requestContext: {
          routeKey: '$connect',
          eventType: 'CONNECT',
          messageDirection: 'IN',
          stage: '$default',
          identity: { sourceIp: '127.0.0.1', userAgent: 'test-agent' },
          domainName: new URL(gateway.callbackUrl).host,
        },
      });
      expect(event.headers).toMatchObject({
        Host: new URL(gateway.callbackUrl).host,
        'User-Agent': 'test-agent',
        'Sec-WebSocket-Version': '13',
        'X-Forwarded-For': '127.0.0.1',
        'X-Forwarded-Proto': 'http',
      });
      expect(event.headers?.['X-Amzn-Trace-Id']).toMatch(/^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$/);
      expect(event.headers).not.toHaveProperty('Upgrade');
      expect(event.multiValueHeaders?.Host).toEqual([new URL(gateway.callbackUrl).host]);
      expect(event.body).toBeUndefined();
      const context = event.requestContext;
      expect(connectionId).toMatch(/^[A-Za-z0-9_-]{15}=$/);
      expect(context.requestId).toMatch(/^[A-Za-z0-9_-]{15}=$/);
      expect(context.extendedRequestId).toBe(context.requestId);
      expect(context.apiId).toMatch(/^[a-z0-9]{10}$/);
      expect(context.messageId).toBeUndefined();
      expect(context.requestTime).toMatch(/^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000$/);
      expect(Math.abs(context.connectedAt - Date.now())).toBeLessThan(5000);
      expect(context.requestTimeEpoch).toBeGreaterThanOrEqual(context.connectedAt);
      expect(gateway.connections()).toContain(connectionId);
    });

    it('leaves the query string parameters out when there is no query string', async () => {
      await open();

      expect(recording.calls[0]?.event.queryStringParameters).toBeUndefined();
      expect(recording.calls[0]?.event.multiValueQueryStringParameters).toBeUndefined();
    });

    it('gives every connection an id of its own', async () => {
      const a = await open();
      const b = await open();

      expect(a.connectionId).not.toBe(b.connectionId);
    });

    it('accepts a result without a statusCode, as a Lambda proxy integration does', async () => {
      recording.respond = () => undefined;

      const { connectionId } = await open();

      expect(gateway.connections()).toContain(connectionId);
    });

    it('refuses the upgrade with the status and body of a non-2xx result', async () => {
      recording.respond = () => ({ statusCode: 403, body: 'not you' });

      const { status, body } = await refusal(`${gateway.url}/?token=bad`);

      expect(status).toBe(403);
      expect(body).toBe('not you');
      expect(gateway.connections()).not.toContain(lastConnectionId(recording.calls));
    });

    it('refuses the upgrade with 500 when $connect fails', async () => {
      recording.respond = () => {
        throw new Error('the function crashed');
      };

      const { status } = await refusal(gateway.url);

      expect(status).toBe(500);
      expect(recording.logged.at(-1)).toMatch(/\$connect .* failed: Error: the function crashed/);
    });

    it('keeps the connection unusable until $connect has accepted it', async () => {
      let during: Error | undefined;
      recording.respond = async (_routeKey, event) => {
        during = await errorOf(
          management.send(
            new PostToConnectionCommand({ ConnectionId: event.requestContext.connectionId, Data: 'early' }),
          ),
        );
        return { statusCode: 200 };
      };

      const { client } = await open();

      expect(during?.name).toBe('GoneException');
      expect(client.received).toEqual([]);
    });

    it('answers with the subprotocol $connect chose', async () => {
      recording.respond = () => ({ statusCode: 200, headers: { 'Sec-WebSocket-Protocol': 'runs.v1' } });

      const { client } = await open('', { protocols: ['runs.v1', 'runs.v0'] });

      expect(client.socket.protocol).toBe('runs.v1');
    });
  });

  describe('messages', () => {
    const sendAndWait = async (client: Client, message: string) => {
      const before = recording.calls.length;
      client.socket.send(message);
      await vi.waitFor(() => expect(recording.calls.length).toBeGreaterThan(before));
      return recording.calls.at(-1) as Invocation;
    };

    it('routes a message to the route its selection field names', async () => {
      const { client } = await open();

      const call = await sendAndWait(client, JSON.stringify({ action: 'follow', runId: 'run_1' }));

      expect(call.routeKey).toBe('follow');
      expect(call.event.requestContext.routeKey).toBe('follow');
    });

    it('routes an action without a route, a message without the field and non-JSON to $default', async () => {
      const { client } = await open();

      expect((await sendAndWait(client, JSON.stringify({ action: 'unfollow' }))).routeKey).toBe('$default');
      expect((await sendAndWait(client, JSON.stringify({ runId: 'run_1' }))).routeKey).toBe('$default');
      expect((await sendAndWait(client, JSON.stringify({ action: 42 }))).routeKey).toBe('$default');
      expect((await sendAndWait(client, 'hello')).routeKey).toBe('$default');
    });

    it('hands the function the message as sent, with a message id', async () => {
      const { client, connectionId } = await open();
      const message = '{ "action": "ping",  "at": 1 }';

      const { event } = await sendAndWait(client, message);

      expect(event).toEqual({
        requestContext: {
          routeKey: 'ping',
          eventType: 'MESSAGE',
          messageId: expect.stringMatching(/^[A-Za-z0-9_-]{15}=$/),
          extendedRequestId: event.requestContext.requestId,
          requestTime: expect.any(String),
          messageDirection: 'IN',
          stage: '$default',
          connectedAt: expect.any(Number),
          requestTimeEpoch: expect.any(Number),
          identity: { sourceIp: '127.0.0.1' },
          requestId: expect.stringMatching(/^[A-Za-z0-9_-]{15}=$/),
          domainName: new URL(gateway.callbackUrl).host,
          connectionId,
          apiId: expect.stringMatching(/^[a-z0-9]{10}$/),
        },
        body: message,
        isBase64Encoded: false,
      });
    });

    it('invokes each message as it arrives, without waiting for the one before', async () => {
      const { client } = await open();
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      recording.respond = async (routeKey) => {
        if (routeKey === 'follow') await held;
        if (routeKey === 'ping') release();
        return { statusCode: 200 };
      };

      client.socket.send(JSON.stringify({ action: 'follow' }));
      client.socket.send(JSON.stringify({ action: 'ping' }));

      await vi.waitFor(() => expect(invocationsOf(recording.calls, 'ping')).toHaveLength(1));
      await held;
    });

    it('does not send the function result back to the client', async () => {
      const { client } = await open();
      recording.respond = () => ({ statusCode: 200, body: 'a reply' });

      await sendAndWait(client, JSON.stringify({ action: 'ping' }));
      await new Promise((resolve) => setTimeout(resolve, 100));

      expect(client.received).toEqual([]);
    });

    it('tells the client when the integration fails, as API Gateway does', async () => {
      const { client, connectionId } = await open();
      recording.respond = (routeKey) => {
        if (routeKey === 'ping') throw new Error('boom');
        return { statusCode: 200 };
      };

      const { event } = await sendAndWait(client, JSON.stringify({ action: 'ping' }));

      await vi.waitFor(() => expect(client.received).toHaveLength(1));
      expect(JSON.parse(client.received[0] as string)).toEqual({
        message: 'Internal server error',
        connectionId,
        requestId: event.requestContext.requestId,
      });
    });

    it('closes the connection with 1009 on a message over 128 KB, without invoking a route', async () => {
      const { client, connectionId } = await open();

      client.socket.send('x'.repeat(128 * 1024 + 1));

      expect((await client.closed).code).toBe(1009);
      await vi.waitFor(() => expect(invocationsOf(recording.calls, '$disconnect')).toHaveLength(1));
      expect(invocationsOf(recording.calls, '$default')).toHaveLength(0);
      expect(recording.calls.at(-1)?.event.requestContext).toMatchObject({
        connectionId,
        disconnectStatusCode: 1009,
      });
    });

    it('disconnects a client that sends a binary frame with 1003, as API Gateway does', async () => {
      const { client, connectionId } = await open();

      client.socket.send(Buffer.from([1, 2, 3]), { binary: true });

      expect((await client.closed).code).toBe(1003);
      await vi.waitFor(() => expect(invocationsOf(recording.calls, '$disconnect')).toHaveLength(1));
      expect(invocationsOf(recording.calls, '$default')).toHaveLength(0);
      expect(recording.calls.at(-1)?.event.requestContext).toMatchObject({
        connectionId,
        disconnectStatusCode: 1003,
      });
    });

    it('takes a message of exactly 128 KB', async () => {
      const { client } = await open();

      const { event } = await sendAndWait(client, 'x'.repeat(128 * 1024));

      expect(event.body).toHaveLength(128 * 1024);
    });
  });

  describe('the @connections API, through the real management API client', () => {
    it('posts a message to the connection', async () => {
      const { client, connectionId } = await open();

      await management.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: '{"hello":1}' }));

      await vi.waitFor(() => expect(client.received).toEqual(['{"hello":1}']));
    });

    it('takes the endpoint with the stage path, as AWS gives it', async () => {
      const { client, connectionId } = await open();
      const staged = managementClient(`${gateway.callbackUrl}/prod`);

      await staged.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: 'via the stage' }));
      staged.destroy();

      await vi.waitFor(() => expect(client.received).toEqual(['via the stage']));
    });

    it('reads a connection: when it connected, who it is and when it was last active', async () => {
      const { client, connectionId } = await open('', { headers: { 'User-Agent': 'reader/1.0' } });
      const connectedAt = recording.calls.at(-1)?.event.requestContext.connectedAt as number;
      await new Promise((resolve) => setTimeout(resolve, 20));
      client.socket.send('activity');
      await vi.waitFor(() => expect(recording.calls.at(-1)?.routeKey).toBe('$default'));

      const connection = await management.send(new GetConnectionCommand({ ConnectionId: connectionId }));

      expect(connection.ConnectedAt?.getTime()).toBe(connectedAt);
      expect(connection.Identity).toEqual({ SourceIp: '127.0.0.1', UserAgent: 'reader/1.0' });
      expect(connection.LastActiveAt?.getTime()).toBeGreaterThan(connectedAt);
    });

    it('refuses a message over 128 KB with PayloadTooLargeException', async () => {
      const { client, connectionId } = await open();

      const err = await errorOf(
        management.send(
          new PostToConnectionCommand({ ConnectionId: connectionId, Data: 'x'.repeat(128 * 1024 + 1) }),
        ),
      );

      expect(err.name).toBe('PayloadTooLargeException');
      expect(err.$metadata?.httpStatusCode).toBe(413);
      expect(client.received).toEqual([]);
    });

    it('answers GoneException once the client has left, and $disconnect says how it left', async () => {
      const { client, connectionId } = await open();

      client.socket.close();
      await client.closed;
      await vi.waitFor(() => expect(invocationsOf(recording.calls, '$disconnect')).toHaveLength(1));
      const err = await errorOf(
        management.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: 'late' })),
      );

      expect(err.name).toBe('GoneException');
      expect(err.$metadata?.httpStatusCode).toBe(410);
      const { event } = invocationsOf(recording.calls, '$disconnect')[0] as Invocation;
      expect(event).toMatchObject({
        headers: { Host: new URL(gateway.callbackUrl).host },
        isBase64Encoded: false,
        requestContext: {
          routeKey: '$disconnect',
          eventType: 'DISCONNECT',
          connectionId,
          disconnectStatusCode: 1005,
          disconnectReason: 'Client-side close frame status not set',
        },
      });
      expect(event.body).toBeUndefined();
      expect(gateway.connections()).not.toContain(connectionId);
    });

    it("passes on the client's close code and reason", async () => {
      const { client } = await open();

      client.socket.close(4000, 'bye');
      await vi.waitFor(() => expect(invocationsOf(recording.calls, '$disconnect')).toHaveLength(1));

      expect(recording.calls.at(-1)?.event.requestContext).toMatchObject({
        disconnectStatusCode: 4000,
        disconnectReason: 'bye',
      });
    });

    it('answers GoneException for an id that never connected', async () => {
      const ConnectionId = 'AAAAAAAAAAAAAAA=';

      const post = await errorOf(management.send(new PostToConnectionCommand({ ConnectionId, Data: 'x' })));
      const get = await errorOf(management.send(new GetConnectionCommand({ ConnectionId })));
      const remove = await errorOf(management.send(new DeleteConnectionCommand({ ConnectionId })));

      expect([post.name, get.name, remove.name]).toEqual(['GoneException', 'GoneException', 'GoneException']);
    });

    it('closes a connection on DeleteConnection, then invokes $disconnect', async () => {
      const { client, connectionId } = await open();

      await management.send(new DeleteConnectionCommand({ ConnectionId: connectionId }));

      expect(gateway.connections()).not.toContain(connectionId);
      expect((await client.closed).code).toBe(1000);
      await vi.waitFor(() => expect(invocationsOf(recording.calls, '$disconnect')).toHaveLength(1));
      expect(recording.calls.at(-1)?.event.requestContext).toMatchObject({
        connectionId,
        disconnectStatusCode: 1000,
        disconnectReason: 'Connection Closed Normally',
      });
      const again = await errorOf(
        management.send(new DeleteConnectionCommand({ ConnectionId: connectionId })),
      );
      expect(again.name).toBe('GoneException');
    });

    it('delivers to 100 clients each the messages posted to it', async () => {
      const many = await Promise.all(
        Array.from({ length: 100 }, (_, i) => connect(`${gateway.url}/?client=${i}`)),
      );
      clients.push(...many);
      const idOf = new Map(
        invocationsOf(recording.calls, '$connect').map((c) => [
          c.event.queryStringParameters?.client,
          c.event.requestContext.connectionId,
        ]),
      );

      await Promise.all(
        many.flatMap((_, i) =>
          ['first', 'second'].map((word) =>
            management.send(
              new PostToConnectionCommand({ ConnectionId: idOf.get(String(i)), Data: `${word} for ${i}` }),
            ),
          ),
        ),
      );

      await vi.waitFor(() => {
        for (const [i, client] of many.entries()) {
          expect([...client.received].sort()).toEqual([`first for ${i}`, `second for ${i}`]);
        }
      });
    });
  });
});

describe('startWebSocketGateway timeouts', () => {
  it('closes a connection idle for idleTimeoutMs with 1001, then invokes $disconnect', async () => {
    const { gateway, calls } = await startRecordingGateway({ idleTimeoutMs: 300 });
    const client = await connect(gateway.url);
    const connectionId = lastConnectionId(calls);

    // activity either way keeps it open past the idle timeout
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      client.socket.send(`keep-alive ${i}`);
    }
    expect(gateway.connections()).toContain(connectionId);

    const closed = await client.closed;
    expect(closed).toEqual({ code: 1001, reason: 'Going away' });
    await vi.waitFor(() => expect(invocationsOf(calls, '$disconnect')).toHaveLength(1));
    expect(calls.at(-1)?.event.requestContext).toMatchObject({
      connectionId,
      disconnectStatusCode: 1001,
      disconnectReason: 'Going away',
    });
    await gateway.close();
  });

  it('closes any connection after maxConnectionMs, however active', async () => {
    const { gateway, calls } = await startRecordingGateway({ maxConnectionMs: 400 });
    const client = await connect(gateway.url);
    const keepAlive = setInterval(() => client.socket.send('still here'), 50);

    const closed = await client.closed;
    clearInterval(keepAlive);

    expect(closed.code).toBe(1001);
    await vi.waitFor(() => expect(invocationsOf(calls, '$disconnect')).toHaveLength(1));
    await gateway.close();
  });
});

describe('startWebSocketGateway close()', () => {
  it('closes every connection, invokes $disconnect for each and stops listening', async () => {
    const { gateway, calls } = await startRecordingGateway();
    const three = await Promise.all([1, 2, 3].map(() => connect(gateway.url)));
    const ids = gateway.connections();

    await gateway.close();

    expect(gateway.connections()).toEqual([]);
    for (const client of three) expect((await client.closed).code).toBe(1001);
    expect(
      invocationsOf(calls, '$disconnect')
        .map((c) => c.event.requestContext.connectionId)
        .sort(),
    ).toEqual([...ids].sort());
    await expect(connect(gateway.url)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('drops an upgrade still waiting for $connect', async () => {
    let connecting = () => {};
    const reached = new Promise<void>((resolve) => {
      connecting = resolve;
    });
    const { gateway, calls } = await startRecordingGateway({
      invoke: async (routeKey, event) => {
        calls.push({ routeKey, event });
        if (routeKey === '$connect') {
          connecting();
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        return { statusCode: 200 };
      },
    });
    const attempt = connect(gateway.url);
    await reached;

    await gateway.close();

    await expect(attempt).rejects.toThrow();
    expect(invocationsOf(calls, '$disconnect')).toEqual([]);
  });
});
