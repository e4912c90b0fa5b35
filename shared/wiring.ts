import { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SchedulerClient } from '@aws-sdk/client-scheduler';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ApiGatewayConnections } from './adapters/apigw-connections.js';
import { CloudWatchLogReader, CloudWatchStepContentStore } from './adapters/cloudwatch-logs.js';
import { DynamoActiveRuns } from './adapters/dynamo-active-runs.js';
import { DynamoApprovalStore } from './adapters/dynamo-approvals.js';
import { DynamoDirectory } from './adapters/dynamo-directory.js';
import { DynamoFeedStore } from './adapters/dynamo-feed.js';
import { DynamoRequestCounter } from './adapters/dynamo-request-counter.js';
import { DynamoRunList } from './adapters/dynamo-run-list.js';
import { DynamoRunStore } from './adapters/dynamo-run-store.js';
import { DynamoScheduleStore } from './adapters/dynamo-schedules.js';
import { DynamoSpendLedger } from './adapters/dynamo-spend-ledger.js';
import { DynamoStreamConnections } from './adapters/dynamo-stream-connections.js';
import { DynamoTimeline } from './adapters/dynamo-timeline.js';
import { DynamoWebhookDeliveries } from './adapters/dynamo-webhook-deliveries.js';
import { EcsSandbox } from './adapters/ecs-sandbox.js';
import { EcsPodTaskDefinitions, type PodTaskDefinitionSettings } from './adapters/ecs-task-definitions.js';
import { EmfRunMetrics } from './adapters/emf-run-metrics.js';
import { EventBridgeScheduler, type SchedulerTargetSettings } from './adapters/eventbridge-scheduler.js';
import { gitHubAppKeys, OctokitGitHubApp } from './adapters/github-app.js';
import { StepFunctionsOrchestrator, StepFunctionsTaskSignals } from './adapters/sfn-orchestrator.js';
import { signingSecret } from './adapters/signing-secret.js';
import { SqsRunQueue } from './adapters/sqs-run-queue.js';
import { createMetrics, tracer, warnIssueUntold } from './observability.js';
import { type TellEnded, tellEnded } from './usecases/github-issues.js';

/**
 * Builders for the adapters a handler's composition root needs. Each handler calls only the ones it
 * uses, at module scope, so clients are created once per container. Endpoints come from the SDK's
 * own `AWS_ENDPOINT_URL_<SERVICE>` variables, which is how the local cloud points them at emulators.
 */
/** Each AWS call a subsegment of the invocation's trace (nothing where tracing is off). */
const traced = <T>(client: T): T => tracer.captureAWSv3Client(client);

let sharedDocumentClient: DynamoDBDocumentClient | undefined;
/** One DynamoDB client per container, whatever number of repositories it serves: one connection pool. */
const documentClient = () =>
  (sharedDocumentClient ??= DynamoDBDocumentClient.from(traced(new DynamoDBClient({})), {
    marshallOptions: { removeUndefinedValues: true },
  }));

export const runStore = (tableName: string) => new DynamoRunStore(documentClient(), tableName);
export const runList = (tableName: string) => new DynamoRunList(documentClient(), tableName);
export const timeline = (tableName: string) => new DynamoTimeline(documentClient(), tableName);
export const spendLedger = (tableName: string) => new DynamoSpendLedger(documentClient(), tableName);
export const activeRuns = (tableName: string) => new DynamoActiveRuns(documentClient(), tableName);
export const directoryRepository = (tableName: string) => new DynamoDirectory(documentClient(), tableName);
export const approvalStore = (tableName: string) => new DynamoApprovalStore(documentClient(), tableName);
export const scheduleStore = (tableName: string) => new DynamoScheduleStore(documentClient(), tableName);
export const feedStore = (tableName: string) => new DynamoFeedStore(documentClient(), tableName);
export const requestCounter = (tableName: string) => new DynamoRequestCounter(documentClient(), tableName);
export const streamConnections = (tableName: string) =>
  new DynamoStreamConnections(documentClient(), tableName);
export const connectionSender = (callbackUrl: string) =>
  new ApiGatewayConnections(traced(new ApiGatewayManagementApiClient({ endpoint: callbackUrl })));
export const webhookDeliveries = (tableName: string) =>
  new DynamoWebhookDeliveries(documentClient(), tableName);
/** Saves answer within the API's timeout: throttled calls are retried a few times, then a 503. */
export const scheduler = (settings: SchedulerTargetSettings) =>
  new EventBridgeScheduler(traced(new SchedulerClient({ retryMode: 'adaptive', maxAttempts: 4 })), settings);
/** The run metrics, as EMF lines in the function's log. */
export const runMetrics = () => new EmfRunMetrics(createMetrics());
export const runQueue = (queueUrl: string) => new SqsRunQueue(traced(new SQSClient({})), queueUrl);
/** Throttled Step Functions calls are retried adaptively rather than failing the batch. */
const sfnClient = () => traced(new SFNClient({ retryMode: 'adaptive', maxAttempts: 6 }));
export const orchestrator = (stateMachineArn: string) =>
  new StepFunctionsOrchestrator(sfnClient(), stateMachineArn);
export const taskSignals = () => new StepFunctionsTaskSignals(sfnClient());
let sharedEcsClient: ECSClient | undefined;
/** One ECS client per container: the sandbox and the pods' task definitions share its connections. */
const ecsClient = () => (sharedEcsClient ??= traced(new ECSClient({ maxAttempts: 5 })));
export const sandbox = (clusterArn: string) => new EcsSandbox(ecsClient(), clusterArn);
export const podTaskDefinitions = (settings: PodTaskDefinitionSettings) =>
  new EcsPodTaskDefinitions(ecsClient(), settings);
export const logsClient = () => traced(new CloudWatchLogsClient({ retryMode: 'adaptive', maxAttempts: 6 }));
/**
 * Throttled reads and writes back off and retry (the client's adaptive mode) before they answer 503.
 * Reads serve API requests, which must answer within the function's timeout: fewer attempts.
 */
export const logReader = (logGroupName: string) =>
  new CloudWatchLogReader(
    traced(new CloudWatchLogsClient({ retryMode: 'adaptive', maxAttempts: 4 })),
    logGroupName,
  );
export const stepContentStore = (logGroupName: string) =>
  new CloudWatchStepContentStore(logsClient(), logGroupName);
/** What gitHubApp reads: `readEnv(..., ...GITHUB_APP_VARIABLES)`. */
export const GITHUB_APP_VARIABLES = ['GITHUB_APP_ID', 'GITHUB_API_URL', 'GITHUB_WEB_URL'] as const;

export interface GitHubAppEnv {
  GITHUB_APP_ID?: number;
  GITHUB_API_URL?: string;
  GITHUB_WEB_URL?: string;
}

let sharedGitHubApp: OctokitGitHubApp | undefined;
/** The deployment's GitHub App when it has one (its keys read when first needed); else undefined. */
export const gitHubApp = (env: GitHubAppEnv): OctokitGitHubApp | undefined => {
  const { GITHUB_APP_ID: appId, GITHUB_API_URL: apiUrl, GITHUB_WEB_URL: webUrl } = env;
  if (appId === undefined || !apiUrl || !webUrl) return undefined;
  sharedGitHubApp ??= new OctokitGitHubApp({ appId, apiUrl, webUrl }, gitHubAppKeys(signingSecret('github')));
  return sharedGitHubApp;
};

/**
 * How the handlers that end runs outside their finalization (a stop while queued, the dead-letter
 * queue, a lost execution) tell the run's GitHub issue; what fails is logged, the run has ended.
 */
export const issueTeller = (env: GitHubAppEnv & { TABLE_NAME: string; PUBLIC_API_URL: string }): TellEnded =>
  tellEnded(
    {
      runs: runStore(env.TABLE_NAME),
      directory: directoryRepository(env.TABLE_NAME),
      github: gitHubApp(env),
    },
    { publicApiUrl: env.PUBLIC_API_URL },
    warnIssueUntold,
  );
