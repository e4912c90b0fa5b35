/**
 * The one description of the deployed resources that both the CDK stacks and the local cloud read:
 * the table and its indexes, the queues, the functions and their triggers, the HTTP routes, the
 * EventBridge rules and the schedule. Nothing here imports aws-cdk-lib, so the local cloud can use it
 * without CDK.
 */

export const TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  timeToLiveAttribute: 'expiresAt',
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
  | 'approvals';

export interface FunctionDefinition {
  /** file under functions/, without extension */
  entry: string;
  timeoutSeconds: number;
  memoryMiB: number;
  description: string;
}

export const FUNCTIONS: Record<FunctionName, FunctionDefinition> = {
  api: {
    entry: 'api',
    timeoutSeconds: 10,
    memoryMiB: 512,
    description: 'HTTP API v1: runs, pods, projects, account',
  },
  agentApi: {
    entry: 'agent-api',
    timeoutSeconds: 10,
    memoryMiB: 512,
    description: 'Agent API: pod events and control',
  },
  startRun: {
    entry: 'start-run',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'SQS runs queue -> StartExecution',
  },
  deadLetter: { entry: 'dead-letter', timeoutSeconds: 30, memoryMiB: 256, description: 'DLQ -> DEAD_LETTER' },
  checks: {
    entry: 'checks',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'Pre-flight checks and launch parameters',
  },
  markRetrying: {
    entry: 'mark-retrying',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Launch failed: RETRYING or give up',
  },
  parkPod: {
    entry: 'park-pod',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Parks the pod-wait task token',
  },
  finalize: {
    entry: 'finalize',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'Stops the sandbox, writes the terminal status',
  },
  podStopped: {
    entry: 'pod-stopped',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'ECS task STOPPED -> run facts',
  },
  reconcile: {
    entry: 'reconcile',
    timeoutSeconds: 15,
    memoryMiB: 256,
    description: 'Execution ended abnormally -> run terminal',
  },
  sweeper: {
    entry: 'sweeper',
    timeoutSeconds: 60,
    memoryMiB: 256,
    description: 'Re-enqueues QUEUED runs whose message was lost',
  },
  requestApproval: {
    entry: 'request-approval',
    timeoutSeconds: 30,
    memoryMiB: 256,
    description: 'Checkpoint reached: stores the approval, mails the project admins',
  },
  approvals: {
    entry: 'approvals',
    timeoutSeconds: 10,
    memoryMiB: 256,
    description: 'Approval link page and decisions (link and API)',
  },
};

export type RouteAuth = 'jwt' | 'agent' | 'none';

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'PUT' | 'HEAD';
  path: string;
  fn: FunctionName;
  auth: RouteAuth;
}

const v1 = (method: RouteDefinition['method'], path: string): RouteDefinition => ({
  method,
  path,
  fn: 'api',
  auth: 'jwt',
});

export const ROUTES: RouteDefinition[] = [
  v1('POST', '/v1/projects/{projectId}/runs'),
  v1('GET', '/v1/projects/{projectId}/runs'),
  v1('GET', '/v1/runs'),
  v1('GET', '/v1/runs/{runId}'),
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
  v1('GET', '/v1/account'),
  v1('PUT', '/v1/account/limits'),
  v1('GET', '/v1/account/spend'),
  { method: 'GET', path: '/agent/v1/runs/{runId}', fn: 'agentApi', auth: 'agent' },
  { method: 'POST', path: '/agent/v1/runs/{runId}/events', fn: 'agentApi', auth: 'agent' },
  { method: 'GET', path: '/agent/v1/runs/{runId}/control', fn: 'agentApi', auth: 'agent' },
  // Supervised runs: the email link (signed; GET only shows) and the same decision for API callers.
  { method: 'GET', path: '/approve/{approvalId}', fn: 'approvals', auth: 'none' },
  { method: 'POST', path: '/approve/{approvalId}', fn: 'approvals', auth: 'none' },
  { method: 'POST', path: '/v1/runs/{runId}/approve', fn: 'approvals', auth: 'jwt' },
  { method: 'POST', path: '/v1/runs/{runId}/cancel', fn: 'approvals', auth: 'jwt' },
];

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

export const SWEEPER = {
  rateMinutes: 5,
  /** a QUEUED run older than this without an execution is re-enqueued */
  staleAfterSeconds: 120,
} as const;

/** Container name in the task definition; the state machine overrides its environment. */
export const POD_CONTAINER_NAME = 'pod';

export const LAUNCH = {
  maxAttempts: 3,
  backoffSeconds: [5, 20],
  heartbeatSeconds: 60,
  /**
   * How often a pod paused for approval asks whether to go on: a person's decision reaches it within
   * this long, and each hour paused costs 3,600,000 / this many Agent API requests.
   */
  controlPollMs: 10_000,
} as const;

/** Names of the `${...}` substitutions in statemachine/run.asl.json. */
export const ASL_SUBSTITUTIONS = [
  'ChecksFunctionArn',
  'MarkRetryingFunctionArn',
  'ParkPodFunctionArn',
  'FinalizeFunctionArn',
  'RequestApprovalFunctionArn',
  'ClusterArn',
  'TaskDefinitionArn',
  'SubnetIds',
  'SecurityGroupId',
  'AssignPublicIp',
] as const;
export type AslSubstitution = (typeof ASL_SUBSTITUTIONS)[number];
