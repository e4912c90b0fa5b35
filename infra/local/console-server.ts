import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { contentSecurityPolicy, SECURITY_HEADERS } from '../../console/security.js';
import type { ConsoleConfig } from '../../shared/schemas/console.js';

/**
 * The console as CloudFront serves it, on loopback: the built files with the same security headers
 * and CSP, every other path answered with index.html (the single-page app's routes), and the
 * deployment's `config.json`. Its sign-in is the local issuer's: `POST /_local/sign-in {user}` answers
 * a token for one of the local cloud's people, as the hosted UI would after a password.
 */

export interface ConsoleServerOptions {
  port: number;
  host: string;
  /** the console's build */
  root: string;
  /** the people one may sign in as: id → who they are */
  users: { id: string; label: string }[];
  signIn: (user: string) => Promise<string>;
}

export interface ConsoleServer {
  url: string;
  /** the API and WebSocket URLs, known once they have started */
  configure(endpoints: { apiUrl: string; wsUrl: string }): void;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

const SIGN_IN_PATH = '/_local/sign-in';

const readJson = async (req: IncomingMessage): Promise<unknown> => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
};

export const startConsoleServer = async (options: ConsoleServerOptions): Promise<ConsoleServer> => {
  let endpoints: { apiUrl: string; wsUrl: string } | undefined;

  const send = (
    res: ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    cache = 'no-cache',
  ) => {
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-security-policy': contentSecurityPolicy(endpoints ? [endpoints.apiUrl, endpoints.wsUrl] : []),
      'content-type': type,
      'cache-control': cache,
    });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://console').pathname);
    if (pathname === SIGN_IN_PATH && req.method === 'POST') {
      const user = (await readJson(req)) as { user?: unknown } | undefined;
      if (!options.users.some((u) => u.id === user?.user)) {
        return send(res, 400, TYPES['.json'] as string, JSON.stringify({ message: 'no such local user' }));
      }
      return send(
        res,
        200,
        TYPES['.json'] as string,
        JSON.stringify({ token: await options.signIn(user?.user as string) }),
      );
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, 'text/plain', 'Method Not Allowed');
    if (pathname === '/config.json') {
      if (!endpoints) return send(res, 503, 'text/plain', 'the local cloud is still starting');
      const config: ConsoleConfig = {
        apiUrl: endpoints.apiUrl,
        auth: { kind: 'local', signInUrl: SIGN_IN_PATH, users: options.users },
      };
      return send(res, 200, TYPES['.json'] as string, JSON.stringify(config));
    }
    const file = path.join(options.root, path.normalize(pathname));
    const isFile =
      file.startsWith(`${options.root}${path.sep}`) && (await stat(file).catch(() => undefined))?.isFile();
    if (isFile) {
      // hashed assets never change; index.html is read afresh so a new build shows at once
      const cache = pathname.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
      return send(
        res,
        200,
        TYPES[path.extname(file)] ?? 'application/octet-stream',
        await readFile(file),
        cache,
      );
    }
    send(res, 200, TYPES['.html'] as string, await readFile(path.join(options.root, 'index.html')));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent)
        send(res, 500, 'text/plain', `the console server failed: ${(err as Error).message}`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${options.host}:${port}`,
    configure: (next) => {
      endpoints = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
