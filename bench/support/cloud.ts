import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type Shard,
} from '@aws-sdk/client-dynamodb-streams';
import { GetExecutionHistoryCommand, type HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import { BatchGetCommand, DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { type LocalCloud, startLocalCloud } from '../../infra/local/cloud.js';
import type { OperationStats } from '../../infra/local/emulators/json-protocol.js';
import type { FunctionStats } from '../../infra/local/lambda-runtime.js';
import { LAUNCH } from '../../shared/domain/policy.js';
import { executionName, isTerminal, type Run } from '../../shared/domain/run.js';
import {
  type AccountLimits,
  type Checkpoint,
  MAX_API_REQUESTS_PER_SECOND,
} from '../../shared/domain/tenancy.js';
import type { FunctionName } from '../../shared/manifest.js';
import { type AgentMeter, type AgentTraffic, startAgentMeter } from './agent-meter.js';
import { type CapacityTotals, type DynamoMeter, startDynamoMeter } from './dynamo-meter.js';

/**
 * The local cloud, started in this process as `npm start -- --shared-pod-host` starts it but with the
 * deployed launch and heartbeat settings, with meters in front of DynamoDB Local (behind the functions'
 * DynamoDB front) and the Agent API. The benchmark itself reads runs straight from DynamoDB Local, so
 * its own reads cost the runs nothing.
 */

export const SERVICES = ['sqs', 'stepfunctions', 'ecs', 'logs'] as const;
export type MeteredService = (typeof SERVICES)[number];

/** Everything counted so far; two snapshots give what happened between them. */
export interface Counters {
  lambda: Record<FunctionName, FunctionStats>;
  services: Record<MeteredService, Record<string, OperationStats>>;
  dynamo: CapacityTotals;
  agent: AgentTraffic;
  emails: number;
}

export interface DemoScript {
  steps?: number;
  stepDelayMs?: number;
  /** the demo agent edits a file, which the run commits and pushes (default true) */
  edit?: boolean;
  usage?: { model: string; inputTokens: number; outputTokens: number }[];
}

export interface Dispatch {
  /** a pod of the local cloud (its own config, no script); the scripted pod unless said */
  podId?: string;
  mode?: 'autopilot' | 'supervised';
  demo?: DemoScript;
  /**
   * to a project without repositories: the pod clones nothing, so the figure is the control plane's
   * (a thousand clones at once on two cores would measure git, not the launch path)
   */
  repoless?: boolean;
  /** where a supervised run pauses: the scripted pod's own (plan and commit) unless said */
  checkpoints?: Checkpoint[];
  /** makes a retried dispatch safe */
  idempotencyKey?: string;
}

export interface BenchCloud {
  cloud: LocalCloud;
  dynamo: DynamoMeter;
  agent: AgentMeter;
  /** straight to DynamoDB Local, past the meter */
  db: DynamoDBDocumentClient;
  sfn: SFNClient;
  counters(): Promise<Counters>;
  /** POST /v1/projects/{projectId}/runs as the demo admin; resolves to the run id */
  dispatch(request?: Dispatch): Promise<string>;
  /** GET on the public API as the demo admin */
  apiGet<T>(path: string): Promise<T>;
  /**
   * Sets the demo account's limits (caps unset unless given). Its requests a second are always the
   * highest an account may have: the bench is one heavy client measuring the routes, not its limit.
   */
  setAccountLimits(limits?: Partial<AccountLimits>): Promise<void>;
  getRun(runId: string): Promise<Run | undefined>;
  getRuns(runIds: string[]): Promise<Run[]>;
  /** polls until `done` holds for the run, or throws after `timeoutMs` */
  waitForRun(runId: string, done: (run: Run) => boolean, timeoutMs: number): Promise<Run>;
  /** resolves once no handler has run for `quietMs` */
  settle(quietMs?: number, timeoutMs?: number): Promise<void>;
  /** state names the run's execution entered, in order */
  statesEntered(run: Run): Promise<string[]>;
  /**
   * Writes of the run's item and its step packs, as the table's stream carries them: the changes
   * run-feed turns into the run's events. Read from the stream's start, straight from DynamoDB Local.
   */
  runWrites(runId: string): Promise<number>;
  stop(): Promise<void>;
}

const get = async <T>(url: string): Promise<T> => {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  return (await response.json()) as T;
};

export interface BenchCloudOptions {
  /** pods hosted in one process (the default), or each its own process as a Fargate task is */
  sharedPodHost?: boolean;
}

export const startBenchCloud = async (
  log: (line: string) => void,
  options: BenchCloudOptions = {},
): Promise<BenchCloud> => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'bench-cloud-'));
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  const cloud = await startLocalCloud({
    basePort: 0,
    host: '127.0.0.1',
    stateDir,
    persist: false,
    launchBackoffSeconds: LAUNCH.backoffSeconds.join(','),
    podHeartbeatSeconds: LAUNCH.heartbeatSeconds,
    controlPollMs: LAUNCH.controlPollMs,
    launchLimits: true,
    // a Node process per pod would spend the two cores starting pods (see pod-host.ts)
    sharedPodHost: options.sharedPodHost ?? true,
    log,
  });
  const { endpoints } = cloud;
  const dynamo = await startDynamoMeter(endpoints.services.dynamodb);
  const agent = await startAgentMeter(endpoints.apiUrl);
  // From here on what the functions' DynamoDB front lets through passes the meter, and the checks hand
  // pods the Agent API meter's URL (a new configuration, which every function's next sandbox gets).
  cloud.dynamoDbFront.setUpstream(dynamo.url);
  cloud.runtime.configure({ values: { AGENT_API_URL: agent.url } });

  const aws = { region: endpoints.region, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } };
  const dynamodb = new DynamoDBClient({ ...aws, endpoint: endpoints.services.dynamodb });
  const db = DynamoDBDocumentClient.from(dynamodb);
  const streams = new DynamoDBStreamsClient({ ...aws, endpoint: endpoints.services.dynamodb });
  const sfn = new SFNClient({ ...aws, endpoint: endpoints.services.stepfunctions });

  const counters = async (): Promise<Counters> => {
    const services = Object.fromEntries(
      await Promise.all(
        SERVICES.map(async (name) => {
          const { operations } = await get<{ operations: Record<string, OperationStats> }>(
            `${endpoints.services[name]}/_local/stats`,
          );
          return [name, operations] as const;
        }),
      ),
    ) as Counters['services'];
    const { emails } = await get<{ emails: unknown[] }>(`${endpoints.inboxUrl}/store`);
    return {
      lambda: cloud.runtime.stats(),
      services,
      dynamo: dynamo.totals(),
      agent: agent.totals(),
      emails: emails.length,
    };
  };

  const headers = { authorization: `Bearer ${endpoints.token}`, 'content-type': 'application/json' };
  /** A scripted pod that pauses at `checkpoints`, made once. */
  const scriptedPods = new Map<string, Promise<string>>();
  const scriptedPodPausingAt = (checkpoints: Checkpoint[]) => {
    const podId = `scripted-${checkpoints.join('-') || 'no-checkpoints'}`;
    const made =
      scriptedPods.get(podId) ??
      fetch(`${endpoints.apiUrl}/v1/pods/${podId}`, {
        method: 'PUT',
        headers,
        body: JSON.stringify({
          name: podId,
          cpu: 1024,
          memoryMiB: 2048,
          agent: { kind: 'demo' },
          checkpoints,
        }),
      }).then((response) => {
        if (response.status !== 200) throw new Error(`PUT /v1/pods/${podId} answered ${response.status}`);
        return podId;
      });
    scriptedPods.set(podId, made);
    return made;
  };

  const REPOLESS_PROJECT = 'bench-repoless';
  let repolessProject: Promise<string> | undefined;
  const projectOf = (request: Dispatch): Promise<string> | string => {
    if (!request.repoless) return endpoints.projectId;
    repolessProject ??= fetch(`${endpoints.apiUrl}/v1/projects/${REPOLESS_PROJECT}`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ name: 'Benchmark runs without repositories', repos: [] }),
    }).then((response) => {
      if (response.status !== 200)
        throw new Error(`PUT /v1/projects/${REPOLESS_PROJECT} answered ${response.status}`);
      return REPOLESS_PROJECT;
    });
    return repolessProject;
  };

  const dispatch = async (request: Dispatch = {}): Promise<string> => {
    const podId =
      request.podId ??
      (request.checkpoints ? await scriptedPodPausingAt(request.checkpoints) : endpoints.scriptedPodId);
    const response = await fetch(`${endpoints.apiUrl}/v1/projects/${await projectOf(request)}/runs`, {
      method: 'POST',
      headers: {
        ...headers,
        ...(request.idempotencyKey ? { 'idempotency-key': request.idempotencyKey } : {}),
      },
      body: JSON.stringify({
        itemId: 'BENCH-1',
        podId,
        mode: request.mode ?? 'autopilot',
        prompt: 'Add a health check endpoint',
        ...(request.podId ? {} : { config: { demo: request.demo ?? {} } }),
      }),
    });
    const body = (await response.json()) as { runId?: string };
    if (response.status !== 202 || !body.runId) {
      throw new Error(`dispatch answered ${response.status}: ${JSON.stringify(body)}`);
    }
    return body.runId;
  };

  const apiGet = async <T>(route: string): Promise<T> => {
    const response = await fetch(`${endpoints.apiUrl}${route}`, { headers });
    if (!response.ok) throw new Error(`GET ${route} answered ${response.status}`);
    return (await response.json()) as T;
  };

  const setAccountLimits = async (limits: Partial<AccountLimits> = {}) => {
    const response = await fetch(`${endpoints.apiUrl}/v1/account/limits`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({
        dailyCapMicroUsd: 0,
        monthlyCapMicroUsd: 0,
        ...limits,
        apiRequestsPerSecond: MAX_API_REQUESTS_PER_SECOND,
      }),
    });
    if (!response.ok) throw new Error(`the account's limits could not be set: ${await response.text()}`);
  };
  await setAccountLimits();

  const runsTable = endpoints.tableName;
  const getRun = async (runId: string) => {
    const out = await db.send(
      new GetCommand({ TableName: runsTable, Key: { pk: `RUN#${runId}`, sk: 'RUN' }, ConsistentRead: true }),
    );
    return out.Item as Run | undefined;
  };

  const getRuns = async (runIds: string[]): Promise<Run[]> => {
    const found: Run[] = [];
    for (let i = 0; i < runIds.length; i += 100) {
      let keys: Record<string, unknown>[] = runIds
        .slice(i, i + 100)
        .map((id) => ({ pk: `RUN#${id}`, sk: 'RUN' }));
      while (keys.length > 0) {
        const out = await db.send(new BatchGetCommand({ RequestItems: { [runsTable]: { Keys: keys } } }));
        found.push(...((out.Responses?.[runsTable] ?? []) as Run[]));
        keys = out.UnprocessedKeys?.[runsTable]?.Keys ?? [];
      }
    }
    return found;
  };

  const waitForRun = async (runId: string, done: (run: Run) => boolean, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await getRun(runId);
      if (run && done(run)) return run;
      if (Date.now() > deadline) {
        throw new Error(`run ${runId} is still ${run?.status ?? 'missing'} after ${timeoutMs} ms`);
      }
      await sleep(25);
    }
  };

  const settle = async (quietMs = 400, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    const activity = () =>
      Object.values(cloud.runtime.stats()).reduce((n, s) => n + s.invocations * 1e9 + s.totalMs, 0);
    let last = activity();
    let quietSince = Date.now();
    while (Date.now() - quietSince < quietMs) {
      if (Date.now() > deadline) throw new Error(`the local cloud did not go quiet in ${timeoutMs} ms`);
      await sleep(50);
      const now = activity();
      if (now !== last) {
        last = now;
        quietSince = Date.now();
      }
    }
  };

  const statesEntered = async (run: Run): Promise<string[]> => {
    const executionArn = `${endpoints.stateMachineArn.replace(':stateMachine:', ':execution:')}:${executionName(run)}`;
    const names: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await sfn.send(
        new GetExecutionHistoryCommand({ executionArn, maxResults: 1000, nextToken }),
      );
      for (const event of page.events ?? ([] as HistoryEvent[])) {
        if (event.type?.endsWith('StateEntered') && event.stateEnteredEventDetails?.name) {
          names.push(event.stateEnteredEventDetails.name);
        }
      }
      nextToken = page.nextToken;
    } while (nextToken);
    return names;
  };

  const runWrites = async (runId: string): Promise<number> => {
    const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: runsTable }));
    const streamArn = Table?.LatestStreamArn;
    if (!streamArn) throw new Error(`table ${runsTable} has no stream`);
    const shards: Shard[] = [];
    let startShard: string | undefined;
    do {
      const { StreamDescription } = await streams.send(
        new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: startShard }),
      );
      shards.push(...(StreamDescription?.Shards ?? []));
      startShard = StreamDescription?.LastEvaluatedShardId;
    } while (startShard);
    let writes = 0;
    for (const shard of shards) {
      let iterator = (
        await streams.send(
          new GetShardIteratorCommand({
            StreamArn: streamArn,
            ShardId: shard.ShardId,
            ShardIteratorType: 'TRIM_HORIZON',
          }),
        )
      ).ShardIterator;
      while (iterator) {
        const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1000 }));
        for (const record of page.Records ?? []) {
          const keys = record.dynamodb?.Keys;
          const sk = keys?.sk?.S ?? '';
          if (keys?.pk?.S === `RUN#${runId}` && (sk === 'RUN' || sk.startsWith('STEPS#'))) writes += 1;
        }
        // an open shard answers an empty page once it has given everything written so far
        iterator = (page.Records ?? []).length > 0 ? page.NextShardIterator : undefined;
      }
    }
    return writes;
  };

  return {
    cloud,
    dynamo,
    agent,
    db,
    sfn,
    counters,
    dispatch,
    apiGet,
    setAccountLimits,
    getRun,
    getRuns,
    waitForRun,
    settle,
    statesEntered,
    runWrites,
    stop: async () => {
      db.destroy();
      streams.destroy();
      sfn.destroy();
      await agent.close();
      await dynamo.close();
      await cloud.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
};

export const terminal = (run: Run) => isTerminal(run.status);
