import { createPublicKey, generateKeyPair, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  PutSubscriptionFilterCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { ECSClient, RegisterTaskDefinitionCommand } from '@aws-sdk/client-ecs';
import { CreateScheduleGroupCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateStateMachineCommand, SFNClient } from '@aws-sdk/client-sfn';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import sesLocal from 'aws-ses-v2-local';
import { buildConsole } from '../../console/build.js';
import { buildPodBundle } from '../../pod/build.js';
import { DynamoDirectory } from '../../shared/adapters/dynamo-directory.js';
import { Expression } from '../../shared/adapters/dynamo-keys.js';
import { SWEEPER } from '../../shared/domain/policy.js';
import { loadPriceTable } from '../../shared/domain/pricing.js';
import { LAUNCHED_STATUSES } from '../../shared/domain/run.js';
import {
  ASL_SUBSTITUTIONS,
  type AslSubstitution,
  DEAD_LETTER_QUEUE,
  EVENT_RULES,
  FUNCTIONS,
  POD_CONTAINER_NAME,
  QUEUE,
  ROUTE_THROTTLES,
  ROUTES,
  RUN_FEED_SOURCE,
  RUN_LOGS_SOURCE,
  SCHEDULER,
  WEBSOCKET,
} from '../../shared/manifest.js';
import { startApiGateway } from './api-gateway.js';
import { renderDefinition } from './asl.js';
import { startConsoleServer } from './console-server.js';
import { createDevIssuer } from './dev-auth.js';
import { ensureTable, startDynamoDbLocal } from './dynamodb.js';
import { type DynamoDbFront, startDynamoDbFront } from './dynamodb-front.js';
import { startDynamoDbStreamSource } from './dynamodb-stream-source.js';
import { startEcsEmulator } from './emulators/ecs.js';
import { startLogsEmulator } from './emulators/logs.js';
import { startSchedulerEmulator } from './emulators/scheduler.js';
import { startSecretsManagerEmulator } from './emulators/secretsmanager.js';
import { startSqsEmulator } from './emulators/sqs.js';
import { ecsRunTaskResource, startStepFunctionsEmulator } from './emulators/stepfunctions.js';
import { createEventBus } from './event-bus.js';
import { startSqsEventSource } from './event-sources.js';
import { seedRepository, startGitServer } from './git-server.js';
import { startGitHubServer } from './github-server.js';
import { createLambdaRuntime, FUNCTION_NAME_PREFIX, type LambdaRuntime } from './lambda-runtime.js';
import { startModelServer } from './model-server.js';
import { DEMO, seedDemo } from './seed.js';
import { startWebSocketGateway } from './websocket-gateway.js';

/**
 * The whole system on one machine: emulators that speak the AWS wire protocols, the unchanged
 * handlers in a local Lambda runtime, the same ASL, table, queues, routes and rules CDK deploys.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** the shared pod host (`sharedPodHost`): the pod's code, served by servePods */
export const POD_HOST_ENTRY = fileURLToPath(new URL('./pod-host-main.ts', import.meta.url));
/** the demo repository's files, committed into the git server's `demo/demo-app.git` at start */
const DEMO_REPO_SOURCE = fileURLToPath(new URL('./demo-repo', import.meta.url));
export const REGION = 'us-east-1';
export const ACCOUNT = '000000000000';
const NAMES = {
  table: 'execution-runs',
  queue: 'execution-runs',
  dlq: 'execution-runs-dlq',
  stateMachine: 'execution-runs',
  cluster: 'execution-runs',
  podLogGroup: '/execution-runs/pods',
  stepLogGroup: '/execution-runs/steps',
  /** the run state machine's execution log (on AWS: /aws/vendedlogs/states/<stateless stack>-runs) */
  stateMachineLogGroup: '/aws/vendedlogs/states/execution-runs-runs',
  taskDefinition: 'execution-runs-pod',
  scheduleGroup: 'execution-runs',
  scheduleDlq: 'execution-runs-schedules-dlq',
  runFeedDlq: 'execution-runs-run-feed-dlq',
  schedulerRole: 'execution-runs-scheduler',
};
/** the deployment's GitHub App, as the GitHub stand-in knows it: its bot is `execution-runs[bot]` */
const GITHUB_APP = { id: 1001, slug: 'execution-runs' };

export interface LocalCloudOptions {
  /** first of fifteen consecutive ports (API, DynamoDB, SQS, Step Functions, ECS, Logs, SES, DynamoDB front, git, the local model, Secrets Manager, GitHub, EventBridge Scheduler, the WebSocket API, the console); 0 = any free ports */
  basePort: number;
  host: string;
  /** where endpoints.json, the pod bundle and persisted data go */
  stateDir: string;
  persist: boolean;
  /** seconds between launch attempts; short locally so retries are quick to watch */
  launchBackoffSeconds: string;
  podHeartbeatSeconds: number;
  /** how often a pod paused for approval asks whether to go on */
  controlPollMs: number;
  /** Fargate-like launch limits in the ECS emulator */
  launchLimits: boolean;
  /** pods in one shared process rather than a process each: for bursts of runs on a small machine */
  sharedPodHost?: boolean;
  /**
   * where Claude Code pods reach a model: the local model (default), the Anthropic API with
   * ANTHROPIC_API_KEY, or Amazon Bedrock with the AWS credentials of this environment
   */
  model?: ModelProvider;
  /** the sweeper's schedule and how long a run may stay QUEUED before it re-queues it (default: the policy's) */
  sweeper?: { everySeconds: number; staleAfterSeconds: number };
  /** how often the open pull requests are read from GitHub (default: daily, as deployed) */
  pullRequestSweepSeconds?: number;
  log: (line: string) => void;
}

export const MODEL_PROVIDERS = ['local', 'anthropic', 'bedrock'] as const;
export type ModelProvider = (typeof MODEL_PROVIDERS)[number];

/**
 * What the pods' task definition would hold in the cloud: where the model is. Only what is set is
 * passed on; a real provider's settings come from the environment `npm start` runs in.
 */
const modelEnvironment = (provider: ModelProvider, localModelUrl: string): Record<string, string> => {
  if (provider === 'local') return { ANTHROPIC_BASE_URL: localModelUrl, ANTHROPIC_API_KEY: 'local' };
  const names =
    provider === 'anthropic'
      ? ['ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL']
      : [
          'AWS_REGION',
          'AWS_DEFAULT_REGION',
          'AWS_ACCESS_KEY_ID',
          'AWS_SECRET_ACCESS_KEY',
          'AWS_SESSION_TOKEN',
          'AWS_PROFILE',
        ];
  const required = provider === 'anthropic' ? 'ANTHROPIC_API_KEY' : 'AWS_REGION';
  if (!process.env[required]) throw new Error(`--model ${provider} needs ${required} in the environment`);
  const passed = Object.fromEntries(
    names.flatMap((name) => (process.env[name] ? [[name, process.env[name]]] : [])),
  );
  return provider === 'bedrock' ? { ...passed, CLAUDE_CODE_USE_BEDROCK: '1' } : passed;
};

export interface Endpoints {
  apiUrl: string;
  /** the web console, signed in with the local issuer's people */
  consoleUrl: string;
  /** the WebSocket API: connect with a ticket from `POST /v1/stream/tickets` */
  wsUrl: string;
  /** the demo project admin's token (as `tokens.admin`) */
  token: string;
  /** tokens of the demo project's admin, of a member of it without the admin role, and of an admin of another account */
  tokens: { admin: string; member: string; outsider: string };
  inboxUrl: string;
  accountId: string;
  projectId: string;
  /** the demo pod: Claude Code */
  podId: string;
  /** the scripted pod: the demo agent, driven by a dispatch's `config.demo` */
  scriptedPodId: string;
  region: string;
  tableName: string;
  queueUrl: string;
  deadLetterQueueUrl: string;
  stateMachineArn: string;
  clusterArn: string;
  podLogGroup: string;
  /** where the whole text of oversized steps is kept, a stream per step */
  stepLogGroup: string;
  /** the run state machine's execution log: every history event of every execution, with its data */
  stateMachineLogGroup: string;
  /** each function's log group is this and its name (`/aws/lambda/execution-runs-api`) */
  functionLogGroupPrefix: string;
  /** the demo project's repository on the local git server: its clone URL */
  demoRepo: string;
  /** the local issuer's signing key (JWK), to sign tokens for other users */
  devIssuerKeyPath: string;
  issuer: string;
  audience: string;
  services: {
    /** DynamoDB Local itself, to look at the table */
    dynamodb: string;
    /** what the functions call: their grants and injected faults (dynamodb-front.ts) */
    dynamodbFront: string;
    sqs: string;
    stepfunctions: string;
    ecs: string;
    logs: string;
    sesv2: string;
    /** the git server: smart HTTP with tokens from `POST /_local/tokens` */
    git: string;
    /** the local model: a scripted Anthropic Messages API, for ANTHROPIC_BASE_URL */
    model: string;
    /** the secrets pods name; the local ECS reads them as a task starts */
    secretsmanager: string;
    /** the GitHub stand-in's REST API (octokit's baseUrl), over the git server's repositories */
    github: string;
    /** EventBridge Scheduler: the schedules' copies, ticking on a clock `POST /_local/clock` speeds up */
    scheduler: string;
  };
  /** on the GitHub stand-in: the organization admin's login and personal token, the App and its installation */
  github: { login: string; userToken: string; appId: number; installationId: number };
}

export interface LocalCloud {
  endpoints: Endpoints;
  stop(): Promise<void>;
  /** DynamoDB Local's process id: it runs in its own JVM */
  dynamoDbPid: number | undefined;
  /** the handlers' runtime, whose stats() count invocations and their durations per function */
  runtime: LambdaRuntime;
  /** between the handlers and DynamoDB Local */
  dynamoDbFront: DynamoDbFront;
  /** what the control plane needs to act as the GitHub App: kept out of endpoints.json */
  github: { app: { appId: number; privateKeyPem: string; webhookSecret: string } };
}

/**
 * Runs that were past QUEUED and not yet terminal when the last local cloud stopped. A Scan is fine
 * here: it runs once, at start-up of a local, persisted table, never on a request path.
 */
const inFlightRunIds = async (doc: DynamoDBDocumentClient, tableName: string): Promise<string[]> => {
  const expr = new Expression();
  const ids: string[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: `${expr.name('sk')} = ${expr.value('RUN')} AND ${expr.in('status', LAUNCHED_STATUSES)}`,
        ProjectionExpression: expr.name('runId'),
        ExclusiveStartKey: startKey,
        ...expr.attributes(),
      }),
    );
    for (const item of page.Items ?? []) ids.push(item.runId as string);
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return ids;
};

const portFor = (options: LocalCloudOptions, offset: number) =>
  options.basePort === 0 ? 0 : options.basePort + offset;

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

const startSes = async (port: number, host: string): Promise<{ url: string; close(): Promise<void> }> => {
  // The package is CommonJS with an ES default export; under Node's interop it arrives wrapped.
  const start = (sesLocal as unknown as { default?: typeof sesLocal }).default ?? sesLocal;
  const server: Server = await start({ port, host });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${actual}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
};

/** The pods' own task definitions are of families under it (the stack gives its own prefix). */
const POD_TASK_FAMILY_PREFIX = `${NAMES.taskDefinition}-`;

/**
 * The stack's pod task definition, as CDK deploys it: each start registers it again, as a deploy
 * would (with --persist, a new revision). Its image is only recorded: every local pod runs the pod
 * bundle, whatever image its task definition names.
 */
const registerPodTaskDefinition = async (ecs: ECSClient): Promise<string> => {
  const { taskDefinition } = await ecs.send(
    new RegisterTaskDefinitionCommand({
      family: NAMES.taskDefinition,
      taskRoleArn: `arn:aws:iam::${ACCOUNT}:role/execution-runs-pod-task`,
      executionRoleArn: `arn:aws:iam::${ACCOUNT}:role/execution-runs-pod-execution`,
      networkMode: 'awsvpc',
      requiresCompatibilities: ['FARGATE'],
      cpu: '1024',
      memory: '2048',
      runtimePlatform: { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
      containerDefinitions: [
        {
          name: POD_CONTAINER_NAME,
          image: 'execution-runs/pod:local',
          essential: true,
          logConfiguration: {
            logDriver: 'awslogs',
            options: {
              'awslogs-group': NAMES.podLogGroup,
              'awslogs-region': REGION,
              'awslogs-stream-prefix': 'pod',
            },
          },
        },
      ],
    }),
  );
  if (!taskDefinition?.taskDefinitionArn) throw new Error('the local ECS registered no pod task definition');
  return taskDefinition.taskDefinitionArn;
};

/** A signing key (approval links, page cursors); with --persist it survives restarts, and so do the links. */
const loadOrCreateSecret = async (file: string): Promise<string> => {
  const existing = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (existing.length >= 32) return existing;
  const secret = randomBytes(32).toString('base64url');
  await writeFile(file, secret, { mode: 0o600 });
  return secret;
};

/**
 * The GitHub App's private key, a PKCS#1 PEM as GitHub hands one out, kept beside the other signing
 * secrets: with --persist the App signs with the same key after a restart.
 */
const loadOrCreatePrivateKey = async (file: string): Promise<string> => {
  const existing = await readFile(file, 'utf8').catch(() => '');
  if (existing.includes('PRIVATE KEY')) return existing;
  const { privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  await writeFile(file, privateKey, { mode: 0o600 });
  return privateKey;
};

/**
 * EventBridge Scheduler, as the stack has it: the schedules' group, and a dead-letter queue for the
 * ticks it cannot deliver; each tick invokes its target function in the local Lambda runtime.
 */
const startSchedules = async (
  options: LocalCloudOptions,
  client: { region: string; credentials: typeof credentials },
  sqsClient: SQSClient,
  runtime: LambdaRuntime,
  persistPath: string | undefined,
) => {
  await sqsClient.send(
    new CreateQueueCommand({
      QueueName: NAMES.scheduleDlq,
      Attributes: { MessageRetentionPeriod: String(SCHEDULER.deadLetterRetentionDays * 86_400) },
    }),
  );
  const emulator = await startSchedulerEmulator({
    port: portFor(options, 12),
    host: options.host,
    region: REGION,
    accountId: ACCOUNT,
    persistPath,
    invoke: (arn, payload) => {
      const fn = runtime.functionForArn(arn);
      if (!fn) throw new Error(`no local function for ${arn}`);
      return runtime.invoke(fn, payload);
    },
    deadLetter: async (queueArn, body, attributes) => {
      const { QueueUrl } = await sqsClient.send(
        new GetQueueUrlCommand({ QueueName: queueArn.split(':').at(-1) }),
      );
      await sqsClient.send(
        new SendMessageCommand({
          QueueUrl,
          MessageBody: body,
          MessageAttributes: Object.fromEntries(
            Object.entries(attributes).map(([name, value]) => [
              name,
              { DataType: 'String', StringValue: value },
            ]),
          ),
        }),
      );
    },
    logError: (message, err) =>
      options.log(`${message}: ${err instanceof Error ? err.message : String(err)}`),
  });
  const scheduler = new SchedulerClient({ ...client, endpoint: emulator.url });
  await scheduler.send(new CreateScheduleGroupCommand({ Name: NAMES.scheduleGroup })).catch((err: Error) => {
    if (err.name !== 'ConflictException') throw err;
  });
  scheduler.destroy();
  return {
    url: emulator.url,
    deadLetterQueueArn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${NAMES.scheduleDlq}`,
    close: () => emulator.close(),
  };
};

export const startLocalCloud = async (options: LocalCloudOptions): Promise<LocalCloud> => {
  const sweeper = options.sweeper ?? {
    everySeconds: SWEEPER.rateMinutes * 60,
    staleAfterSeconds: SWEEPER.staleAfterSeconds,
  };
  const stops: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    for (const fn of stops.reverse()) {
      try {
        await fn();
      } catch (err) {
        options.log(`while stopping: ${String(err)}`);
      }
    }
  };
  try {
    // The handlers price usage with PRICE_TABLE as in Lambda; a bad table stops the start, not a run.
    loadPriceTable(process.env.PRICE_TABLE);
    await mkdir(options.stateDir, { recursive: true });
    const dataDir = path.join(options.stateDir, 'data');
    if (options.persist) await mkdir(dataDir, { recursive: true });
    const persisted = (file: string) => (options.persist ? path.join(dataDir, file) : undefined);
    const { host } = options;

    // First, so the functions' bundles build while the emulators start.
    const runtime = createLambdaRuntime({
      functionsDir: path.join(ROOT, 'functions'),
      bundleDir: path.join(options.stateDir, 'functions'),
      functions: FUNCTIONS,
      region: REGION,
      accountId: ACCOUNT,
      // quiet locally unless asked otherwise
      logLevel: process.env.POWERTOOLS_LOG_LEVEL ?? 'WARN',
    });
    stops.push(() => runtime.close());
    const dynamo = await startDynamoDbLocal({
      port: portFor(options, 1),
      dataDir: options.persist ? dataDir : undefined,
    });
    stops.push(() => dynamo.stop());
    const dynamoDbFront = await startDynamoDbFront({
      port: portFor(options, 7),
      host,
      upstream: dynamo.endpoint,
      functions: FUNCTIONS,
      tableName: NAMES.table,
      region: REGION,
      accountId: ACCOUNT,
    });
    stops.push(() => dynamoDbFront.close());
    const sqs = await startSqsEmulator({
      port: portFor(options, 2),
      host,
      region: REGION,
      accountId: ACCOUNT,
      persistPath: persisted('sqs.json'),
    });
    stops.push(() => sqs.close());
    const logs = await startLogsEmulator({
      port: portFor(options, 5),
      host,
      region: REGION,
      accountId: ACCOUNT,
      persistPath: persisted('logs.json'),
      deliver: (arn, event) => {
        const fn = runtime.functionForArn(arn);
        if (!fn) throw new Error(`no local function for ${arn}`);
        return runtime.invoke(fn, event);
      },
    });
    stops.push(() => logs.close());
    const ses = await startSes(portFor(options, 6), host);
    stops.push(() => ses.close());
    // The repositories live with the persisted data, or start afresh with every start.
    const gitRoot = path.join(options.persist ? dataDir : options.stateDir, 'git');
    if (!options.persist) await rm(gitRoot, { recursive: true, force: true });
    await seedRepository(gitRoot, DEMO.repo, DEMO_REPO_SOURCE);
    const git = await startGitServer({
      port: portFor(options, 8),
      host,
      root: gitRoot,
      persistPath: persisted('git-tokens.json'),
      log: options.log,
    });
    stops.push(() => git.close());
    const demoRepo = `${git.url}/${DEMO.repo}`;
    const model = await startModelServer({ port: portFor(options, 9), host, log: options.log });
    stops.push(() => model.close());
    const secretsManager = await startSecretsManagerEmulator({
      port: portFor(options, 10),
      host,
      region: REGION,
      accountId: ACCOUNT,
      persistPath: persisted('secretsmanager.json'),
    });
    stops.push(() => secretsManager.close());
    // The App's key and webhook secret and the admin's token are kept as the other signing secrets.
    const keptDir = options.persist ? dataDir : options.stateDir;
    const githubApp = {
      appId: GITHUB_APP.id,
      privateKeyPem: await loadOrCreatePrivateKey(path.join(keptDir, 'github-app-key.pem')),
      webhookSecret: await loadOrCreateSecret(path.join(keptDir, 'github-webhook-secret')),
    };
    const githubAdmin = {
      login: DEMO.github.adminLogin,
      token: `ghp_${await loadOrCreateSecret(path.join(keptDir, 'github-admin-token'))}`,
    };
    const github = await startGitHubServer({
      port: portFor(options, 11),
      host,
      git: { url: git.url, root: gitRoot },
      app: {
        ...GITHUB_APP,
        publicKeyPem: createPublicKey(githubApp.privateKeyPem)
          .export({ type: 'spki', format: 'pem' })
          .toString(),
      },
      organization: { login: DEMO.github.organization, installationId: DEMO.github.installationId },
      admin: githubAdmin,
      // the webhook URL is the API's, known once it has started
      webhook: { secret: githubApp.webhookSecret },
      persistPath: persisted('github.json'),
      log: options.log,
    });
    stops.push(() => github.close());

    const client = { region: REGION, credentials };
    const dynamoClient = new DynamoDBClient({ ...client, endpoint: dynamo.endpoint });
    await ensureTable(dynamoClient, NAMES.table);
    const sqsClient = new SQSClient({ ...client, endpoint: sqs.url });
    const dlq = await sqsClient.send(
      new CreateQueueCommand({
        QueueName: NAMES.dlq,
        Attributes: { MessageRetentionPeriod: String(DEAD_LETTER_QUEUE.retentionDays * 86_400) },
      }),
    );
    const dlqArn = (
      await sqsClient.send(
        new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes?.QueueArn as string;
    const queue = await sqsClient.send(
      new CreateQueueCommand({
        QueueName: NAMES.queue,
        Attributes: {
          VisibilityTimeout: String(QUEUE.visibilityTimeoutSeconds),
          MessageRetentionPeriod: String(QUEUE.retentionDays * 86_400),
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: dlqArn,
            maxReceiveCount: QUEUE.maxReceiveCount,
          }),
        },
      }),
    );
    const queueUrl = queue.QueueUrl as string;
    const queueArn = `arn:aws:sqs:${REGION}:${ACCOUNT}:${NAMES.queue}`;
    const logsClient = new CloudWatchLogsClient({ ...client, endpoint: logs.url });
    for (const logGroupName of [NAMES.podLogGroup, NAMES.stepLogGroup]) {
      await logsClient.send(new CreateLogGroupCommand({ logGroupName })).catch((err: Error) => {
        if (err.name !== 'ResourceAlreadyExistsException') throw err;
      });
    }
    // The pods' lines go to the followers of each run's log, as the deployed subscription sends them.
    await logsClient.send(
      new PutSubscriptionFilterCommand({
        logGroupName: NAMES.podLogGroup,
        filterName: RUN_LOGS_SOURCE.filterName,
        filterPattern: RUN_LOGS_SOURCE.filterPattern,
        destinationArn: runtime.arnOf(RUN_LOGS_SOURCE.fn),
      }),
    );

    const bus = createEventBus();
    const podBundle = path.join(options.stateDir, 'pod.mjs');
    await buildPodBundle(podBundle);
    const podEnvironment = modelEnvironment(options.model ?? 'local', model.url);
    const podHostBundle = path.join(options.stateDir, 'pod-host.mjs');
    if (options.sharedPodHost) await buildPodBundle(podHostBundle, POD_HOST_ENTRY);
    const ecs = await startEcsEmulator({
      port: portFor(options, 4),
      host,
      region: REGION,
      accountId: ACCOUNT,
      podCommand: { command: process.execPath, args: [podBundle], cwd: ROOT, env: podEnvironment },
      podHost: options.sharedPodHost
        ? { command: process.execPath, args: [podHostBundle], cwd: ROOT, env: podEnvironment }
        : undefined,
      logs: { client: logsClient, logGroupName: NAMES.podLogGroup, streamPrefix: 'pod' },
      onTaskStateChange: (event) => void bus.putEvents([event]),
      launchLimits: options.launchLimits ? { burst: 100, perSecond: 20 } : false,
      secrets: { client: new SecretsManagerClient({ ...client, endpoint: secretsManager.url }) },
      persistPath: persisted('ecs.json'),
    });
    stops.push(() => ecs.close());

    const ecsClient = new ECSClient({ ...client, endpoint: ecs.url });
    const podTaskDefinitionArn = await registerPodTaskDefinition(ecsClient);
    const sfn = await startStepFunctionsEmulator({
      port: portFor(options, 3),
      host,
      region: REGION,
      accountId: ACCOUNT,
      resources: {
        invokeLambda: (arn, payload) => {
          const fn = runtime.functionForArn(arn);
          if (!fn) throw new Error(`no local function for ${arn}`);
          return runtime.invoke(fn, payload);
        },
        runEcsTask: ecsRunTaskResource(ecsClient),
      },
      onExecutionStatusChange: (event) => void bus.putEvents([event]),
      logs: { client: logsClient, logGroupName: NAMES.stateMachineLogGroup },
    });
    stops.push(() => sfn.close());

    const clusterArn = `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${NAMES.cluster}`;
    const substitutions: Record<AslSubstitution, string> = {
      ChecksFunctionArn: runtime.arnOf('checks'),
      MarkRetryingFunctionArn: runtime.arnOf('markRetrying'),
      ParkPodFunctionArn: runtime.arnOf('parkPod'),
      FinalizeFunctionArn: runtime.arnOf('finalize'),
      RequestApprovalFunctionArn: runtime.arnOf('requestApproval'),
      RaisePullRequestFunctionArn: runtime.arnOf('raisePullRequest'),
      ClusterArn: clusterArn,
      SubnetIds: 'subnet-local-a,subnet-local-b',
      SecurityGroupId: 'sg-local',
      AssignPublicIp: 'ENABLED',
    };
    for (const name of ASL_SUBSTITUTIONS)
      if (!substitutions[name]) throw new Error(`no value for \${${name}}`);
    const sfnClient = new SFNClient({ ...client, endpoint: sfn.url });
    const machine = await sfnClient.send(
      new CreateStateMachineCommand({
        name: NAMES.stateMachine,
        definition: renderDefinition(substitutions),
        roleArn: `arn:aws:iam::${ACCOUNT}:role/execution-runs-state-machine`,
        type: 'STANDARD',
      }),
    );

    const schedules = await startSchedules(options, client, sqsClient, runtime, persisted('scheduler.json'));
    stops.push(() => schedules.close());

    const issuerUrl = `http://${host}/local-issuer`;
    // Kept on disk so tools and tests can sign tokens for other users of the local issuer.
    const issuerKeyPath = path.join(options.persist ? dataDir : options.stateDir, 'dev-issuer-key.json');
    const approvalSecret = await loadOrCreateSecret(
      path.join(options.persist ? dataDir : options.stateDir, 'approval-signing-secret'),
    );
    const cursorSecret = await loadOrCreateSecret(
      path.join(options.persist ? dataDir : options.stateDir, 'cursor-signing-secret'),
    );
    const issuer = await createDevIssuer({
      issuer: issuerUrl,
      audience: 'execution-runs',
      keyPath: issuerKeyPath,
    });
    // The demo project's admin, a member of it who is no admin, and someone of another account: the
    // three sides every permission is checked from.
    const signFor = (sub: string, email: string, accountId: string, accountRole: 'admin' | 'member') =>
      issuer.sign(
        { sub, email, 'custom:accountId': accountId, 'custom:accountRole': accountRole },
        30 * 86_400,
      );
    const people = {
      admin: {
        label: `${DEMO.adminUserId} (admin of ${DEMO.projectId})`,
        sign: () => signFor(DEMO.adminUserId, DEMO.adminEmail, DEMO.accountId, 'admin'),
      },
      member: {
        label: `${DEMO.memberUserId} (member of ${DEMO.projectId})`,
        sign: () => signFor(DEMO.memberUserId, DEMO.memberEmail, DEMO.accountId, 'member'),
      },
      outsider: {
        label: `${DEMO.outsider.userId} (admin of ${DEMO.outsider.accountId})`,
        sign: () => signFor(DEMO.outsider.userId, DEMO.outsider.email, DEMO.outsider.accountId, 'admin'),
      },
    };
    // The console as CloudFront would serve it, signing in as those people; the API's CORS allows its origin.
    const consoleBuild = await buildConsole(path.join(options.stateDir, 'console'));
    const consoleServer = await startConsoleServer({
      port: portFor(options, 14),
      host,
      root: consoleBuild.outDir,
      users: Object.entries(people).map(([id, person]) => ({ id, label: person.label })),
      signIn: (user) => people[user as keyof typeof people].sign(),
    });
    stops.push(() => consoleServer.close());
    const api = await startApiGateway({
      port: portFor(options, 0),
      host,
      routes: ROUTES,
      invoke: (fn, event) => runtime.invoke(fn, event),
      verifyJwt: (token) => issuer.verify(token),
      allowOrigins: [consoleServer.url],
      throttleOf: (route) => ROUTE_THROTTLES[route.auth],
    });
    stops.push(() => api.close());
    github.setWebhookUrl(`${api.url}/webhooks/github`);
    // the WebSocket API's stage and its @connections API, as CDK deploys them (shared/manifest.ts)
    const webSocket = await startWebSocketGateway({
      port: portFor(options, 13),
      host,
      routes: WEBSOCKET.routes.filter((route) => !route.startsWith('$')),
      routeSelectionField: WEBSOCKET.routeSelectionExpression.replace('$request.body.', ''),
      stage: WEBSOCKET.stageName,
      invoke: (_routeKey, event) => runtime.invoke(WEBSOCKET.fn, event),
    });
    stops.push(() => webSocket.close());

    // Each function gets the variables it declares, with this deployment's values, as CDK sets them.
    runtime.configure({
      logs: logsClient,
      values: {
        TABLE_NAME: NAMES.table,
        QUEUE_URL: queueUrl,
        STATE_MACHINE_ARN: machine.stateMachineArn,
        CLUSTER_ARN: clusterArn,
        AGENT_API_URL: api.url,
        LOG_GROUP_NAME: NAMES.podLogGroup,
        STEP_LOG_GROUP_NAME: NAMES.stepLogGroup,
        POD_TASK_DEFINITION_ARN: podTaskDefinitionArn,
        POD_TASK_FAMILY_PREFIX: POD_TASK_FAMILY_PREFIX,
        LAUNCH_BACKOFF_SECONDS: options.launchBackoffSeconds,
        POD_HEARTBEAT_SECONDS: String(options.podHeartbeatSeconds),
        CONTROL_POLL_MS: String(options.controlPollMs),
        SWEEPER_STALE_AFTER_SECONDS: String(sweeper.staleAfterSeconds),
        // what a deployment takes as CDK context, `npm start` takes from its own environment
        PRICE_TABLE: process.env.PRICE_TABLE,
        POD_CPU_ARCHITECTURE: process.env.POD_CPU_ARCHITECTURE,
        // Approval links point at the local API and are signed with a key kept beside the issuer's.
        PUBLIC_API_URL: api.url,
        APPROVAL_SENDER: 'approvals@example.com',
        APPROVAL_SIGNING_SECRET: approvalSecret,
        // The API's own key for the page cursors it hands out, kept beside it.
        CURSOR_SIGNING_SECRET: cursorSecret,
        // GitHub is the stand-in, whose repositories are the git server's: the pods' git credentials
        // are its installation tokens, and the control plane opens pull requests there.
        GITHUB_APP_ID: String(githubApp.appId),
        GITHUB_API_URL: github.url,
        GITHUB_WEB_URL: git.url,
        GITHUB_APP_SECRET: JSON.stringify({
          privateKey: githubApp.privateKeyPem,
          webhookSecret: githubApp.webhookSecret,
        }),
        SCHEDULE_GROUP_NAME: NAMES.scheduleGroup,
        SCHEDULE_TARGET_ARN: runtime.arnOf('scheduledDispatch'),
        SCHEDULER_ROLE_ARN: `arn:aws:iam::${ACCOUNT}:role/${NAMES.schedulerRole}`,
        SCHEDULE_DEAD_LETTER_QUEUE_ARN: schedules.deadLetterQueueArn,
        WEBSOCKET_URL: webSocket.url,
        WEBSOCKET_CALLBACK_URL: webSocket.callbackUrl,
      },
      endpoints: (fn) => ({
        AWS_ENDPOINT_URL_DYNAMODB: dynamoDbFront.endpointOf(fn),
        AWS_ENDPOINT_URL_SQS: sqs.url,
        AWS_ENDPOINT_URL_SFN: sfn.url,
        AWS_ENDPOINT_URL_ECS: ecs.url,
        AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: logs.url,
        AWS_ENDPOINT_URL_SESV2: ses.url,
        AWS_ENDPOINT_URL_SCHEDULER: schedules.url,
      }),
    });

    for (const rule of EVENT_RULES)
      bus.addRule(rule.name, rule.pattern, (event) => runtime.invoke(rule.fn, event));
    const sources = [
      await startSqsEventSource({
        sqs: sqsClient,
        queueUrl,
        queueArn,
        batchSize: QUEUE.batchSize,
        maxBatchingWindowSeconds: QUEUE.maxBatchingWindowSeconds,
        reportBatchItemFailures: true,
        invoke: (event) => runtime.invoke('startRun', event),
      }),
      await startSqsEventSource({
        sqs: sqsClient,
        queueUrl: dlq.QueueUrl as string,
        queueArn: dlqArn,
        batchSize: DEAD_LETTER_QUEUE.batchSize,
        maxBatchingWindowSeconds: 0,
        reportBatchItemFailures: true,
        invoke: (event) => runtime.invoke('deadLetter', event),
      }),
    ];
    // The table's stream into run-feed, read from DynamoDB Local itself (as Lambda reads it, not
    // through the functions' front); what keeps failing goes to the feed's dead-letter queue.
    const runFeedDlqUrl = (await sqsClient.send(new CreateQueueCommand({ QueueName: NAMES.runFeedDlq })))
      .QueueUrl as string;
    const runFeed = await startDynamoDbStreamSource({
      dynamodb: dynamoClient,
      streams: new DynamoDBStreamsClient({ ...client, endpoint: dynamo.endpoint }),
      tableName: NAMES.table,
      batchSize: RUN_FEED_SOURCE.batchSize,
      maximumBatchingWindowMs: RUN_FEED_SOURCE.maximumBatchingWindowSeconds * 1000,
      // a restarted local cloud reads the stream from where it is now: the feed holds what came before
      startingPosition: 'LATEST',
      filters: [...RUN_FEED_SOURCE.filters],
      reportBatchItemFailures: true,
      bisectBatchOnError: true,
      maximumRetryAttempts: RUN_FEED_SOURCE.maximumRetryAttempts,
      invoke: (event) => runtime.invoke(RUN_FEED_SOURCE.fn, event),
      onFailure: async (failure) => {
        await sqsClient.send(
          new SendMessageCommand({ QueueUrl: runFeedDlqUrl, MessageBody: JSON.stringify(failure) }),
        );
      },
      logError: (message, err) => options.log(`run-feed: ${message}: ${(err as Error).message}`),
    });
    // Event sources stop before the services they read from.
    stops.push(async () => {
      await Promise.all([...sources.map((s) => s.stop()), runFeed.stop()]);
    });
    stops.push(
      bus.every('sweeper', sweeper.everySeconds * 1000, (event) => runtime.invoke('sweeper', event)),
      bus.every('pullRequestSweep', (options.pullRequestSweepSeconds ?? 86_400) * 1000, (event) =>
        runtime.invoke('pullRequestSweep', event),
      ),
    );
    stops.push(() => bus.close());

    const doc = DynamoDBDocumentClient.from(dynamoClient, {
      marshallOptions: { removeUndefinedValues: true },
    });
    const demo = await seedDemo(new DynamoDirectory(doc, NAMES.table), demoRepo);
    if (options.persist) {
      const orphaned = await inFlightRunIds(doc, NAMES.table);
      // Executions do not outlive the local cloud: end the runs they carried as the cloud would
      // after an aborted execution. (QUEUED runs keep their persisted messages.)
      for (const runId of orphaned) {
        await runtime.invoke('reconcile', {
          source: 'aws.states',
          'detail-type': 'Step Functions Execution Status Change',
          detail: { status: 'ABORTED', input: JSON.stringify({ runId }) },
        });
      }
      if (orphaned.length > 0)
        options.log(`stopped ${orphaned.length} run(s) left in flight by the last stop`);
    }
    const tokens = {
      admin: await people.admin.sign(),
      member: await people.member.sign(),
      outsider: await people.outsider.sign(),
    };
    const token = tokens.admin;
    consoleServer.configure({ apiUrl: api.url, wsUrl: webSocket.url });

    const endpoints: Endpoints = {
      apiUrl: api.url,
      consoleUrl: consoleServer.url,
      wsUrl: webSocket.url,
      token,
      tokens,
      inboxUrl: ses.url,
      accountId: demo.accountId,
      projectId: demo.projectId,
      podId: demo.podId,
      scriptedPodId: demo.scriptedPodId,
      region: REGION,
      tableName: NAMES.table,
      queueUrl,
      deadLetterQueueUrl: dlq.QueueUrl as string,
      stateMachineArn: machine.stateMachineArn as string,
      clusterArn,
      podLogGroup: NAMES.podLogGroup,
      stepLogGroup: NAMES.stepLogGroup,
      stateMachineLogGroup: NAMES.stateMachineLogGroup,
      functionLogGroupPrefix: `/aws/lambda/${FUNCTION_NAME_PREFIX}`,
      demoRepo,
      devIssuerKeyPath: issuerKeyPath,
      issuer: issuerUrl,
      audience: 'execution-runs',
      services: {
        dynamodb: dynamo.endpoint,
        dynamodbFront: dynamoDbFront.url,
        sqs: sqs.url,
        stepfunctions: sfn.url,
        ecs: ecs.url,
        logs: logs.url,
        sesv2: ses.url,
        git: git.url,
        model: model.url,
        secretsmanager: secretsManager.url,
        scheduler: schedules.url,
        github: github.url,
      },
      github: {
        login: githubAdmin.login,
        userToken: githubAdmin.token,
        appId: GITHUB_APP.id,
        installationId: DEMO.github.installationId,
      },
    };
    await writeFile(path.join(options.stateDir, 'endpoints.json'), `${JSON.stringify(endpoints, null, 2)}\n`);
    return {
      endpoints,
      stop,
      runtime,
      dynamoDbFront,
      dynamoDbPid: dynamo.pid,
      github: { app: githubApp },
    };
  } catch (err) {
    await stop();
    throw err;
  }
};
