import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AgentEvent,
  agentEventBatchSchema,
  type Control,
  type GitCredential,
  type PodRunConfig,
} from '../../../shared/schemas/agent-events.js';

/** What the fake answers to one request: a status, and for 2xx event posts the control. */
export interface FakeAnswer {
  status?: number;
  control?: Control;
  /** cut the connection instead of answering */
  hangUp?: boolean;
}

export interface FakeAgentApiOptions {
  config?: Partial<PodRunConfig>;
  configAnswer?: (n: number) => FakeAnswer;
  /** answers the n-th events post (from 1); default 200 with continue */
  eventsAnswer?: (batch: AgentEvent[], n: number) => FakeAnswer;
  /** answers the n-th control request (from 1); default continue */
  controlAnswer?: (n: number) => FakeAnswer;
  /** answers the n-th launch-code exchange (from 1); default the token, once, for the right code and task */
  exchangeAnswer?: (n: number) => FakeAnswer;
  /** take the task ARN the pod presents, whoever's metadata it read (pods hosted by the local ECS) */
  anyTask?: boolean;
  /** the git credential the run gets; without one, asking for it is answered 503 */
  gitCredential?: GitCredential;
}

export interface FakeAgentApi {
  url: string;
  runId: string;
  token: string;
  /** the one-time code the pod exchanges for `token`, and the task it must say it runs as */
  launchCode: string;
  taskArn: string;
  /** the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) that names `taskArn` */
  metadataUri: string;
  /** the task ARN each launch-code exchange presented */
  exchanges: string[];
  /** every events post as received, retries and refused ones included */
  posts: AgentEvent[][];
  /** bodies that did not match the batch schema */
  invalidBodies: string[];
  controlRequests: number;
  gitCredentialRequests: number;
  authorizations: (string | undefined)[];
  /** the events the fake accepted, each seq once, in seq order */
  accepted(): AgentEvent[];
  close(): Promise<void>;
}

const readBody = async (req: IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

/** The Agent API as the pod sees it, for tests: records what arrives and answers as told. */
export const startFakeAgentApi = async (options: FakeAgentApiOptions = {}): Promise<FakeAgentApi> => {
  const runId = 'run_01JTESTRUN0000000000000000';
  const token = 'agent-token';
  const launchCode = 'launch-code-0123456789';
  const taskArn = 'arn:aws:ecs:us-east-1:000000000000:task/pods/0123456789abcdef';
  let codeSpent = false;
  const accepted = new Map<number, AgentEvent>();
  const counts = { config: 0, events: 0 };
  const config: PodRunConfig = {
    runId,
    podId: 'pod-1',
    mode: 'autopilot',
    prompt: 'Fix the flaky test',
    repos: [],
    itemId: 'item-1',
    dispatcher: { userId: 'alice', email: 'alice@example.com' },
    agent: { kind: 'demo' },
    hooks: {},
    checkpoints: [],
    env: {},
    secretVariables: [],
    heartbeatSeconds: 60,
    ...options.config,
  };
  const api: FakeAgentApi = {
    url: '',
    runId,
    token,
    launchCode,
    taskArn,
    metadataUri: '',
    exchanges: [],
    posts: [],
    invalidBodies: [],
    controlRequests: 0,
    gitCredentialRequests: 0,
    authorizations: [],
    accepted: () => [...accepted.values()].sort((a, b) => a.seq - b.seq),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    api.authorizations.push(req.headers.authorization);
    const reply = (answer: FakeAnswer, ok: () => unknown) => {
      if (answer.hangUp) return req.socket.destroy();
      const status = answer.status ?? 200;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status < 300 ? ok() : { error: { code: 'Fake', message: `status ${status}` } }));
    };
    const base = `/agent/v1/runs/${runId}`;
    if (req.method === 'GET' && req.url === '/metadata/task') return reply({}, () => ({ TaskARN: taskArn }));
    if (req.method === 'POST' && req.url === `${base}/token`) {
      const { code, taskArn: presented } = JSON.parse(body || '{}') as { code?: string; taskArn?: string };
      api.exchanges.push(String(presented));
      const answer = options.exchangeAnswer?.(api.exchanges.length) ?? {};
      const good = !codeSpent && code === launchCode && (options.anyTask || presented === taskArn);
      if ((answer.status ?? 200) < 300) codeSpent ||= good;
      return reply(good ? answer : { status: 401 }, () => ({ token }));
    }
    if (req.headers.authorization !== `Bearer ${token}`) return reply({ status: 401 }, () => ({}));
    if (req.method === 'GET' && req.url === base) {
      counts.config += 1;
      return reply(options.configAnswer?.(counts.config) ?? {}, () => config);
    }
    if (req.method === 'GET' && req.url === `${base}/control`) {
      api.controlRequests += 1;
      const answer = options.controlAnswer?.(api.controlRequests) ?? {};
      return reply(answer, () => answer.control ?? { action: 'continue' });
    }
    if (req.method === 'POST' && req.url === `${base}/git-credentials`) {
      api.gitCredentialRequests += 1;
      const credential = options.gitCredential;
      return reply(credential ? {} : { status: 503 }, () => credential);
    }
    if (req.method === 'POST' && req.url === `${base}/events`) {
      const parsed = agentEventBatchSchema.safeParse(JSON.parse(body));
      if (!parsed.success) {
        api.invalidBodies.push(body);
        return reply({ status: 400 }, () => ({}));
      }
      counts.events += 1;
      api.posts.push(parsed.data.events);
      const answer = options.eventsAnswer?.(parsed.data.events, counts.events) ?? {};
      return reply(answer, () => {
        let duplicates = 0;
        for (const event of parsed.data.events) {
          if (accepted.has(event.seq)) duplicates += 1;
          else accepted.set(event.seq, event);
        }
        return {
          accepted: parsed.data.events.length - duplicates,
          duplicates,
          control: answer.control ?? { action: 'continue' },
        };
      });
    }
    reply({ status: 404 }, () => ({}));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  api.metadataUri = `${api.url}/metadata`;
  return api;
};
