import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A server for AWS JSON-protocol services (awsJson1_0 / awsJson1_1): every call is a POST whose
 * `X-Amz-Target` header names `<prefix>.<Operation>` and whose body is the input as JSON. The local
 * emulators of SQS, Step Functions, ECS and CloudWatch Logs are built on it, so the real SDK clients
 * talk to them unchanged.
 */

/** An error the SDK turns into a typed exception named `code`. */
export class AwsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly statusCode = 400,
    /** the `x-amzn-query-error` value for services (SQS) whose SDK reads legacy codes from it */
    readonly queryErrorCode?: string,
  ) {
    super(message);
  }
}

/** What a handler may know about the request besides its input. */
export interface RequestContext {
  /** aborted when the client goes away before it has the answer, e.g. an abandoned long poll */
  signal: AbortSignal;
}

export type OperationHandler = (
  input: Record<string, unknown>,
  context?: RequestContext,
) => unknown | Promise<unknown>;

export type RawRoute = (req: IncomingMessage, body: string, res: ServerResponse) => void | Promise<void>;

export interface JsonProtocolOptions {
  /** e.g. `AmazonSQS`, `AWSStepFunctions`, `Logs_20140328`, `AmazonEC2ContainerServiceV20141113` */
  targetPrefix: string;
  /** the error namespace the service uses in `__type`, e.g. `com.amazonaws.sqs` */
  errorNamespace: string;
  operations: Record<string, OperationHandler>;
  /** non-AWS routes for the local cloud's own use (health, fault injection), by `METHOD path` */
  extraRoutes?: Record<string, RawRoute>;
  /** requests without `X-Amz-Target` that no extra route took, e.g. the SQS query protocol older CLIs speak */
  fallback?: RawRoute;
}

/** What the server answered per operation since it started: `GET /_local/stats` returns `{ operations }`. */
export interface OperationStats {
  calls: number;
  /** calls answered with an error */
  errors: number;
  /** request body bytes */
  bytesIn: number;
}

export interface RunningServer {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A request's whole body as text: what every local server here reads before it answers. */
export const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

/** A signal that aborts when the connection closes before the response was sent. */
export const clientGone = (res: ServerResponse): AbortSignal => {
  const aborter = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) aborter.abort();
  });
  return aborter.signal;
};

export const sendJson = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  const text = JSON.stringify(body ?? {});
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', ...headers });
  res.end(text);
};

const sendError = (res: ServerResponse, namespace: string, err: AwsError) => {
  const headers: Record<string, string> = { 'x-amzn-errortype': err.code };
  if (err.queryErrorCode) headers['x-amzn-query-error'] = `${err.queryErrorCode};Sender`;
  sendJson(res, err.statusCode, { __type: `${namespace}#${err.code}`, message: err.message }, headers);
};

export const startJsonProtocolServer = async (
  options: JsonProtocolOptions,
  port = 0,
  host = '127.0.0.1',
): Promise<RunningServer> => {
  const operationStats: Record<string, OperationStats> = {};
  const server = createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const route = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
      if (route === 'GET /_local/stats') return sendJson(res, 200, { operations: operationStats });
      const extra = options.extraRoutes?.[route];
      if (extra) return await extra(req, body, res);
      const target = req.headers['x-amz-target'];
      if (typeof target !== 'string' && options.fallback) return await options.fallback(req, body, res);
      if (req.method !== 'POST' || typeof target !== 'string') {
        return sendError(
          res,
          options.errorNamespace,
          new AwsError('UnknownOperationException', 'expected a JSON-protocol POST'),
        );
      }
      const [prefix, operation] = target.split('.');
      const handler =
        prefix === options.targetPrefix && operation ? options.operations[operation] : undefined;
      if (!handler) {
        return sendError(
          res,
          options.errorNamespace,
          new AwsError('UnknownOperationException', `${target} is not emulated`),
        );
      }
      // Counted so the cost of a run can be measured in requests, as AWS bills it.
      const counted = operationStats[operation as string] ?? { calls: 0, errors: 0, bytesIn: 0 };
      operationStats[operation as string] = counted;
      counted.calls += 1;
      counted.bytesIn += Buffer.byteLength(body);
      let output: unknown;
      try {
        const input = body ? (JSON.parse(body) as Record<string, unknown>) : {};
        output = await handler(input, { signal: clientGone(res) });
      } catch (err) {
        counted.errors += 1;
        throw err;
      }
      sendJson(res, 200, output ?? {});
    } catch (err) {
      if (err instanceof AwsError) return sendError(res, options.errorNamespace, err);
      if (err instanceof SyntaxError) {
        return sendError(res, options.errorNamespace, new AwsError('SerializationException', err.message));
      }
      sendError(res, options.errorNamespace, new AwsError('InternalFailure', String(err), 500));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    server,
    port: actual,
    url: `http://${host}:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
