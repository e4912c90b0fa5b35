import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { text } from 'node:stream/consumers';
import WebSocket, { WebSocketServer } from 'ws';
import type { ServerMessage } from '../../../shared/schemas/stream.js';

/**
 * The local cloud's HTTP API and WebSocket API behind a proxy a test watches, and can cut: requests
 * go through as they are, except that the tickets' URLs send the client to the proxy's WebSocket
 * end, which connects on to the gateway with the same ticket and passes every message either way.
 */

export interface ProxiedConnection {
  /** what the client sent, in order */
  sent: Record<string, unknown>[];
  /** what the gateway sent that was passed on to the client, in order */
  received: ServerMessage[];
  /** Stops passing the gateway's messages on, lets those passed reach the client, then drops it. */
  cut(): Promise<void>;
}

export interface StreamProxy {
  /** the API's URL for the client */
  url: string;
  /** the status each `POST /v1/stream/tickets` was answered with */
  tickets: number[];
  connections: ProxiedConnection[];
  close(): Promise<void>;
}

const HOP_BY_HOP =
  /^(host|connection|content-length|transfer-encoding|keep-alive|upgrade|content-encoding)$/i;

export const startStreamProxy = async ({ apiUrl, wsUrl }: { apiUrl: string; wsUrl: string }) => {
  const tickets: number[] = [];
  const connections: ProxiedConnection[] = [];
  const sockets = new Set<WebSocket>();
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await text(req);
    const headers = Object.entries(req.headers).flatMap(([name, value]) =>
      HOP_BY_HOP.test(name) || value === undefined ? [] : [[name, String(value)] as [string, string]],
    );
    const answer = await fetch(`${apiUrl}${req.url}`, {
      method: req.method,
      headers,
      ...(body ? { body } : {}),
    });
    let answered = await answer.text();
    if (req.method === 'POST' && req.url === '/v1/stream/tickets') {
      tickets.push(answer.status);
      if (answer.ok) {
        const ticket = JSON.parse(answered) as { url: string };
        const at = new URL(ticket.url);
        answered = JSON.stringify({ ...ticket, url: `ws://127.0.0.1:${port}${at.pathname}${at.search}` });
      }
    }
    const kept = [...answer.headers].filter(([name]) => !HOP_BY_HOP.test(name));
    res.writeHead(answer.status, Object.fromEntries(kept));
    res.end(answered);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    forward(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });

  server.on('upgrade', (req, socket, head) => {
    // the gateway decides the upgrade (it spends the ticket): the client is let in once it has
    const gateway = new WebSocket(new URL(req.url ?? '/', wsUrl));
    sockets.add(gateway);
    gateway.once('error', () => {
      socket.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    gateway.once('open', () =>
      wss.handleUpgrade(req, socket, head, (client) => {
        sockets.add(client);
        let passing = true;
        const connection: ProxiedConnection = {
          sent: [],
          received: [],
          cut: async () => {
            passing = false;
            await new Promise((resolve) => setTimeout(resolve, 300));
            client.terminate();
            gateway.close();
          },
        };
        connections.push(connection);
        client.on('message', (data) => {
          connection.sent.push(JSON.parse(String(data)) as Record<string, unknown>);
          gateway.send(String(data));
        });
        gateway.on('message', (data) => {
          if (!passing || client.readyState !== WebSocket.OPEN) return;
          connection.received.push(JSON.parse(String(data)) as ServerMessage);
          client.send(String(data));
        });
        client.on('close', () => gateway.close());
        gateway.on('close', () => client.close());
      }),
    );
  });

  return {
    url: `http://127.0.0.1:${port}`,
    tickets,
    connections,
    close: async () => {
      for (const socket of sockets) socket.terminate();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  } satisfies StreamProxy;
};
