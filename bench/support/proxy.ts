import { Agent, createServer, type IncomingHttpHeaders, request } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';

/**
 * A loopback HTTP proxy in front of one local service, so the benchmark can see (and, for DynamoDB,
 * annotate) every request the unchanged handlers and pods make, without touching them.
 */

export interface Exchange {
  method: string;
  /** path and query */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Sends the request upstream, with another body if given, and returns the whole answer. */
export type Forward = (body?: Buffer) => Promise<Answer>;

export interface ProxyServer {
  url: string;
  /** drops every connection, so clients reconnect and meet the current `passThrough` choice */
  resetConnections(): void;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);

const readAll = (stream: NodeJS.ReadableStream): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });

const endToEnd = (headers: IncomingHttpHeaders): IncomingHttpHeaders =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));

/**
 * `passThrough`, asked as each connection opens: true pipes the connection's bytes straight through,
 * which costs next to nothing when there is nothing to look at.
 */
export const startProxy = async (
  target: string,
  handle: (exchange: Exchange, forward: Forward) => Promise<Answer>,
  passThrough: () => boolean = () => false,
): Promise<ProxyServer> => {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const http = createServer(async (req, res) => {
    try {
      const exchange: Exchange = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: await readAll(req),
      };
      const forward: Forward = (body = exchange.body) =>
        new Promise((resolve, reject) => {
          const out = request(
            {
              agent,
              host: upstream.hostname,
              port: upstream.port,
              method: exchange.method,
              path: exchange.url,
              headers: { ...endToEnd(exchange.headers), 'content-length': body.length },
            },
            async (answer) => {
              try {
                resolve({
                  status: answer.statusCode ?? 502,
                  headers: answer.headers,
                  body: await readAll(answer),
                });
              } catch (err) {
                reject(err);
              }
            },
          );
          out.on('error', reject);
          out.end(body);
        });
      const answer = await handle(exchange, forward);
      res.writeHead(answer.status, { ...endToEnd(answer.headers), 'content-length': answer.body.length });
      res.end(answer.body);
    } catch (err) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`bench proxy: ${String(err)}`);
    }
  });
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (!passThrough()) {
      http.emit('connection', socket);
      return;
    }
    const out = connect(Number(upstream.port), upstream.hostname);
    sockets.add(out);
    out.once('close', () => sockets.delete(out));
    socket.pipe(out).pipe(socket);
    socket.once('error', () => out.destroy());
    out.once('error', () => socket.destroy());
    socket.once('close', () => out.destroy());
    out.once('close', () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const resetConnections = () => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    resetConnections,
    close: () =>
      new Promise<void>((resolve) => {
        resetConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
};
