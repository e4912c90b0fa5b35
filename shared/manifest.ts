import type { EnvName } from './config.js';

/**
 * The manifest: the one description of the deployed resources that the CDK stacks, the local cloud
 * and the runtime code all read: the table and its indexes, the queues, the functions with their
 * environment and grants, the HTTP routes, the EventBridge rules. Topology only; the lifecycle's
 * policy (attempts, back-offs, ages) is domain (shared/domain/policy.ts). Nothing here imports
 * aws-cdk-lib, so the local cloud and the handlers use it without CDK.
 */

/** What each record of a table's stream holds (DynamoDB's StreamViewType). */
export type StreamViewType = 'KEYS_ONLY' | 'NEW_IMAGE' | 'OLD_IMAGE' | 'NEW_AND_OLD_IMAGES';

export const TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  timeToLiveAttribute: 'expiresAt',
  /** The table's stream: every change with the item before and after it, for functions that follow runs live. */
  stream: 'NEW_AND_OLD_IMAGES' satisfies StreamViewType,
  /** All list indexes are keyed by a partition per scope and the run id (a ULID, so time-ordered). */
  globalSecondaryIndexes: [
    { indexName: 'byAccount', partitionKey: 'gAcct', sortKey: 'runId' },
    { indexName: 'byAccountStatus', partitionKey: 'gAcctStatus', sortKey: 'runId' },
    { indexName: 'byProject', partitionKey: 'gProj', sortKey: 'runId' },
    { indexName: 'byProjectStatus', partitionKey: 'gProjStatus', sortKey: 'runId' },
    { indexName: 'byAccountPod', partitionKey: 'gAcctPod', sortKey: 'runId' },
    { indexName: 'byAccountSource', partitionKey: 'gAcctSource', sortKey: 'runId' },
    /** sparse: only QUEUED runs carry `gQueued`, for the sweeper */
    { indexName: 'queued', partitionKey: 'gQueued', sortKey: 'runId' },
    /** sparse: only runs paused for approval carry `gPaused`, for the sweeper's budget checks */
    { indexName: 'awaitingApproval', partitionKey: 'gPaused', sortKey: 'runId' },
    /** sparse: runs whose pull request is open carry `gOpenPr`, for the pull requests' daily sweep */
    { indexName: 'openPullRequests', partitionKey: 'gOpenPr', sortKey: 'runId' },
    /** sparse: only runs not ended carry `gActive`, for the age of the oldest (an alarm) */
    { indexName: 'active', partitionKey: 'gActive', sortKey: 'runId' },
  ],
  /** Attributes the list indexes carry besides their keys, for filters that never change. */
  projectedAttributes: ['podId', 'source', 'projectId', 'status'],
} as const;

export type IndexName = (typeof TABLE.globalSecondaryIndexes)[number]['indexName'];

export const QUEUE = {
  /** longer than start-run's timeout, as SQS event sources require */
  visibilityTimeoutSeconds: 60,
  maxReceiveCount: 5,
  retentionDays: 14,
  batchSize: 10,
  // a run starts as soon as its message arrives; a window would save an invocation per batch
  // ($0.0000002) at the price of up to this long in every dispatch
  maxBatchingWindowSeconds: 0,
} as const;

export const DEAD_LETTER_QUEUE = { batchSize: 10, retentionDays: 14 } as const;

/**
 * EventBridge Scheduler: where the ticks go once their retries are spent (the retries themselves are
 * SCHEDULE.tickRetry, which a tick's claim on its schedule waits out).
 */
export const SCHEDULER = { deadLetterRetentionDays: 14 } as const;

export type FunctionName =
  | 'api'
  | 'agentApi'
  | 'startRun'
  | 'deadLetter'
  | 'checks'
  | 'markRetrying'
  | 'parkPod'
  | 'finalize'
  | 'podStopped'
  | 'reconcile'
  | 'sweeper'
  | 'requestApproval'
  | 'approvals'
  | 'raisePullRequest'
  | 'githubWebhooks'
  | 'schedules'
  | 'scheduledDispatch'
  | 'pullRequestSweep'
  | 'stream'
  | 'runFeed'
  | 'runLogs';

/** DynamoDB actions a function may take on the table (TransactWriteItems is authorized per inner action). */
export type TableAction =
  | 'GetItem'
  | 'BatchGetItem'
  | 'Query'
  | 'PutItem'
  | 'UpdateItem'
  | 'DeleteItem'
  | 'BatchWriteItem'
  | 'ConditionCheckItem';

export interface FunctionDefinition {
  /** file under functions/, without extension */
  entry: string;
  timeoutSeconds: number;
  memoryMiB: number;
  description: string;
  /**
   * Every variable the handler reads, and nothing else: the CDK function and the local Lambda
   * runtime both give it exactly these (values from the deployment), so a variable missing from a
   * deployed function is missing locally too.
   */
  environment: readonly EnvName[];
  /** What it may do to the runs table and which list indexes it may query: the grant, in CDK and locally. */
  table: { actions: readonly TableAction[]; indexes: readonly IndexName[] };
}

/** Set on every function: Powertools reads them, and they group every handler's logs and metrics. */
export const FUNCTION_DEFAULT_ENVIRONMENT = {
  POWERTOOLS_SERVICE_NAME: 'execution-runs',
  POWERTOOLS_METRICS_NAMESPACE: 'ExecutionRuns',
  POWERTOOLS_LOG_LEVEL: 'INFO',
  NODE_OPTIONS: '--enable-source-maps',
} as const;

const READ_WRITE_RUN: TableAction[] = ['GetItem', 'UpdateItem'];
/** Ending a run settles its cost: the settlement is put in a transaction with the run's and the spend's updates. */
const SETTLE: TableAction[] = ['GetItem', 'UpdateItem', 'PutItem'];
const PRICING: readonly EnvName[] = ['PRICE_TABLE', 'POD_CPU_ARCHITECTURE'];
const CLAIMS: readonly EnvName[] = ['TENANT_CLAIM', 'ACCOUNT_ROLE_CLAIM'];
const APPROVAL_SECRET: readonly EnvName[] = ['APPROVAL_SECRET_ARN', 'APPROVAL_SIGNING_SECRET'];
const CURSOR_SECRET: readonly EnvName[] = ['CURSOR_SECRET_ARN', 'CURSOR_SIGNING_SECRET'];
/** The deployment's GitHub App (absent: no GitHub), and its keys' secret. */
const GITHUB_SECRET: readonly EnvName[] = ['GITHUB_APP_SECRET_ARN', 'GITHUB_APP_SECRET'];
const GITHUB: readonly EnvName[] = ['GITHUB_APP_ID', 'GITHUB_API_URL', 'GITHUB_WEB_URL', ...GITHUB_SECRET];
const LIST_INDEXES: IndexName[] = [
  'byAccount',
  'byAccountStatus',
  'byProject',
  'byProjectStatus',
  'byAccountPod',
  'byAccountSource',
];

export const FUNCTIONS: Record<FunctionName, FunctionDefinition> = {
  api: {
    entry: 'api',
    timeoutSeconds: 10,
    memoryMiB: 512,
    description: 'HTTP API v1: runs, pods, projects, account',
    environment: [
      'TABLE_NAME',
      'QUEUE_URL',
      'CLUSTER_ARN',
      'LOG_GROUP_NAME',
      'STEP_LOG_GROUP_NAME',
      // PUT /v1/pods registers the task definition of a pod with its own image or secrets
      'POD_TASK_DEFINITION_ARN',
      'POD_TASK_FAMILY_PREFIX',
      // a Claude Code pod may name only a model the pods' task role may invoke
      'POD_MODELS',
      // POST /v1/stream/tickets hands out the WebSocket API's URL with the ticket
      'WEBSOCKET_URL',
      ...CLAIMS,
      ...CURSOR_SECRET,
      // PUT /v1/account/github reads the installation it links; a run stopped while queued tells its issue
      'PUBLIC_API_URL',
      ...GITHUB,
    ],
    table: {
      actions: ['GetItem', 'BatchGetItem', 'Query', 'PutItem', 'UpdateItem'],
      indexes: LIST_INDEXES,
    },
  },
  agentApi: {
    entry: 'agent-api',
    timeoutSeconds: 10,
    memoryMiB: 512,
    description: 'Agent API: pod events, control and git credentials',
    environment: [
      'TABLE_NAME',
      'POD_HEARTBEAT_SECONDS',
      'CONTROL_POLL_MS',
      'STEP_LOG_GROUP_NAME',
      ...PRICING,
      // the pods' git credentials are the GitHub App's installation tokens
      ...GITHUB,
    ],
    table: { actions: ['GetItem', 'Query', 'PutItem', 'UpdateItem', 'BatchWriteItem'], indexes: [] },
  },
  startRun: {
    entry: 'start-run',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'SQS runs queue -> an active-run slot -> StartExecution',
    // QUEUE_URL: a run that ended while it waited for a slot passes the wake on
    environment: ['TABLE_NAME', 'QUEUE_URL', 'STATE_MACHINE_ARN', 'CLUSTER_ARN', ...PRICING],
    table: { actions: SETTLE, indexes: [] },
  },
  deadLetter: {
    entry: 'dead-letter',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: "DLQ -> DEAD_LETTER, and tells the run's GitHub issue",
    environment: ['TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB],
    table: { actions: READ_WRITE_RUN, indexes: [] },
  },
  checks: {
    entry: 'checks',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'Pre-flight checks and launch parameters',
    environment: [
      'TABLE_NAME',
      'AGENT_API_URL',
      'POD_HEARTBEAT_SECONDS',
      'POD_TASK_DEFINITION_ARN',
      // the account's caps count what its active runs have accrued
      ...PRICING,
      // the run's repositories must be covered by its account's installation
      ...GITHUB,
    ],
    table: { actions: ['GetItem', 'Query', 'UpdateItem'], indexes: [] },
  },
  markRetrying: {
    entry: 'mark-retrying',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Launch failed: RETRYING or give up',
    environment: ['TABLE_NAME', 'LAUNCH_BACKOFF_SECONDS'],
    table: { actions: READ_WRITE_RUN, indexes: [] },
  },
  parkPod: {
    entry: 'park-pod',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Parks the pod-wait task token',
    environment: ['TABLE_NAME'],
    // and puts which run the pod's log stream belongs to
    table: { actions: [...READ_WRITE_RUN, 'PutItem'], indexes: [] },
  },
  finalize: {
    entry: 'finalize',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: "Stops the sandbox, writes the terminal status, tells the run's GitHub issue",
    // QUEUE_URL: the slot the run gives back wakes the run waiting longest for one
    environment: ['TABLE_NAME', 'QUEUE_URL', 'CLUSTER_ARN', ...PRICING, 'PUBLIC_API_URL', ...GITHUB],
    table: { actions: SETTLE, indexes: [] },
  },
  podStopped: {
    entry: 'pod-stopped',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'ECS task STOPPED -> run facts',
    environment: ['TABLE_NAME'],
    table: { actions: READ_WRITE_RUN, indexes: [] },
  },
  reconcile: {
    entry: 'reconcile',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: "Execution ended abnormally -> run terminal, and tells the run's GitHub issue",
    environment: ['TABLE_NAME', 'QUEUE_URL', 'CLUSTER_ARN', ...PRICING, 'PUBLIC_API_URL', ...GITHUB],
    table: { actions: SETTLE, indexes: [] },
  },
  sweeper: {
    entry: 'sweeper',
    timeoutSeconds: 60,
    memoryMiB: 256,
    description:
      'Re-enqueues QUEUED runs whose message was lost; dead-letters those that never start; ends paused runs over their limits; measures the oldest run not ended',
    environment: ['TABLE_NAME', 'QUEUE_URL', 'SWEEPER_STALE_AFTER_SECONDS', ...PRICING],
    table: {
      actions: ['GetItem', 'BatchGetItem', 'Query', 'UpdateItem'],
      indexes: ['queued', 'awaitingApproval', 'active'],
    },
  },
  requestApproval: {
    entry: 'request-approval',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'Checkpoint reached: stores the approval, mails the project admins',
    environment: ['TABLE_NAME', 'PUBLIC_API_URL', 'APPROVAL_SENDER', ...APPROVAL_SECRET],
    table: { actions: ['GetItem', 'PutItem', 'UpdateItem'], indexes: [] },
  },
  approvals: {
    entry: 'approvals',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Approval link page and decisions (link and API)',
    environment: ['TABLE_NAME', ...CLAIMS, ...APPROVAL_SECRET],
    table: { actions: READ_WRITE_RUN, indexes: [] },
  },
  raisePullRequest: {
    entry: 'raise-pull-request',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'Pod completed: opens the pull request of each branch it pushed',
    environment: ['TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB],
    table: { actions: READ_WRITE_RUN, indexes: [] },
  },
  githubWebhooks: {
    entry: 'github-webhooks',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description:
      "GitHub's webhooks: a run's pull request closed or merged; an issue's comment or label starting a run",
    environment: ['TABLE_NAME', 'QUEUE_URL', 'PUBLIC_API_URL', ...GITHUB],
    // a dispatch reads the project and pod and puts the run, its snapshot and its idempotency key; the
    // installation's account, its pods and projects (Query) are read; a refusal's delivery is put once
    table: { actions: ['GetItem', 'Query', 'PutItem', 'UpdateItem'], indexes: [] },
  },
  // apart from `api`, so that only this function carries the Scheduler client and may change schedules
  schedules: {
    entry: 'schedules',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: "HTTP API v1: a project's schedules, kept on EventBridge Scheduler",
    environment: [
      'TABLE_NAME',
      // each schedule's copy: its group, the function its ticks invoke, the role and the dead-letter queue
      'SCHEDULE_GROUP_NAME',
      'SCHEDULE_TARGET_ARN',
      'SCHEDULER_ROLE_ARN',
      'SCHEDULE_DEAD_LETTER_QUEUE_ARN',
      ...CLAIMS,
    ],
    // reads the project, the pod and the schedules; a save updates the record, a delete deletes it
    table: { actions: ['GetItem', 'Query', 'UpdateItem', 'DeleteItem'], indexes: [] },
  },
  pullRequestSweep: {
    entry: 'pull-request-sweep',
    timeoutSeconds: 300,
    memoryMiB: 256,
    description: "Daily: reads the state of runs' open pull requests whose webhook never came",
    environment: ['TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB],
    table: { actions: ['GetItem', 'BatchGetItem', 'Query', 'UpdateItem'], indexes: ['openPullRequests'] },
  },
  scheduledDispatch: {
    entry: 'scheduled-dispatch',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'EventBridge Scheduler tick -> dispatch (source cron), or a recorded skip',
    environment: ['TABLE_NAME', 'QUEUE_URL'],
    // reads the schedule, its last run, the project and the pod; a dispatch puts the run, its snapshot
    // and its idempotency key; the tick's outcome updates the schedule
    table: { actions: ['GetItem', 'PutItem', 'UpdateItem'], indexes: [] },
  },
  stream: {
    entry: 'stream',
    timeoutSeconds: 29,
    memoryMiB: 256,
    description:
      'WebSocket API: $connect redeems a ticket; follow a run (its feed, then live), its log, the runs, ping',
    // a follow of a run's log reads the pods' log group with the logs API's cursors
    environment: ['TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', 'LOG_GROUP_NAME', ...CURSOR_SECRET],
    // a ticket is spent (UpdateItem) and the connection put; a follow reads the run and its feed (Query)
    // and moves its cursor; a connection that left is deleted
    table: { actions: ['GetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem'], indexes: [] },
  },
  runFeed: {
    entry: 'run-feed',
    timeoutSeconds: 60,
    memoryMiB: 512,
    description:
      "The table's stream of run writes -> the runs' feeds, sent to their followers; the run metrics",
    // the price table's models are the run metrics' model dimension
    environment: ['TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', ...PRICING],
    // the feed's head and packs are put in a transaction; followers are read (Query) and their cursors
    // moved; a follow or connection that left is deleted
    table: { actions: ['GetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem'], indexes: [] },
  },
  runLogs: {
    entry: 'run-logs',
    timeoutSeconds: 60,
    memoryMiB: 512,
    description:
      "The pods' log group's subscription -> the new lines, sent to the followers of each run's log",
    environment: ['TABLE_NAME', 'WEBSOCKET_CALLBACK_URL', 'LOG_GROUP_NAME', ...CURSOR_SECRET],
    // the stream's run and the run are read, its log's followers read (Query) and their cursors moved; a
    // connection that left is deleted
    table: { actions: ['GetItem', 'Query', 'UpdateItem', 'DeleteItem'], indexes: [] },
  },
};

/**
 * A function's environment in one deployment: each variable it declares that the deployment gives a
 * value, and nothing else.
 */
export const environmentFor = (
  definition: FunctionDefinition,
  values: Partial<Record<EnvName, string>>,
): Record<string, string> => {
  const environment: Record<string, string> = {};
  for (const name of definition.environment) {
    const value = values[name];
    if (value !== undefined) environment[name] = value;
  }
  return environment;
};

export type RouteAuth = 'jwt' | 'agent' | 'none';

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';
  path: string;
  fn: FunctionName;
  auth: RouteAuth;
}

const v1 = (method: RouteDefinition['method'], path: string, fn: FunctionName = 'api'): RouteDefinition => ({
  method,
  path,
  fn,
  auth: 'jwt',
});

export const ROUTES: RouteDefinition[] = [
  v1('POST', '/v1/projects/{projectId}/runs'),
  v1('GET', '/v1/projects/{projectId}/runs'),
  v1('GET', '/v1/runs'),
  v1('GET', '/v1/runs/{runId}'),
  v1('GET', '/v1/runs/{runId}/config'),
  v1('GET', '/v1/runs/{runId}/steps'),
  v1('GET', '/v1/runs/{runId}/steps/{seq}/content'),
  v1('GET', '/v1/runs/{runId}/logs'),
  v1('POST', '/v1/runs/{runId}/stop'),
  v1('POST', '/v1/runs/{runId}/done'),
  v1('POST', '/v1/runs/{runId}/replay'),
  v1('POST', '/v1/runs/{runId}/redrive'),
  v1('GET', '/v1/pods'),
  v1('GET', '/v1/pods/{podId}'),
  v1('PUT', '/v1/pods/{podId}'),
  v1('GET', '/v1/projects'),
  v1('GET', '/v1/projects/{projectId}'),
  v1('PUT', '/v1/projects/{projectId}'),
  v1('GET', '/v1/projects/{projectId}/schedules', 'schedules'),
  v1('GET', '/v1/projects/{projectId}/schedules/{scheduleId}', 'schedules'),
  v1('PUT', '/v1/projects/{projectId}/schedules/{scheduleId}', 'schedules'),
  v1('DELETE', '/v1/projects/{projectId}/schedules/{scheduleId}', 'schedules'),
  v1('GET', '/v1/account'),
  v1('PUT', '/v1/account/limits'),
  v1('GET', '/v1/account/spend'),
  v1('PUT', '/v1/account/github'),
  v1('POST', '/v1/stream/tickets'),
  // The launched pod's one-time code for its run-scoped token (the handler checks the code).
  { method: 'POST', path: '/agent/v1/runs/{runId}/token', fn: 'agentApi', auth: 'agent' },
  { method: 'GET', path: '/agent/v1/runs/{runId}', fn: 'agentApi', auth: 'agent' },
  { method: 'POST', path: '/agent/v1/runs/{runId}/events', fn: 'agentApi', auth: 'agent' },
  { method: 'GET', path: '/agent/v1/runs/{runId}/control', fn: 'agentApi', auth: 'agent' },
  { method: 'POST', path: '/agent/v1/runs/{runId}/git-credentials', fn: 'agentApi', auth: 'agent' },
  // Supervised runs: the email link (signed; GET only shows) and the same decision for API callers.
  { method: 'GET', path: '/approve/{approvalId}', fn: 'approvals', auth: 'none' },
  { method: 'POST', path: '/approve/{approvalId}', fn: 'approvals', auth: 'none' },
  { method: 'GET', path: '/v1/runs/{runId}/checkpoint', fn: 'approvals', auth: 'jwt' },
  { method: 'POST', path: '/v1/runs/{runId}/approve', fn: 'approvals', auth: 'jwt' },
  { method: 'POST', path: '/v1/runs/{runId}/cancel', fn: 'approvals', auth: 'jwt' },
  // GitHub's deliveries: the handler verifies X-Hub-Signature-256 before reading anything
  { method: 'POST', path: '/webhooks/github', fn: 'githubWebhooks', auth: 'none' },
];

/** API Gateway's throttle of a route: requests a second, and the burst its bucket holds. */
export interface RouteThrottle {
  rateLimit: number;
  burstLimit: number;
}

/** A pod sends at most one event batch every 250 ms (its reporter's flush interval). */
const POD_REQUESTS_PER_SECOND = 4;
/** The pods each Agent API route carries at full speed, across every account. */
export const AGENT_API_PODS = 250;

/**
 * API Gateway throttles each route with a bucket of its own, so no family of routes can use up
 * another's: a flood of the public API leaves the pods' routes alone. The public routes' bucket is the
 * outer bound over every account; inside it each account has its own limit (shared/domain/throttle.ts).
 * The Agent API's are sized for pods. Email links and GitHub's deliveries need little. The region's
 * account-level limit (10,000 a second by default) still bounds them all together.
 */
export const ROUTE_THROTTLES: Record<RouteAuth, RouteThrottle> = {
  jwt: { rateLimit: 500, burstLimit: 1000 },
  agent: {
    rateLimit: AGENT_API_PODS * POD_REQUESTS_PER_SECOND,
    burstLimit: 2 * AGENT_API_PODS * POD_REQUESTS_PER_SECOND,
  },
  none: { rateLimit: 50, burstLimit: 100 },
};

/** The throttle of the stage's routes unless a route has its own (the WebSocket API's too). */
export const DEFAULT_ROUTE_THROTTLE = ROUTE_THROTTLES.jwt;

/** The WebSocket API: its routes (all to one function) and how a message picks its route. */
export const WEBSOCKET = {
  fn: 'stream' as FunctionName,
  routes: ['$connect', '$disconnect', '$default'],
  routeSelectionExpression: '$request.body.action',
  stageName: 'live',
} as const;

/**
 * The table's stream into runFeed: only the run item and step packs are changes of a run (the feed's
 * own items, written by runFeed, must not come back to it). Records of a shard come in order, one
 * batch at a time; the failed record and those after it come again, then go to the dead-letter queue.
 */
export const RUN_FEED_SOURCE = {
  fn: 'runFeed' as FunctionName,
  batchSize: 100,
  maximumBatchingWindowSeconds: 0,
  maximumRetryAttempts: 10,
  startingPosition: 'TRIM_HORIZON',
  filters: [{ dynamodb: { Keys: { sk: { S: ['RUN', { prefix: 'STEPS#' }] } } } }],
} as const;

/**
 * The pods' log group's subscription filter: every line, to runLogs, which sends each run's new lines
 * to the followers of its log. The lines themselves are read back with the logs API; a delivery only
 * says which stream has new ones, and up to when.
 */
export const RUN_LOGS_SOURCE = {
  fn: 'runLogs' as FunctionName,
  filterName: 'run-logs',
  filterPattern: '',
} as const;

/** EventBridge rules: the same patterns deploy in CDK and are matched by the local bus. */
export const EVENT_RULES = [
  {
    name: 'podTaskStopped',
    fn: 'podStopped' as FunctionName,
    pattern: {
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: { lastStatus: ['STOPPED'] },
    },
  },
  {
    name: 'executionEndedAbnormally',
    fn: 'reconcile' as FunctionName,
    pattern: {
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { status: ['FAILED', 'TIMED_OUT', 'ABORTED'] },
    },
  },
] as const;

/**
 * Container name in the task definitions (the stack's and the pods' own); the state machine overrides
 * its environment.
 */
export const POD_CONTAINER_NAME = 'pod';

/** Names of the `${...}` substitutions in statemachine/run.asl.json. */
export const ASL_SUBSTITUTIONS = [
  'ChecksFunctionArn',
  'MarkRetryingFunctionArn',
  'ParkPodFunctionArn',
  'FinalizeFunctionArn',
  'RequestApprovalFunctionArn',
  'RaisePullRequestFunctionArn',
  'ClusterArn',
  'SubnetIds',
  'SecurityGroupId',
  'AssignPublicIp',
] as const;
export type AslSubstitution = (typeof ASL_SUBSTITUTIONS)[number];
