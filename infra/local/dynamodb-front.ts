import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { FunctionDefinition, FunctionName } from '../../shared/manifest.js';

/**
 * What stands between the local functions and DynamoDB Local, as IAM and DynamoDB's own limits do on
 * AWS. Each function's `AWS_ENDPOINT_URL_DYNAMODB` is `<front>/fn/<function>` (the SDK keeps the
 * path), so the front knows who calls. It refuses what the function's grant in the manifest does not
 * allow, exactly as IAM would, and can answer with injected faults (throttling, server errors) for the
 * functions and operations a test chooses. Everything else goes on to the upstream unchanged, but for
 * a header naming the function (`x-local-function`), which DynamoDB Local ignores.
 *
 * - `POST /_local/faults` `{function?, operation?, error, times? | durationMs?, message?}`: the next
 *   `times` matching requests (or those for `durationMs`; without either, until cleared) fail with
 *   `error`. Absent `function` or `operation` match any.
 * - `DELETE /_local/faults` clears them; `GET /_local/stats` counts requests, refusals and faults per
 *   function and operation.
 */

export interface DynamoDbFrontOptions {
  port: number;
  host: string;
  /** where allowed requests go: DynamoDB Local, or a meter in front of it */
  upstream: string;
  functions: Record<FunctionName, FunctionDefinition>;
  /** the runs table, the one every grant is on */
  tableName: string;
  region: string;
  accountId: string;
}

export interface DynamoDbFront {
  url: string;
  /** the endpoint a function's SDK clients use */
  endpointOf(fn: FunctionName): string;
  /** sends what is allowed somewhere else from now on */
  setUpstream(url: string): void;
  close(): Promise<void>;
}

/** What the front counted for one function and operation. */
export interface FrontStats {
  requests: number;
  /** refused for want of a grant */
  denied: number;
  /** answered with an injected fault */
  faults: number;
}

/** The errors a fault can answer with, and their HTTP status, as DynamoDB sends them. */
const FAULT_STATUS = {
  ProvisionedThroughputExceededException: 400,
  ThrottlingException: 400,
  RequestLimitExceeded: 400,
  InternalServerError: 500,
  ServiceUnavailable: 503,
} as const;

const faultInput = z
  .object({
    function: z.string().min(1).optional(),
    operation: z.string().min(1).optional(),
    error: z.enum(Object.keys(FAULT_STATUS) as [keyof typeof FAULT_STATUS]),
    times: z.number().int().positive().optional(),
    durationMs: z.number().int().positive().optional(),
    message: z.string().optional(),
  })
  .strict()
  .refine((fault) => fault.times === undefined || fault.durationMs === undefined, {
    message: 'give times or durationMs, not both',
  });

interface Fault {
  function?: string;
  operation?: string;
  error: keyof typeof FAULT_STATUS;
  message: string;
  remaining: number;
  until: number;
}

/** Names the calling function to the upstream, so a meter there can tell whose units they are. */
export const CALLER_HEADER = 'x-local-function';
const TARGET_PREFIX = 'DynamoDB_20120810.';
const ERROR_NAMESPACE = 'com.amazonaws.dynamodb.v20120810';
const ROUTE = /^\/fn\/([^/?]+)\/?(?:\?|$)/;
/** IAM authorizes a transaction's parts, each as the single-item action it is. */
const TRANSACT_ACTIONS: Record<string, string> = {
  Put: 'PutItem',
  Update: 'UpdateItem',
  Delete: 'DeleteItem',
  ConditionCheck: 'ConditionCheckItem',
  Get: 'GetItem',
};

type Input = Record<string, unknown>;

/** An action on the table or one of its indexes, as IAM sees a request. */
interface Grant {
  action: string;
  tableName?: string;
  indexName?: string;
}

/** What IAM checks for a request: its parts for transactions, the index for a Query or Scan. */
const grantsFor = (operation: string, input: Input): Grant[] => {
  if (operation === 'TransactWriteItems' || operation === 'TransactGetItems') {
    const items = (input.TransactItems ?? []) as Record<string, Input>[];
    return items.flatMap((item) =>
      Object.entries(item).map(([kind, part]) => ({
        action: TRANSACT_ACTIONS[kind] ?? kind,
        tableName: part.TableName as string | undefined,
      })),
    );
  }
  if (operation === 'BatchWriteItem' || operation === 'BatchGetItem') {
    return Object.keys((input.RequestItems ?? {}) as Input).map((tableName) => ({
      action: operation,
      tableName,
    }));
  }
  return [
    {
      action: operation,
      tableName: input.TableName as string | undefined,
      indexName: input.IndexName as string | undefined,
    },
  ];
};

const readBody = (stream: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });

const sendJson = (res: ServerResponse, status: number, body: unknown, contentType = 'application/json') => {
  res.writeHead(status, { 'content-type': contentType });
  res.end(JSON.stringify(body));
};

/** An error as DynamoDB answers it, which the SDK turns into the exception named in `__type`. */
const sendAwsError = (res: ServerResponse, status: number, type: string, message: string) =>
  sendJson(res, status, { __type: type, message }, 'application/x-amz-json-1.0');

export const startDynamoDbFront = async (options: DynamoDbFrontOptions): Promise<DynamoDbFront> => {
  const { functions, tableName, region, accountId } = options;
  let upstream = new URL(options.upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  let faults: Fault[] = [];
  const stats: Record<string, Record<string, FrontStats>> = {};

  const counted = (fn: string, operation: string): FrontStats => {
    stats[fn] ??= {};
    stats[fn][operation] ??= { requests: 0, denied: 0, faults: 0 };
    return stats[fn][operation];
  };

  /** The first grant the function lacks, as IAM's refusal says it. */
  const refusal = (fn: FunctionName, grants: Grant[]): string | undefined => {
    const { actions, indexes } = functions[fn].table;
    for (const { action, tableName: table = tableName, indexName } of grants) {
      const allowed =
        table === tableName &&
        (actions as readonly string[]).includes(action) &&
        (indexName === undefined || (indexes as readonly string[]).includes(indexName));
      if (allowed) continue;
      const resource = `arn:aws:dynamodb:${region}:${accountId}:table/${table}${indexName ? `/index/${indexName}` : ''}`;
      const role = `arn:aws:sts::${accountId}:assumed-role/execution-runs-${fn}/execution-runs-${fn}`;
      return `User: ${role} is not authorized to perform: dynamodb:${action} on resource: ${resource} because no identity-based policy allows the dynamodb:${action} action (the function ${fn} is not granted it in shared/manifest.ts)`;
    }
    return undefined;
  };

  const takeFault = (fn: string, operation: string): Fault | undefined => {
    const now = Date.now();
    faults = faults.filter((f) => f.remaining > 0 && f.until > now);
    const fault = faults.find((f) => (f.function ?? fn) === fn && (f.operation ?? operation) === operation);
    if (fault) fault.remaining -= 1;
    return fault;
  };

  const forward = (fn: FunctionName, req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const { connection: _, 'transfer-encoding': __, ...endToEnd } = req.headers;
    const headers = {
      ...endToEnd,
      host: upstream.host,
      'content-length': String(body.length),
      [CALLER_HEADER]: fn,
    };
    const out = request(
      { agent, host: upstream.hostname, port: upstream.port, method: 'POST', path: '/', headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', (err) => {
      if (res.headersSent) return res.destroy(err);
      // a server error, which the SDK retries as it would DynamoDB's
      sendAwsError(
        res,
        500,
        `${ERROR_NAMESPACE}#InternalServerError`,
        `local DynamoDB front: ${err.message}`,
      );
    });
    out.end(body);
  };

  const handleFunction = async (fn: FunctionName, req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : target;
    const count = counted(fn, operation);
    count.requests += 1;
    let input: Input = {};
    try {
      input = JSON.parse(body.toString('utf8') || '{}') as Input;
    } catch {
      // DynamoDB Local answers what it cannot parse; IAM looks only at the action then
    }
    const denied = refusal(fn, grantsFor(operation, input));
    if (denied) {
      count.denied += 1;
      return sendAwsError(res, 400, 'com.amazon.coral.service#AccessDeniedException', denied);
    }
    const fault = takeFault(fn, operation);
    if (fault) {
      count.faults += 1;
      return sendAwsError(res, FAULT_STATUS[fault.error], `${ERROR_NAMESPACE}#${fault.error}`, fault.message);
    }
    forward(fn, req, body, res);
  };

  const addFault = async (req: IncomingMessage, res: ServerResponse) => {
    const parsed = faultInput.safeParse(JSON.parse((await readBody(req)).toString('utf8') || '{}'));
    if (!parsed.success)
      return sendJson(res, 400, { message: parsed.error.issues.map((i) => i.message).join('; ') });
    const input = parsed.data;
    if (input.function !== undefined && !(input.function in functions)) {
      return sendJson(res, 400, { message: `no function ${input.function}` });
    }
    faults.push({
      function: input.function,
      operation: input.operation,
      error: input.error,
      message: input.message ?? `injected fault: ${input.error}`,
      remaining: input.times ?? Number.POSITIVE_INFINITY,
      until: input.durationMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + input.durationMs,
    });
    sendJson(res, 200, input);
  };

  const server = createServer(async (req, res) => {
    try {
      const path = (req.url ?? '/').split('?')[0];
      const route = `${req.method} ${path}`;
      if (route === 'POST /_local/faults') return await addFault(req, res);
      if (route === 'DELETE /_local/faults') {
        faults = [];
        return sendJson(res, 200, {});
      }
      if (route === 'GET /_local/stats') return sendJson(res, 200, { functions: stats });
      const fn = ROUTE.exec(req.url ?? '')?.[1];
      if (req.method === 'POST' && fn && fn in functions)
        return await handleFunction(fn as FunctionName, req, res);
      sendAwsError(
        res,
        400,
        'com.amazon.coral.service#UnrecognizedClientException',
        `the DynamoDB front serves the local functions at /fn/<function>; DynamoDB Local itself is at ${upstream.origin}`,
      );
    } catch (err) {
      sendJson(res, 400, { message: err instanceof Error ? err.message : String(err) });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const url = `http://${options.host}:${(server.address() as AddressInfo).port}`;
  return {
    url,
    endpointOf: (fn) => `${url}/fn/${fn}`,
    setUpstream: (next) => {
      upstream = new URL(next);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
};
