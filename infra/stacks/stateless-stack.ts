import { fileURLToPath } from 'node:url';
import {
  ArnFormat,
  CfnOutput,
  CfnParameter,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  type StackProps,
  Validations,
} from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration, WebSocketLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq, SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import { LambdaDestination } from 'aws-cdk-lib/aws-logs-destinations';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { FactName } from 'aws-cdk-lib/region-info';
import type { Construct } from 'constructs';
import { SIGNING_SECRETS, type SigningPurpose } from '../../shared/adapters/signing-secret.js';
import { DEFAULT_CLAIMS, type EnvName } from '../../shared/config.js';
import { LAUNCH, LONGEST_RUN_SECONDS, SWEEPER } from '../../shared/domain/policy.js';
import { type CpuArchitecture, loadPriceTable } from '../../shared/domain/pricing.js';
import {
  ASL_SUBSTITUTIONS,
  type AslSubstitution,
  DEAD_LETTER_QUEUE,
  DEFAULT_ROUTE_THROTTLE,
  EVENT_RULES,
  environmentFor,
  FUNCTIONS,
  type FunctionName,
  POD_CONTAINER_NAME,
  QUEUE,
  ROUTE_THROTTLES,
  ROUTES,
  type RouteAuth,
  RUN_FEED_SOURCE,
  RUN_LOGS_SOURCE,
  SCHEDULER,
  WEBSOCKET,
} from '../../shared/manifest.js';
import { POD_SECRETS_PREFIX } from '../../shared/schemas/pod.js';
import { ConsoleHosting } from '../constructs/console-hosting.js';
import { ConsoleUserPool } from '../constructs/console-user-pool.js';
import { ENDING_STATUSES, RunDashboard, runMetric } from '../constructs/run-dashboard.js';
import { RunFunction } from '../constructs/run-function.js';
import { RunStoryQuery } from '../constructs/run-story.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const aslFile = fileURLToPath(new URL('../../statemachine/run.asl.json', import.meta.url));

/**
 * Left out of the pod image's build context (the repository root). The image needs only the package
 * files, tsconfig, shared/ and pod/; leaving the handlers and infrastructure out also keeps a change
 * to them from rebuilding the image and revising the task definition.
 */
export const POD_IMAGE_EXCLUDES = [
  'node_modules',
  'cdk.out',
  '.git',
  '.local',
  '.ci',
  'test',
  'bench',
  'docs',
  'dist',
  'functions',
  'infra',
  'statemachine',
  'cdk.json',
  '*.md',
  '*.log',
];

/** How often the open pull requests are read from GitHub, for the webhooks that never came. */
const PULL_REQUEST_SWEEP_DAYS = 1;

/** The pods' CPU architecture: the task definition runs on it and Fargate time is priced for it. */
const POD_CPU_ARCHITECTURE: CpuArchitecture = 'ARM64';

/**
 * The price table from the CDK context `priceTable` (a JSON object, or its text with -c), checked at
 * synth so a bad table never deploys; without it the functions use the built-in table.
 */
const priceTableEnvironment = (context: unknown): Record<string, string> => {
  if (context === undefined || context === '') return {};
  const json = typeof context === 'string' ? context : JSON.stringify(context);
  loadPriceTable(json);
  return { PRICE_TABLE: JSON.stringify(JSON.parse(json)) };
};

/** The Bedrock models pods may use unless the CDK context `podModels` names others. */
export const DEFAULT_POD_MODELS = [
  'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
  'us.anthropic.claude-haiku-4-5-20251001-v1:0',
];

/** A Bedrock model id (`anthropic.claude-…-v1:0`), or a cross-region inference profile's (`us.` before it). */
const BEDROCK_MODEL_ID = /^(?:(?<geography>[a-z]+(?:-[a-z]+)?)\.)?(?<model>[a-z]+\.[a-z0-9-]+(?::\d+)?)$/;

export interface PodModel {
  id: string;
  /** the foundation model behind it, which Bedrock checks too when a profile routes a request */
  foundationModel: string;
  /** a cross-region inference profile: its requests may be served from any region of its geography */
  crossRegion: boolean;
}

/**
 * The models from the CDK context `podModels` (a list, or comma-separated text with -c), checked at
 * synth: the task role may invoke exactly these, and the API refuses a pod naming another.
 */
export const podModelsFrom = (context: unknown): PodModel[] => {
  const ids =
    context === undefined || context === ''
      ? DEFAULT_POD_MODELS
      : typeof context === 'string'
        ? context.split(',').map((id) => id.trim())
        : Array.isArray(context) && context.every((id) => typeof id === 'string')
          ? context
          : undefined;
  if (!ids?.length) throw new Error('context "podModels" must list Bedrock model ids');
  return ids.map((id) => {
    const parts = BEDROCK_MODEL_ID.exec(id)?.groups;
    if (!parts?.model)
      throw new Error(`context "podModels": ${id} is not a Bedrock model or inference profile id`);
    return { id, foundationModel: parts.model, crossRegion: parts.geography !== undefined };
  });
};

export interface GitHubAppContext {
  appId: number;
  apiUrl: string;
  webUrl: string;
}

/**
 * The GitHub App from the CDK context: `githubAppId`, and `githubHost` for GitHub Enterprise Server
 * (default github.com, whose REST API is api.github.com).
 */
export const gitHubAppFrom = (appId: unknown, host: unknown): GitHubAppContext | undefined => {
  if (appId === undefined || appId === '') return undefined;
  const id = Number(appId);
  if (!Number.isInteger(id) || id <= 0)
    throw new Error(`context "githubAppId" must be the App's id: ${appId}`);
  const name = host === undefined || host === '' ? 'github.com' : String(host);
  if (!/^[a-z0-9.-]+(:\d+)?$/i.test(name))
    throw new Error(`context "githubHost" must be a host name: ${name}`);
  return {
    appId: id,
    apiUrl: name === 'github.com' ? 'https://api.github.com' : `https://${name}/api/v3`,
    webUrl: `https://${name}`,
  };
};

type StackSecrets = Record<Exclude<SigningPurpose, 'github'>, secretsmanager.Secret> & {
  github?: secretsmanager.Secret;
};

/** Why a route has no API Gateway authorizer, for the cdk-nag acknowledgements. */
const UNAUTHORIZED_ROUTE_REASONS: Record<Exclude<RouteAuth, 'jwt'>, string> = {
  agent:
    'Agent API route: the pod holds no user JWT; the Lambda verifies the run-scoped token it carries, which expires with the run.',
  none: 'Public route whose handler verifies a signature itself (signed approval link or webhook HMAC).',
};

const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

/** How long the failure rate is measured over, and how many ended runs make it mean something. */
const FAILURE_RATE_PERIOD = Duration.minutes(15);
const FAILURE_RATE_MIN_RUNS = 5;

/** A positive number from the CDK context (or its text with -c), else the default. */
const numberContext = (scope: Construct, key: string, fallback: number): number => {
  const value = scope.node.tryGetContext(key);
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0)
    throw new Error(`context "${key}" must be a positive number: ${value}`);
  return parsed;
};

const upperFirst = (name: string): string => `${name.charAt(0).toUpperCase()}${name.slice(1)}`;

/** The ASL names a function it invokes `${ChecksFunctionArn}` after the function `checks`. */
const aslFunctionArnName = (name: FunctionName): string => `${upperFirst(name)}FunctionArn`;
const isAslSubstitution = (name: string): name is AslSubstitution =>
  (ASL_SUBSTITUTIONS as readonly string[]).includes(name);

/** The functions the state machine invokes, by the `${...FunctionArn}` names in the ASL. */
const STATE_MACHINE_TARGETS = FUNCTION_NAMES.filter((name) => isAslSubstitution(aslFunctionArnName(name)));

/** The AWS-supplied fields that pin an EventBridge pattern to this stack's own resources. */
type OwnResourceFilter = Record<string, string[]>;

export interface StatelessStackProps extends StackProps {
  table: dynamodb.ITable;
  queue: sqs.IQueue;
  deadLetterQueue: sqs.IQueue;
  podLogGroup: logs.ILogGroup;
  stepContentLogGroup: logs.ILogGroup;
  alarmTopic: sns.ITopic;
  /** who signs people in; without one, the stack makes a Cognito user pool of its own */
  identityProvider?: IdentityProvider;
}

/** An OIDC issuer of the deployer's own, for the API's JWT authorizer and the console's sign-in. */
export interface IdentityProvider {
  jwtIssuer: string;
  /** the app client the ID tokens are issued to (their `aud`) */
  jwtAudience: string;
  /** the Cognito user pool's hosted UI (https://<prefix>.auth.<region>.amazoncognito.com), where the console signs in */
  cognitoDomain: string;
}

/**
 * The code and the wiring: the Lambda handlers, the HTTP API, the run state machine, the pods'
 * network, cluster and task definition, the EventBridge rules and schedule, and their alarms.
 */
export class StatelessStack extends Stack {
  public readonly functions: Record<FunctionName, RunFunction>;
  public readonly httpApi: apigwv2.HttpApi;
  /** the web console: its bucket and CloudFront distribution */
  public readonly console: ConsoleHosting;
  /** the stack's own sign-in, when no identity provider is named */
  public userPool?: ConsoleUserPool;
  public readonly apiStage: apigwv2.HttpStage;
  /** the WebSocket API runs are followed on, and its one stage */
  public readonly streamApi: apigwv2.WebSocketApi;
  public readonly streamStage: apigwv2.WebSocketStage;
  /** run changes the feed could not take after its retries */
  public readonly runFeedDeadLetterQueue: sqs.Queue;
  public readonly stateMachine: sfn.StateMachine;
  public readonly vpc: ec2.Vpc;
  public readonly podSecurityGroup: ec2.SecurityGroup;
  public readonly cluster: ecs.Cluster;
  public readonly podTaskDefinition: ecs.FargateTaskDefinition;
  public readonly podTaskRole: iam.Role;
  /** the families of the pods' own task definitions (registered by the API) begin with it */
  public readonly podTaskFamilyPrefix: string;
  public readonly eventDeliveryDeadLetterQueue: sqs.Queue;
  public readonly signingSecrets: StackSecrets;
  /** the deployment's GitHub App, from the CDK context; undefined: no GitHub */
  public readonly github: GitHubAppContext | undefined;
  public readonly podModels: PodModel[];
  /** the schedules' copies on EventBridge Scheduler, which the schedules function keeps */
  public readonly scheduleGroup: scheduler.ScheduleGroup;
  /** the role Scheduler invokes scheduled-dispatch with */
  public readonly schedulerRole: iam.Role;
  /** the ticks Scheduler could not deliver */
  public readonly scheduleDeadLetterQueue: sqs.Queue;
  /** the operations dashboard: the runs, and what carries them */
  public readonly dashboard: cloudwatch.Dashboard;
  /** every event of every execution, with its data */
  public readonly stateMachineLogGroup: logs.LogGroup;
  /** the saved Logs Insights query that tells one run's story */
  public readonly runStoryQuery: logs.QueryDefinition;

  constructor(scope: Construct, id: string, props: StatelessStackProps) {
    super(scope, id, props);

    this.vpc = this.createPodNetwork();
    this.podSecurityGroup = new ec2.SecurityGroup(this, 'PodSecurityGroup', {
      vpc: this.vpc,
      description: 'Sandbox pods: no inbound traffic; outbound to the Agent API, the model and git hosts',
      allowAllOutbound: true,
    });
    this.cluster = new ecs.Cluster(this, 'PodCluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.podModels = podModelsFrom(this.node.tryGetContext('podModels'));
    this.github = gitHubAppFrom(
      this.node.tryGetContext('githubAppId'),
      this.node.tryGetContext('githubHost'),
    );
    this.podTaskRole = this.createPodTaskRole();
    this.podTaskDefinition = this.createPodTaskDefinition(props.podLogGroup);
    this.podTaskFamilyPrefix = `${this.podTaskDefinition.family}-pod-`;

    // The console's CSP names the region's API Gateway endpoints rather than these APIs: their ids
    // would make a cycle (the API's CORS names the distribution, whose headers would name the API).
    const apiGatewayHost = `*.execute-api.${this.region}.${this.urlSuffix}`;
    // the stack's own pool's sign-in page is named before the pool exists: its client names the console
    const domainPrefix = String(
      this.node.tryGetContext('cognitoDomainPrefix') ?? `execution-runs-${this.account}`,
    );
    const signInUrl =
      props.identityProvider?.cognitoDomain ??
      `https://${domainPrefix}.auth.${this.region}.amazoncognito.com`;
    this.console = new ConsoleHosting(this, 'Console', {
      connectTo: [`https://${apiGatewayHost}`, `wss://${apiGatewayHost}`, signInUrl],
    });
    const identity = props.identityProvider ?? this.createUserPool(domainPrefix);
    this.httpApi = new apigwv2.HttpApi(this, 'HttpApi', {
      description: 'Execution runs: the v1 API and the Agent API',
      createDefaultStage: false,
      corsPreflight: {
        allowOrigins: [this.console.url],
        allowMethods: [
          apigwv2.CorsHttpMethod.GET,
          apigwv2.CorsHttpMethod.POST,
          apigwv2.CorsHttpMethod.PUT,
          apigwv2.CorsHttpMethod.DELETE,
        ],
        allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
        maxAge: Duration.minutes(10),
      },
    });
    this.apiStage = this.createApiStage();
    ({ api: this.streamApi, stage: this.streamStage } = this.createStreamApi());

    this.functions = this.createFunctions(props);
    this.addRoutes(identity);
    this.runFeedDeadLetterQueue = this.connectStream(props);
    ({ stateMachine: this.stateMachine, logGroup: this.stateMachineLogGroup } = this.createStateMachine());
    this.grantFunctions(props);
    this.grantPodTaskDefinitions();
    this.signingSecrets = this.createSigningSecrets();
    this.wireApprovals();
    this.connectEventSources(props);
    this.eventDeliveryDeadLetterQueue = this.createEventRules();
    ({
      group: this.scheduleGroup,
      role: this.schedulerRole,
      deadLetterQueue: this.scheduleDeadLetterQueue,
    } = this.createSchedules());
    this.createAlarms(props.alarmTopic);
    this.console.deploy({
      apiUrl: this.httpApi.apiEndpoint,
      auth: {
        kind: 'cognito',
        domain: identity.cognitoDomain,
        // the ID token is the API's bearer token: its audience is the app client
        clientId: identity.jwtAudience,
        scopes: ['openid', 'email', 'profile'],
      },
    });
    this.dashboard = new RunDashboard(this, 'Operations', {
      functions: this.functions,
      stateMachine: this.stateMachine,
      queue: props.queue,
      deadLetterQueue: props.deadLetterQueue,
      httpApi: this.httpApi,
      cluster: this.cluster,
    }).dashboard;
    this.runStoryQuery = new RunStoryQuery(this, 'RunStory', {
      logGroups: [
        ...FUNCTION_NAMES.map((name) => this.functions[name].logGroup),
        this.stateMachineLogGroup,
        props.podLogGroup,
      ],
    }).queryDefinition;

    new CfnOutput(this, 'ApiUrl', { value: this.apiStage.url });
    new CfnOutput(this, 'StreamUrl', { value: this.streamStage.url });
    new CfnOutput(this, 'ConsoleUrl', { value: this.console.url });
    new CfnOutput(this, 'StateMachineArn', { value: this.stateMachine.stateMachineArn });
    new CfnOutput(this, 'ClusterArn', { value: this.cluster.clusterArn });
    // its image is the one a pod's own image is built FROM
    new CfnOutput(this, 'PodTaskDefinitionArn', { value: this.podTaskDefinition.taskDefinitionArn });
  }

  /** Public subnets only: each pod gets a public IP for egress, which spares the NAT gateways. */
  private createPodNetwork(): ec2.Vpc {
    const flowLogs = new logs.LogGroup(this, 'PodVpcFlowLogs', { retention: logs.RetentionDays.ONE_MONTH });
    return new ec2.Vpc(this, 'PodVpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'Public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
      restrictDefaultSecurityGroup: false,
      flowLogs: {
        all: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
          trafficType: ec2.FlowLogTrafficType.ALL,
        },
      },
    });
  }

  /**
   * The pod runs untrusted repository code, so its role may do one thing: invoke the deployment's pod
   * models on Amazon Bedrock (Claude Code reaches the model with the task role, no API key).
   */
  private createPodTaskRole(): iam.Role {
    const role = new iam.Role(this, 'PodTaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description:
        'Sandbox pod: runs untrusted repository code, so it may only invoke the pod models on Bedrock',
    });
    const foundationModelArn = (model: PodModel) =>
      this.formatArn({
        service: 'bedrock',
        // a cross-region profile routes a request to its foundation model in any region of its geography
        region: model.crossRegion ? '*' : this.region,
        account: '',
        resource: 'foundation-model',
        resourceName: model.foundationModel,
      });
    const profiles = this.podModels.filter((model) => model.crossRegion);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'InvokePodModels',
        actions: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'],
        resources: [
          ...new Set(this.podModels.map(foundationModelArn)),
          ...profiles.map((model) =>
            this.formatArn({ service: 'bedrock', resource: 'inference-profile', resourceName: model.id }),
          ),
        ],
      }),
    );
    if (profiles.length) {
      Validations.of(role).acknowledge(
        ...[...new Set(profiles.map((model) => model.foundationModel))].map((foundationModel) => ({
          id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/${foundationModel}]`,
          reason:
            'A cross-region inference profile serves a request from its foundation model in any region of its geography, which Bedrock checks against this grant: the model is fixed, the region cannot be.',
        })),
      );
    }
    return role;
  }

  private createPodTaskDefinition(podLogGroup: logs.ILogGroup): ecs.FargateTaskDefinition {
    const executionRole = new iam.Role(this, 'PodExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'ECS agent: pulls the pod image and ships its output to the pods log group',
    });
    // ECS resolves a pod's secrets (its own task definition's `secrets`) with this role as the task starts.
    executionRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadPodSecrets',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [
          this.formatArn({
            service: 'secretsmanager',
            resource: 'secret',
            resourceName: `${POD_SECRETS_PREFIX}*`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
    );
    Validations.of(executionRole).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecr:GetAuthorizationToken has no resource-level permissions; the image pull itself is scoped to the asset repository.',
      },
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${POD_SECRETS_PREFIX}*]`,
        reason:
          'The secrets pods name are created by the operator and only known when a pod is saved: scoped to the pods prefix, under which the API accepts only the saving account’s own.',
      },
    );
    const taskDefinition = new ecs.FargateTaskDefinition(this, 'PodTask', {
      // The run's pod configuration overrides both per execution.
      cpu: 1024,
      memoryLimitMiB: 2048,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.of(POD_CPU_ARCHITECTURE),
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole: this.podTaskRole,
      executionRole,
    });
    taskDefinition.addContainer(POD_CONTAINER_NAME, {
      containerName: POD_CONTAINER_NAME,
      image: ecs.ContainerImage.fromAsset(repoRoot, {
        file: 'pod/Dockerfile',
        exclude: POD_IMAGE_EXCLUDES,
        platform: POD_CPU_ARCHITECTURE === 'ARM64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      }),
      logging: ecs.LogDrivers.awsLogs({ logGroup: podLogGroup, streamPrefix: 'pod' }),
      // Claude Code reaches the model through Bedrock in the stack's region, with the task role
      environment: { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: this.region },
    });
    Validations.of(taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The two variables say where the model is (Bedrock, the stack region): no secret; pod secrets reach the container through `secrets`.',
    });
    return taskDefinition;
  }

  private createApiStage(): apigwv2.HttpStage {
    return new apigwv2.HttpStage(this, 'ApiDefaultStage', {
      httpApi: this.httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: DEFAULT_ROUTE_THROTTLE,
      accessLogSettings: this.accessLogs('ApiAccessLogs', {
        responseLength: '$context.responseLength',
        latencyMs: '$context.responseLatency',
        authorizerError: '$context.authorizer.error',
      }),
    });
  }

  /** A stage's access log: a month of JSON lines, each request's id, time, caller, route and status, and `fields`. */
  private accessLogs(id: string, fields: Record<string, string>): apigwv2.IAccessLogSettings {
    const group = new logs.LogGroup(this, id, { retention: logs.RetentionDays.ONE_MONTH });
    return {
      destination: new apigwv2.LogGroupLogDestination(group),
      format: apigw.AccessLogFormat.custom(
        JSON.stringify({
          requestId: '$context.requestId',
          requestTime: '$context.requestTime',
          sourceIp: '$context.identity.sourceIp',
          routeKey: '$context.routeKey',
          status: '$context.status',
          integrationError: '$context.integrationErrorMessage',
          ...fields,
        }),
      ),
    };
  }

  /**
   * Each function gets its declared variables (shared/manifest.ts) and nothing else; those whose
   * values depend on resources made later (the state machine, the approval secret) are set there,
   * through RunFunction.setVariable, which refuses a variable the function does not declare.
   */
  private createFunctions(props: StatelessStackProps): Record<FunctionName, RunFunction> {
    const values: Partial<Record<EnvName, string>> = {
      TABLE_NAME: props.table.tableName,
      QUEUE_URL: props.queue.queueUrl,
      CLUSTER_ARN: this.cluster.clusterArn,
      LOG_GROUP_NAME: props.podLogGroup.logGroupName,
      STEP_LOG_GROUP_NAME: props.stepContentLogGroup.logGroupName,
      POD_TASK_DEFINITION_ARN: this.podTaskDefinition.taskDefinitionArn,
      POD_TASK_FAMILY_PREFIX: this.podTaskFamilyPrefix,
      POD_MODELS: this.podModels.map((model) => model.id).join(','),
      ...(this.github
        ? {
            GITHUB_APP_ID: String(this.github.appId),
            GITHUB_API_URL: this.github.apiUrl,
            GITHUB_WEB_URL: this.github.webUrl,
          }
        : {}),
      // checks hands the pod the Agent API's address.
      AGENT_API_URL: this.apiStage.url,
      // links to runs (pull requests, issues) and approval pages
      PUBLIC_API_URL: this.apiStage.url,
      WEBSOCKET_URL: this.streamStage.url,
      WEBSOCKET_CALLBACK_URL: this.streamStage.callbackUrl,
      LAUNCH_BACKOFF_SECONDS: LAUNCH.backoffSeconds.join(','),
      POD_HEARTBEAT_SECONDS: String(LAUNCH.heartbeatSeconds),
      CONTROL_POLL_MS: String(LAUNCH.controlPollMs),
      POD_CPU_ARCHITECTURE,
      ...priceTableEnvironment(this.node.tryGetContext('priceTable')),
    };
    const entries = FUNCTION_NAMES.map((name) => {
      const fn = new RunFunction(this, upperFirst(name), {
        definition: FUNCTIONS[name],
        environment: environmentFor(FUNCTIONS[name], values),
      });
      return [name, fn] as const;
    });
    return Object.fromEntries(entries) as Record<FunctionName, RunFunction>;
  }

  /** The stack's own sign-in: a Cognito user pool, its hosted page and the console's app client. */
  private createUserPool(domainPrefix: string): IdentityProvider {
    const pool = new ConsoleUserPool(this, 'SignIn', {
      consoleUrl: this.console.url,
      domainPrefix,
      tenantClaim: DEFAULT_CLAIMS.tenant,
      accountRoleClaim: DEFAULT_CLAIMS.accountRole,
    });
    this.userPool = pool;
    new CfnOutput(this, 'UserPoolId', {
      value: pool.userPool.userPoolId,
      description: 'Add people here (admin-create-user), each with custom:accountId and custom:accountRole',
    });
    return {
      jwtIssuer: pool.issuer,
      jwtAudience: pool.client.userPoolClientId,
      cognitoDomain: pool.domainUrl,
    };
  }

  private addRoutes(identity: IdentityProvider): void {
    const jwtAuthorizer = new HttpJwtAuthorizer('JwtAuthorizer', identity.jwtIssuer, {
      jwtAudience: [identity.jwtAudience],
    });
    const integrations = new Map<FunctionName, HttpLambdaIntegration>();
    const stage = this.apiStage.node.defaultChild as apigwv2.CfnStage;
    const routeSettings: Record<string, { ThrottlingRateLimit: number; ThrottlingBurstLimit: number }> = {};
    for (const route of ROUTES) {
      let integration = integrations.get(route.fn);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${route.fn}Integration`, this.functions[route.fn].function);
        integrations.set(route.fn, integration);
      }
      const [httpRoute] = this.httpApi.addRoutes({
        path: route.path,
        methods: [apigwv2.HttpMethod[route.method]],
        integration,
        authorizer: route.auth === 'jwt' ? jwtAuthorizer : new apigwv2.HttpNoneAuthorizer(),
      });
      if (route.auth !== 'jwt' && httpRoute) {
        const reason = UNAUTHORIZED_ROUTE_REASONS[route.auth];
        Validations.of(httpRoute).acknowledge(
          { id: 'AwsSolutions-APIG4', reason },
          { id: 'AwsSolutions-COG4', reason },
        );
      }
      const throttle = ROUTE_THROTTLES[route.auth];
      if (throttle !== DEFAULT_ROUTE_THROTTLE && httpRoute) {
        routeSettings[`${route.method} ${route.path}`] = {
          ThrottlingRateLimit: throttle.rateLimit,
          ThrottlingBurstLimit: throttle.burstLimit,
        };
        // a stage's route settings name routes that must exist first
        stage.node.addDependency(httpRoute);
      }
    }
    stage.routeSettings = routeSettings;
  }

  /** The WebSocket API and its stage, throttled and logged as the HTTP API is; its routes come with the functions. */
  private createStreamApi(): { api: apigwv2.WebSocketApi; stage: apigwv2.WebSocketStage } {
    const api = new apigwv2.WebSocketApi(this, 'StreamApi', {
      description: 'Execution runs: follow runs live (tickets from POST /v1/stream/tickets)',
      routeSelectionExpression: WEBSOCKET.routeSelectionExpression,
    });
    const stage = new apigwv2.WebSocketStage(this, 'StreamStage', {
      webSocketApi: api,
      stageName: WEBSOCKET.stageName,
      autoDeploy: true,
      throttle: DEFAULT_ROUTE_THROTTLE,
      accessLogSettings: this.accessLogs('StreamAccessLogs', {
        eventType: '$context.eventType',
        connectionId: '$context.connectionId',
      }),
    });
    return { api, stage };
  }

  /**
   * The stream function behind every WebSocket route (`$connect` checks the ticket itself: a
   * WebSocket client cannot send the JWT header), the table's stream into runFeed, whose records
   * that keep failing go to a dead-letter queue, and the pods' log group's subscription into runLogs.
   * The three post to the stage's connections.
   */
  private connectStream(props: StatelessStackProps): sqs.Queue {
    const { stream, runFeed, runLogs } = this.functions;
    const integration = new WebSocketLambdaIntegration('StreamIntegration', stream.function);
    for (const routeKey of WEBSOCKET.routes) {
      const route = this.streamApi.addRoute(routeKey, { integration });
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason:
          '$connect redeems a single-use ticket issued by the JWT-authorized POST /v1/stream/tickets (a browser WebSocket cannot send the header); later messages act only for the connection that ticket signed in',
      });
    }
    const deadLetterQueue = new sqs.Queue(this, 'RunFeedDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    runFeed.function.addEventSource(
      new DynamoEventSource(props.table, {
        startingPosition: lambda.StartingPosition[RUN_FEED_SOURCE.startingPosition],
        batchSize: RUN_FEED_SOURCE.batchSize,
        maxBatchingWindow: Duration.seconds(RUN_FEED_SOURCE.maximumBatchingWindowSeconds),
        retryAttempts: RUN_FEED_SOURCE.maximumRetryAttempts,
        reportBatchItemFailures: true,
        bisectBatchOnError: true,
        parallelizationFactor: 1,
        onFailure: new SqsDlq(deadLetterQueue),
        filters: RUN_FEED_SOURCE.filters.map((pattern) => lambda.FilterCriteria.filter(pattern)),
      }),
    );
    Validations.of(deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: "It is run-feed's on-failure destination: the dead-letter queue of the table's stream mapping.",
    });
    const connectionIds = {
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<${this.getLogicalId(this.streamApi.node.defaultChild as apigwv2.CfnApi)}>/${WEBSOCKET.stageName}/*/@connections/*]`,
      reason:
        'Connection ids are only known at run time: scoped to the @connections of this API’s one stage.',
    };
    // A delivery that fails loses no line: the lines stay in the log group, and the follower's cursor
    // stands before them, so the stream's next delivery (or a follow again) sends them.
    new logs.SubscriptionFilter(this, 'RunLogsSubscription', {
      logGroup: props.podLogGroup,
      filterName: RUN_LOGS_SOURCE.filterName,
      filterPattern: logs.FilterPattern.literal(RUN_LOGS_SOURCE.filterPattern),
      destination: new LambdaDestination(runLogs.function),
    });
    for (const fn of [stream, runLogs]) props.podLogGroup.grant(fn.role, 'logs:GetLogEvents');
    for (const fn of [stream, runFeed, runLogs]) {
      this.streamStage.grantManagementApiAccess(fn.role);
      Validations.of(fn.role).acknowledge(connectionIds);
    }
    Validations.of(runFeed.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'dynamodb:ListStreams, which the stream mapping needs, has no resource-level permissions; the stream reads themselves are scoped to the table’s stream.',
    });
    return deadLetterQueue;
  }

  /**
   * The definition comes from the ASL file, so CDK cannot derive the role's permissions: they are
   * granted here by hand, each scoped to the one resource the definition uses.
   */
  private createStateMachine(): { stateMachine: sfn.StateMachine; logGroup: logs.LogGroup } {
    const functionArns = new Map<string, string>(
      STATE_MACHINE_TARGETS.map((name) => [
        aslFunctionArnName(name),
        this.functions[name].function.functionArn,
      ]),
    );
    const infrastructure: Partial<Record<AslSubstitution, string>> = {
      ClusterArn: this.cluster.clusterArn,
      SubnetIds: this.vpc.publicSubnets.map((subnet) => subnet.subnetId).join(','),
      SecurityGroupId: this.podSecurityGroup.securityGroupId,
      AssignPublicIp: 'ENABLED',
    };
    const definitionSubstitutions = Object.fromEntries(
      ASL_SUBSTITUTIONS.map((name) => {
        const value = infrastructure[name] ?? functionArns.get(name);
        if (value === undefined) throw new Error(`no value for the state machine substitution \${${name}}`);
        return [name, value];
      }),
    );

    const logGroup = new logs.LogGroup(this, 'RunStateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${this.stackName}-runs`,
      retention: logs.RetentionDays.ONE_MONTH,
    });
    const stateMachine = new sfn.StateMachine(this, 'RunStateMachine', {
      definitionBody: sfn.DefinitionBody.fromFile(aslFile),
      definitionSubstitutions,
      stateMachineType: sfn.StateMachineType.STANDARD,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
      tracingEnabled: true,
    });

    stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'InvokeRunSteps',
        actions: ['lambda:InvokeFunction'],
        resources: [...functionArns.values()],
      }),
    );
    stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'LaunchPod',
        actions: ['ecs:RunTask'],
        // the stack's task definition, and the pods' own (their families under the prefix)
        resources: [
          this.formatArn({
            service: 'ecs',
            resource: 'task-definition',
            resourceName: `${this.podTaskDefinition.family}:*`,
          }),
          this.podTaskDefinitionsArn(),
        ],
        conditions: { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } },
      }),
    );
    const { executionRole } = this.podTaskDefinition;
    stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'PassPodRoles',
        actions: ['iam:PassRole'],
        resources: [this.podTaskRole.roleArn, ...(executionRole ? [executionRole.roleArn] : [])],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    this.acknowledgeStateMachineFindings(stateMachine);
    return { stateMachine, logGroup };
  }

  private grantFunctions(props: StatelessStackProps): void {
    const fns = this.functions;
    // Exactly the table actions and the indexes each function declares (shared/manifest.ts), which
    // the local cloud enforces too; grantReadWriteData would grant every action on `index/*`.
    for (const name of FUNCTION_NAMES) {
      const { actions, indexes } = FUNCTIONS[name].table;
      iam.Grant.addToPrincipal({
        grantee: fns[name].role,
        actions: actions.map((action) => `dynamodb:${action}`),
        resourceArns: [
          props.table.tableArn,
          ...indexes.map((index) => `${props.table.tableArn}/index/${index}`),
        ],
      });
    }
    // SendMessage alone: grantSendMessages adds GetQueueUrl and GetQueueAttributes, which no sender calls.
    // Start-run, finalize and reconcile send too: a slot given back wakes the run waiting longest for one.
    for (const fn of [
      fns.api,
      fns.sweeper,
      fns.scheduledDispatch,
      fns.githubWebhooks,
      fns.startRun,
      fns.finalize,
      fns.reconcile,
    ]) {
      props.queue.grant(fn.role, 'sqs:SendMessage');
    }
    // Only start-run starts executions; the functions the state machine invokes could not hold its ARN.
    fns.startRun.setVariable('STATE_MACHINE_ARN', this.stateMachine.stateMachineArn);
    this.stateMachine.grantStartExecution(fns.startRun.role);
    // It also reads how a run's execution stands, to end a run whose execution closed without ending it.
    fns.startRun.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['states:DescribeExecution'],
        resources: [
          this.formatArn({
            service: 'states',
            resource: 'execution',
            resourceName: `${this.stateMachine.stateMachineName}:*`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
    );
    const stateMachineId = this.getLogicalId(this.stateMachine.node.defaultChild as sfn.CfnStateMachine);
    Validations.of(fns.startRun.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${stateMachineId}.Name>:*]`,
      reason:
        'Execution names are the run ids, known only at run time: scoped to the executions of this one state machine.',
    });
    // GET /v1/runs/{runId}/logs pages through the pods' log streams.
    props.podLogGroup.grant(fns.api.role, 'logs:GetLogEvents');
    // The Agent API keeps the whole text of oversized steps; the API reads it back.
    props.stepContentLogGroup.grant(fns.agentApi.role, 'logs:CreateLogStream', 'logs:PutLogEvents');
    props.stepContentLogGroup.grant(fns.api.role, 'logs:GetLogEvents');

    // Separate policies rather than the roles' default ones: parkPod is invoked by the state machine,
    // and a grant in its default policy would make the function depend on the state machine.
    new iam.Policy(this, 'TaskResponsePolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
          resources: [this.stateMachine.stateMachineArn],
        }),
      ],
      roles: [fns.agentApi.role, fns.api.role, fns.parkPod.role, fns.podStopped.role],
    });
    // The sweeper fails the approval wait of a paused run it ends over its limits.
    new iam.Policy(this, 'PausedBudgetPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['states:SendTaskFailure'],
          resources: [this.stateMachine.stateMachineArn],
        }),
      ],
      roles: [fns.sweeper.role],
    });
    const podTasks = this.formatArn({
      service: 'ecs',
      resource: 'task',
      resourceName: `${this.cluster.clusterName}/*`,
    });
    const sandboxControl = new iam.Policy(this, 'SandboxControlPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['ecs:StopTask'],
          resources: [podTasks],
          conditions: { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } },
        }),
      ],
      // the functions that end runs: a stop, Finalize, reconcile, and start-run for an execution already over
      roles: [fns.finalize.role, fns.api.role, fns.reconcile.role, fns.startRun.role],
    });
    Validations.of(sandboxControl).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<${this.getLogicalId(this.cluster.node.defaultChild as ecs.CfnCluster)}>/*]`,
      reason: 'Task ids are only known at run time: scoped to the tasks of this one cluster.',
    });
  }

  /** Every revision of every pod's own task definition: the families under the pods' prefix. */
  private podTaskDefinitionsArn(): string {
    return this.formatArn({
      service: 'ecs',
      resource: 'task-definition',
      resourceName: `${this.podTaskFamilyPrefix}*`,
    });
  }

  /**
   * PUT /v1/pods registers a pod's own task definition (shared/adapters/ecs-task-definitions.ts): it
   * reads the stack's, registers a copy under the pods' family prefix and passes the pod's two roles,
   * and only those, to ECS tasks.
   */
  private grantPodTaskDefinitions(): void {
    const { role } = this.functions.api;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RegisterPodTaskDefinitions',
        actions: ['ecs:RegisterTaskDefinition'],
        resources: [this.podTaskDefinitionsArn()],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadStackTaskDefinition',
        actions: ['ecs:DescribeTaskDefinition'],
        // the action has no resource-level permissions: '*' is the only resource IAM accepts for it
        resources: ['*'],
      }),
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecs:DescribeTaskDefinition has no resource-level permissions; the API reads only the stack’s pod task definition with it.',
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'PassPodRoles',
        actions: ['iam:PassRole'],
        resources: [this.podTaskRole.roleArn, this.podTaskDefinition.obtainExecutionRole().roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task-definition/${this.podTaskFamilyPrefix}*]`,
      reason:
        'A pod’s task definition family is derived from its account and pod ids when it is saved: scoped to the families under the pods’ prefix.',
    });
  }

  /**
   * The signing keys (shared/adapters/signing-secret.ts), generated at deploy, one per purpose: each
   * goes to the functions that declare its variable (shared/manifest.ts) and to no other, read through
   * the Parameters and Secrets Lambda Extension (a layer; no SDK client in the bundle).
   */
  private createSigningSecrets(): StackSecrets {
    const randomKey = { passwordLength: 64, excludePunctuation: true };
    const secrets: Record<
      SigningPurpose,
      { id: string; description: string; rotation: string; generate: secretsmanager.SecretStringGenerator }
    > = {
      approval: {
        id: 'ApprovalLinkSecret',
        description: 'Signs the approval links mailed to project admins',
        rotation:
          'Rotating the link-signing key would invalidate every approval link in flight; it is a random 64-character key that never leaves Secrets Manager and the two approval functions.',
        generate: randomKey,
      },
      cursor: {
        id: 'PageCursorSecret',
        description: 'Signs the page cursors the API hands out (run lists, sandbox logs)',
        rotation:
          'Rotating the cursor key would only make the cursors clients hold start over; it is a random 64-character key that never leaves Secrets Manager and the API function.',
        generate: randomKey,
      },
      github: {
        id: 'GitHubAppSecret',
        description:
          'The GitHub App: {"privateKey": the PEM the operator puts in, "webhookSecret": generated here, to give the App}',
        rotation:
          'The private key is GitHub’s to issue and the webhook secret is shared with the App: both are rotated by the operator, in GitHub and here together.',
        // the operator adds the private key; the webhook secret is generated, to be given to the App
        generate: {
          secretStringTemplate: JSON.stringify({ privateKey: '' }),
          generateStringKey: 'webhookSecret',
          passwordLength: 40,
          excludePunctuation: true,
        },
      },
    };
    const layer = lambda.LayerVersion.fromLayerVersionArn(
      this,
      'ParamsAndSecretsLayer',
      this.regionalFact(
        FactName.paramsAndSecretsLambdaLayer(
          lambda.ParamsAndSecretsVersions.V1_0_103,
          lambda.Architecture.ARM_64.name,
        ),
      ),
    );
    // the extension once per function, however many secrets it reads (a layer listed twice is refused)
    const withLayer = new Set<FunctionName>();
    const created = (purpose: SigningPurpose): secretsmanager.Secret => {
      const { id, description, rotation, generate } = secrets[purpose];
      const secret = new secretsmanager.Secret(this, id, { description, generateSecretString: generate });
      Validations.of(secret).acknowledge({ id: 'AwsSolutions-SMG4', reason: rotation });
      const variable = SIGNING_SECRETS[purpose].arn;
      for (const name of FUNCTION_NAMES.filter((fn) => FUNCTIONS[fn].environment.includes(variable))) {
        const fn = this.functions[name];
        if (!withLayer.has(name)) fn.function.addLayers(layer);
        withLayer.add(name);
        fn.setVariable(variable, secret.secretArn);
        // GetSecretValue alone, what the extension calls (grantRead adds DescribeSecret)
        fn.role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            actions: ['secretsmanager:GetSecretValue'],
            resources: [secret.secretArn],
          }),
        );
      }
      return secret;
    };
    return {
      approval: created('approval'),
      cursor: created('cursor'),
      ...(this.github ? { github: created('github') } : {}),
    };
  }

  /**
   * Supervised runs: requestApproval mails from the verified SES identity (the `approvalSender`
   * context, or the ApprovalSender parameter at deploy) with links to this API, signed with the
   * approval secret (createSigningSecrets).
   */
  private wireApprovals(): void {
    const { requestApproval, approvals } = this.functions;
    const context = this.node.tryGetContext('approvalSender');
    const sender = new CfnParameter(this, 'ApprovalSender', {
      type: 'String',
      description: 'The verified SES identity (an address) that approval mail is sent from',
      allowedPattern: '^[^@\\s]+@[^@\\s]+$',
      ...(typeof context === 'string' && context !== '' ? { default: context } : {}),
    }).valueAsString;
    // A decision settles the approval wait; a run that ended before its approval was stored fails it.
    // Separate policies: requestApproval is invoked by the state machine (see grantFunctions).
    new iam.Policy(this, 'ApprovalDecisionPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['states:SendTaskSuccess'],
          resources: [this.stateMachine.stateMachineArn],
        }),
      ],
      roles: [approvals.role],
    });
    new iam.Policy(this, 'ApprovalRequestPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['states:SendTaskFailure'],
          resources: [this.stateMachine.stateMachineArn],
        }),
      ],
      roles: [requestApproval.role],
    });
    requestApproval.setVariable('APPROVAL_SENDER', sender);
    // SendEmail from the sender identity only, verified as the address or as its domain.
    requestApproval.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ses:SendEmail'],
        resources: [
          this.formatArn({ service: 'ses', resource: 'identity', resourceName: sender }),
          this.formatArn({
            service: 'ses',
            resource: 'identity',
            resourceName: Fn.select(1, Fn.split('@', sender)),
          }),
        ],
        conditions: { StringEquals: { 'ses:FromAddress': sender } },
      }),
    );
  }

  private connectEventSources(props: StatelessStackProps): void {
    this.functions.startRun.function.addEventSource(
      new SqsEventSource(props.queue, {
        batchSize: QUEUE.batchSize,
        maxBatchingWindow: Duration.seconds(QUEUE.maxBatchingWindowSeconds),
        reportBatchItemFailures: true,
      }),
    );
    this.functions.deadLetter.function.addEventSource(
      new SqsEventSource(props.deadLetterQueue, {
        batchSize: DEAD_LETTER_QUEUE.batchSize,
        reportBatchItemFailures: true,
      }),
    );
  }

  /** EVENT_RULES narrowed to this stack's cluster and state machine, plus the sweeper's schedule. */
  private createEventRules(): sqs.Queue {
    const deliveryDeadLetterQueue = new sqs.Queue(this, 'EventDeliveryDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    Validations.of(deliveryDeadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is itself a dead-letter queue: EventBridge puts the events it failed to deliver here.',
    });
    const targetOptions: targets.LambdaFunctionProps = {
      deadLetterQueue: deliveryDeadLetterQueue,
      retryAttempts: 8,
      maxEventAge: Duration.hours(2),
    };

    const ownResources: Record<string, OwnResourceFilter> = {
      'aws.ecs': { clusterArn: [this.cluster.clusterArn] },
      'aws.states': { stateMachineArn: [this.stateMachine.stateMachineArn] },
    };
    for (const rule of EVENT_RULES) {
      const [source] = rule.pattern.source;
      const own = ownResources[source];
      if (!own) throw new Error(`event rule ${rule.name}: no way to narrow ${source} events to this stack`);
      new events.Rule(this, `${upperFirst(rule.name)}Rule`, {
        description: `${rule.name} -> ${rule.fn}`,
        eventPattern: {
          source: [...rule.pattern.source],
          detailType: [...rule.pattern['detail-type']],
          detail: { ...rule.pattern.detail, ...own },
        },
        targets: [new targets.LambdaFunction(this.functions[rule.fn].function, targetOptions)],
      });
    }

    new events.Rule(this, 'SweeperSchedule', {
      description: 'sweeper: re-enqueues QUEUED runs whose message was lost',
      schedule: events.Schedule.rate(Duration.minutes(SWEEPER.rateMinutes)),
      targets: [new targets.LambdaFunction(this.functions.sweeper.function, targetOptions)],
    });
    if (this.github) {
      new events.Rule(this, 'PullRequestSweepSchedule', {
        description: "pull-request-sweep: settles runs whose pull request's webhook never came",
        schedule: events.Schedule.rate(Duration.days(PULL_REQUEST_SWEEP_DAYS)),
        targets: [new targets.LambdaFunction(this.functions.pullRequestSweep.function, targetOptions)],
      });
    }
    return deliveryDeadLetterQueue;
  }

  /**
   * Schedules (shared/usecases/schedules.ts): the schedules function keeps each one's copy in this
   * group, and Scheduler invokes scheduled-dispatch for them with a role that may do that and nothing
   * else but dead-letter the ticks it could not deliver. Deleting the stack deletes the group and every
   * copy in it; the records stay with the table.
   */
  private createSchedules(): { group: scheduler.ScheduleGroup; role: iam.Role; deadLetterQueue: sqs.Queue } {
    const group = new scheduler.ScheduleGroup(this, 'ScheduleGroup', {
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const deadLetterQueue = new sqs.Queue(this, 'ScheduleDeadLetterQueue', {
      retentionPeriod: Duration.days(SCHEDULER.deadLetterRetentionDays),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    Validations.of(deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is itself a dead-letter queue: EventBridge Scheduler puts the ticks it failed to deliver here.',
    });
    const target = this.functions.scheduledDispatch.function;
    // Only this stack's schedules may use the role (the confused-deputy conditions AWS recommends).
    const role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: { 'aws:SourceAccount': this.account },
          ArnEquals: { 'aws:SourceArn': group.scheduleGroupArn },
        },
      }),
      description: "EventBridge Scheduler: invokes scheduled-dispatch for the stack's schedules",
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeScheduledDispatch',
        actions: ['lambda:InvokeFunction'],
        resources: [target.functionArn],
      }),
    );
    deadLetterQueue.grantSendMessages(role);

    const { schedules } = this.functions;
    group.grants.writeSchedules(schedules.role);
    group.grants.deleteSchedules(schedules.role);
    schedules.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'PassSchedulerRole',
        actions: ['iam:PassRole'],
        resources: [role.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
    );
    Validations.of(schedules.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/${group.scheduleGroupName}/*]`,
      reason:
        'A schedule’s copy is named when the schedule is saved: scoped to the schedules of the stack’s one group.',
    });
    schedules.setVariable('SCHEDULE_GROUP_NAME', group.scheduleGroupName);
    schedules.setVariable('SCHEDULE_TARGET_ARN', target.functionArn);
    schedules.setVariable('SCHEDULER_ROLE_ARN', role.roleArn);
    schedules.setVariable('SCHEDULE_DEAD_LETTER_QUEUE_ARN', deadLetterQueue.queueArn);
    return { group, role, deadLetterQueue };
  }

  /**
   * Every alarm notifies the alarm topic, and its description says what to do first (the README's
   * runbook says more). Thresholds from the CDK context: `failureRatePercent` (of the runs ended in
   * 15 minutes, once at least FAILURE_RATE_MIN_RUNS ended) and `spendAlarmUsdPerHour`.
   */
  private createAlarms(topic: sns.ITopic): void {
    const action = new cloudwatchActions.SnsAction(topic);
    const fiveMinuteSum = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    const alarm = (
      id: string,
      metric: cloudwatch.IMetric,
      alarmDescription: string,
      threshold = 1,
    ): cloudwatch.Alarm => {
      const created = new cloudwatch.Alarm(this, id, {
        alarmDescription,
        metric,
        threshold,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      created.addAlarmAction(action);
      return created;
    };
    const deadLetters = (queue: sqs.IQueue) =>
      queue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      });
    const functionFailing = (name: FunctionName, consequence: string, firstStep: string) =>
      alarm(
        `${upperFirst(name)}ErrorsAlarm`,
        this.functions[name].function.metricErrors(fiveMinuteSum),
        `${FUNCTIONS[name].entry} failed: ${consequence} First: ${firstStep}`,
      );
    const inFunctionLogs = (name: FunctionName) =>
      `search its log group (${FUNCTIONS[name].entry}) for level ERROR and the runId on those lines.`;

    alarm(
      'ExecutionsFailedAlarm',
      this.stateMachine.metricFailed(fiveMinuteSum),
      'Run executions failed: reconcile marks their runs terminal. First: open a failed execution of the run state machine, read the failed step’s error, then the run’s story (the saved Logs Insights query) for the runId.',
    );
    alarm(
      'ExecutionsTimedOutAlarm',
      this.stateMachine.metricTimedOut(fiveMinuteSum),
      'Run executions timed out: reconcile ends their runs. First: read the run’s story (saved query) for the runId, to see which wait the execution was in (a pod without heartbeats, an approval) and whether the sandbox stopped.',
    );
    functionFailing(
      'startRun',
      'queued runs are not starting and will reach the dead-letter queue.',
      `${inFunctionLogs('startRun')} Look for Step Functions throttling or permission errors.`,
    );
    functionFailing(
      'finalize',
      'sandboxes may be left running and runs left non-terminal.',
      `${inFunctionLogs('finalize')} Stop any task of the pods cluster whose run is already terminal.`,
    );
    functionFailing(
      'runFeed',
      "followers of the runs miss their changes and the run metrics lag; the stream's records are retried.",
      inFunctionLogs('runFeed'),
    );
    functionFailing(
      'stream',
      'people following runs live (console, CLI) are disconnected or see nothing.',
      inFunctionLogs('stream'),
    );
    functionFailing(
      'podStopped',
      'runs whose sandbox stopped may wait for their heartbeat timeout before they end.',
      inFunctionLogs('podStopped'),
    );
    functionFailing(
      'reconcile',
      'runs whose execution failed, timed out or was aborted may stay non-terminal.',
      inFunctionLogs('reconcile'),
    );
    functionFailing(
      'sweeper',
      'QUEUED runs whose message was lost are not re-enqueued.',
      inFunctionLogs('sweeper'),
    );
    alarm(
      'RunFeedFailedAlarm',
      deadLetters(this.runFeedDeadLetterQueue),
      "run-feed could not take a run's change after its retries: followers miss those events (the run itself is unaffected). First: read a message of the run-feed dead-letter queue; it names the stream records; then run-feed's errors for those runs.",
    );
    alarm(
      'EventDeliveryFailedAlarm',
      deadLetters(this.eventDeliveryDeadLetterQueue),
      'EventBridge could not deliver a pod-stopped, reconcile or sweeper event to its function. First: read a message of the event delivery dead-letter queue (its attributes carry the error), then check that function’s errors and throttles.',
    );
    alarm(
      'ScheduleDeliveryFailedAlarm',
      deadLetters(this.scheduleDeadLetterQueue),
      'EventBridge Scheduler could not deliver a schedule’s tick to scheduled-dispatch after its retries: that tick started no run. First: read a message of the schedule dead-letter queue, then scheduled-dispatch’s errors and throttles.',
    );

    const failureRatePercent = numberContext(this, 'failureRatePercent', 25);
    const ended = Object.fromEntries(
      ENDING_STATUSES.map((status) => [
        status.toLowerCase(),
        runMetric('RunsEnded', { Status: status }, { period: FAILURE_RATE_PERIOD }),
      ]),
    );
    const all = Object.keys(ended).join(' + ');
    alarm(
      'RunFailureRateAlarm',
      new cloudwatch.MathExpression({
        expression: `IF((${all}) >= ${FAILURE_RATE_MIN_RUNS}, 100 * failed / (${all}), 0)`,
        usingMetrics: ended,
        period: FAILURE_RATE_PERIOD,
        label: 'FAILED runs, % of the runs ended',
      }),
      `More than ${failureRatePercent}% of the runs that ended in 15 minutes FAILED. First: on the dashboard, "Ended runs by exit reason" says which reason grew; read the story (saved query) of one such run.`,
      failureRatePercent,
    );
    alarm(
      'OldestRunAlarm',
      runMetric(
        'OldestActiveRunAge',
        {},
        {
          period: Duration.minutes(SWEEPER.rateMinutes * 2),
          statistic: cloudwatch.Stats.MAXIMUM,
        },
      ),
      `A run has not ended ${Math.round(LONGEST_RUN_SECONDS / 86_400)} days after it was created, longer than any run may last: the lifecycle lost it. First: the metric's line in the sweeper's log names the run (runId); read its story (saved query), then stop it (POST /v1/runs/{runId}/stop) or end its execution.`,
      LONGEST_RUN_SECONDS,
    );
    const spendUsdPerHour = numberContext(this, 'spendAlarmUsdPerHour', 100);
    alarm(
      'SpendPerHourAlarm',
      runMetric('SpendUsd', {}, { period: Duration.hours(1) }),
      `Runs spent more than ${spendUsdPerHour} USD in an hour. First: on the dashboard, "Spend per account per hour" names the accounts; if it is not expected, stop their runs and lower their limits (PUT /v1/account/limits).`,
      spendUsdPerHour,
    );
  }

  private acknowledgeStateMachineFindings(stateMachine: sfn.StateMachine): void {
    const taskDefinitionFamily = `task-definition/${this.podTaskDefinition.family}:*`;
    Validations.of(stateMachine).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:${taskDefinitionFamily}]`,
        reason:
          'Every revision of the one pod task definition, and only on this cluster (ecs:cluster condition).',
      },
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task-definition/${this.podTaskFamilyPrefix}*]`,
        reason:
          'The pods’ own task definitions, registered when a pod is saved: only the families under the prefix the API registers them with, only on this cluster.',
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Only the actions that have no resource-level permissions: CloudWatch Logs vended delivery for execution logging, and X-Ray trace submission.',
      },
    );
  }
}
