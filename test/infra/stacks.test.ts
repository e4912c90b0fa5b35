import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CfnResource, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.js';
import { RUN_ID_PLACEHOLDER } from '../../infra/constructs/run-story.js';
import { DEFAULT_POD_MODELS, POD_IMAGE_EXCLUDES, podModelsFrom } from '../../infra/stacks/stateless-stack.js';
import { type EnvName, isRequiredEnv } from '../../shared/config.js';
import { LONGEST_RUN_SECONDS, SWEEPER } from '../../shared/domain/policy.js';
import { RUN_METRICS } from '../../shared/domain/run-metrics.js';
import {
  AGENT_API_PODS,
  ASL_SUBSTITUTIONS,
  DEAD_LETTER_QUEUE,
  DEFAULT_ROUTE_THROTTLE,
  EVENT_RULES,
  FUNCTIONS,
  type FunctionName,
  POD_CONTAINER_NAME,
  QUEUE,
  ROUTE_THROTTLES,
  ROUTES,
  type RouteThrottle,
  RUN_FEED_SOURCE,
  RUN_LOGS_SOURCE,
  SCHEDULER,
  TABLE,
  WEBSOCKET,
} from '../../shared/manifest.js';
import { POD_SECRETS_PREFIX } from '../../shared/schemas/pod.js';

// One app for the whole file, synthesized once: the same context `cdk synth` reads, minus bundling,
// with an identity provider of the deployer's own (the stack's own user pool has tests of its own).
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const IDENTITY_PROVIDER = {
  jwtIssuer: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE',
  jwtAudience: 'execution-runs',
  cognitoDomain: 'https://execution-runs-example.auth.us-east-1.amazoncognito.com',
};
const context = { ...cdkJson.context, ...IDENTITY_PROVIDER, 'aws:cdk:bundling-stacks': [] };
const { app, stateful, stateless } = buildApp(context);
const nagFindings = (): string[] =>
  new AwsSolutionsChecks()
    .validateScope(app)
    .violations.flatMap((violation) =>
      violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath}`),
    );
const synthesize = () => {
  try {
    return app.synth();
  } catch (error) {
    // Every template assertion below would fail the same way; say why once, with the findings.
    throw new Error(`the app does not synthesize: ${String(error)}\n${nagFindings().join('\n')}`);
  }
};
const assembly = synthesize();
const statefulTemplate = Template.fromStack(stateful);
const statelessTemplate = Template.fromStack(stateless);

type Json = Record<string, unknown>;
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Json;
}
interface PolicyStatement extends Statement {
  policyId: string;
  roleIds: string[];
}

const logicalId = (construct: IConstruct): string => {
  const cfn = CfnResource.isCfnResource(construct) ? construct : construct.node.defaultChild;
  if (!cfn || !CfnResource.isCfnResource(cfn))
    throw new Error(`${construct.node.path} has no CloudFormation resource`);
  return Stack.of(construct).getLogicalId(cfn);
};
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
/** What a task definition ARN built with formatArn names after `task-definition/`. */
const taskDefinitionOf = (resource: unknown): string => {
  const parts = (resource as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  const tail = parts.at(-1);
  if (typeof tail !== 'string' || !tail.startsWith(':task-definition/')) {
    throw new Error(`not a task definition ARN: ${JSON.stringify(resource)}`);
  }
  return tail.slice(':task-definition/'.length);
};

/** Every statement of every AWS::IAM::Policy, with the roles it is attached to. */
const policyStatements = (template: Template): PolicyStatement[] =>
  Object.entries(template.findResources('AWS::IAM::Policy')).flatMap(([policyId, policy]) =>
    (policy.Properties.PolicyDocument.Statement as Statement[]).map((statement) => ({
      ...statement,
      policyId,
      roleIds: (policy.Properties.Roles as { Ref: string }[]).map((role) => role.Ref),
    })),
  );

const functionNames = Object.keys(FUNCTIONS) as FunctionName[];
const functionRoleIds = new Map(
  functionNames.map((name) => [logicalId(stateless.functions[name].role), name]),
);
const functionIds = Object.fromEntries(
  functionNames.map((name) => [name, logicalId(stateless.functions[name].function)]),
) as Record<FunctionName, string>;
const stateMachineId = logicalId(stateless.stateMachine);
const clusterId = logicalId(stateless.cluster);

/** The roles allowed `action`: functions by name, any other role by logical id. */
const rolesAllowedTo = (action: string): string[] =>
  [
    ...new Set(
      policyStatements(statelessTemplate)
        .filter((statement) => statement.Effect === 'Allow' && asArray(statement.Action).includes(action))
        .flatMap((statement) => statement.roleIds)
        .map((roleId) => functionRoleIds.get(roleId) ?? roleId),
    ),
  ].sort();

const isAcknowledged = (construct: IConstruct, ruleId: string): boolean => {
  for (let node: IConstruct | undefined = construct; node; node = node.node.scope) {
    for (const entry of node.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      if (Object.keys(entry.data as Json).some((id) => id.replace(/^annotation::/i, '') === ruleId))
        return true;
    }
  }
  return false;
};

describe('the CDK app', () => {
  it('synthesizes with every AwsSolutions finding fixed or acknowledged', () => {
    expect(nagFindings()).toEqual([]);
  });

  it('reports no CDK errors or warnings on either stack', () => {
    for (const stack of [stateful, stateless]) {
      const annotations = Annotations.fromStack(stack);
      expect(annotations.findError('*', Match.anyValue())).toEqual([]);
      expect(annotations.findWarning('*', Match.anyValue())).toEqual([]);
    }
  });

  it('grants Resource "*" only for actions without resource-level permissions, each acknowledged', () => {
    const wildcards = [stateful, stateless].flatMap((stack) =>
      policyStatements(Template.fromStack(stack))
        .filter((statement) => asArray(statement.Resource).includes('*'))
        .map((statement) => ({ stack, ...statement })),
    );
    const executionRoleId = logicalId(stateless.podTaskDefinition.obtainExecutionRole());
    const stateMachineRoleId = logicalId(stateless.stateMachine.role);
    // active tracing: each function sends its trace segments
    const tracing = (Object.keys(FUNCTIONS) as FunctionName[]).map((name) => ({
      roles: [logicalId(stateless.functions[name].role)],
      actions: ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'],
    }));
    const byRole = (a: { roles: string[] }, b: { roles: string[] }) =>
      JSON.stringify(a).localeCompare(JSON.stringify(b));
    expect(
      wildcards
        .map((statement) => ({ roles: statement.roleIds, actions: asArray(statement.Action).sort() }))
        .sort(byRole),
    ).toEqual(
      [
        ...tracing,
        { roles: [executionRoleId], actions: ['ecr:GetAuthorizationToken'] },
        { roles: [logicalId(stateless.functions.api.role)], actions: ['ecs:DescribeTaskDefinition'] },
        { roles: [logicalId(stateless.functions.runFeed.role)], actions: ['dynamodb:ListStreams'] },
        {
          roles: [stateMachineRoleId],
          actions: [
            'logs:CreateLogDelivery',
            'logs:DeleteLogDelivery',
            'logs:DescribeLogGroups',
            'logs:DescribeResourcePolicies',
            'logs:GetLogDelivery',
            'logs:ListLogDeliveries',
            'logs:PutResourcePolicy',
            'logs:UpdateLogDelivery',
          ],
        },
        {
          roles: [stateMachineRoleId],
          actions: [
            'xray:GetSamplingRules',
            'xray:GetSamplingTargets',
            'xray:PutTelemetryRecords',
            'xray:PutTraceSegments',
          ],
        },
      ].sort(byRole),
    );
    for (const statement of wildcards) {
      const policy = statement.stack.node
        .findAll()
        .find(
          (node) =>
            CfnResource.isCfnResource(node) && statement.stack.getLogicalId(node) === statement.policyId,
        );
      expect(policy && isAcknowledged(policy, 'AwsSolutions-IAM5[Resource::*]')).toBe(true);
    }
  });
});

describe('the stateful stack', () => {
  it('keeps the runs table with PITR, TTL, a stream, AWS-managed encryption and every index of TABLE', () => {
    statefulTemplate.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BillingMode: 'PAY_PER_REQUEST',
        KeySchema: [
          { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
          { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
        ],
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: TABLE.timeToLiveAttribute, Enabled: true },
        StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
        SSESpecification: { SSEEnabled: true },
      }),
    });
    // what the stateless stack receives as props.table, for stream event sources
    expect(stateful.table.tableStreamArn).toBeDefined();
    const [table] = Object.values(statefulTemplate.findResources('AWS::DynamoDB::Table'));
    expect(table?.Properties.GlobalSecondaryIndexes).toEqual(
      TABLE.globalSecondaryIndexes.map((index) => ({
        IndexName: index.indexName,
        KeySchema: [
          { AttributeName: index.partitionKey, KeyType: 'HASH' },
          { AttributeName: index.sortKey, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...TABLE.projectedAttributes] },
      })),
    );
  });

  it('sends a run message to the DLQ after QUEUE.maxReceiveCount receives', () => {
    statefulTemplate.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: QUEUE.visibilityTimeoutSeconds,
      SqsManagedSseEnabled: true,
      RedrivePolicy: {
        maxReceiveCount: QUEUE.maxReceiveCount,
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(stateful.deadLetterQueue), 'Arn'] },
      },
    });
  });

  it('alarms on the first message in the DLQ, to the encrypted alarm topic', () => {
    const topicId = logicalId(stateful.alarmTopic);
    statefulTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(stateful.deadLetterQueue), 'QueueName'] } },
      ],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
      AlarmActions: [{ Ref: topicId }],
    });
    statefulTemplate.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
  });

  it('subscribes the alarmEmail context address to the alarm topic', () => {
    const withEmail = buildApp({ ...context, alarmEmail: 'oncall@example.com' });
    Template.fromStack(withEmail.stateful).hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'oncall@example.com',
    });
    statefulTemplate.resourceCountIs('AWS::SNS::Subscription', 0);
  });
});

describe('the GitHub App (context githubAppId, githubHost)', () => {
  const withGitHub = buildApp({ ...context, githubAppId: '123456', githubHost: 'ghes.example.com' });
  const template = Template.fromStack(withGitHub.stateless);
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Json }>;
  const gitHubFunctions: FunctionName[] = [
    'api',
    'agentApi',
    'checks',
    'raisePullRequest',
    'finalize',
    // a run dead-lettered, or ended after its execution was lost, tells the issue it came from
    'deadLetter',
    'reconcile',
    'githubWebhooks',
    'pullRequestSweep',
  ];
  const idOf = (construct: IConstruct) =>
    withGitHub.stateless.getLogicalId(construct.node.defaultChild as CfnResource);

  it('keeps its keys in a secret of their own, the webhook secret generated and the private key the operator’s', () => {
    const secret = withGitHub.stateless.signingSecrets.github;
    expect(secret).toBeDefined();
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: Match.objectLike({
        SecretStringTemplate: JSON.stringify({ privateKey: '' }),
        GenerateStringKey: 'webhookSecret',
      }),
    });
    expect(stateless.signingSecrets.github).toBeUndefined();
    statelessTemplate.resourceCountIs('AWS::SecretsManager::Secret', 2);
  });

  it('gives the App’s functions its id, its API and web URLs and its secret, and lets only them read the secret', () => {
    const secretId = idOf(withGitHub.stateless.signingSecrets.github as IConstruct);
    for (const name of functionNames) {
      const fn = withGitHub.stateless.functions[name];
      const environment = resources[idOf(fn.function)]?.Properties.Environment as
        | { Variables: Json }
        | undefined;
      const variables = environment?.Variables;
      if (gitHubFunctions.includes(name)) {
        expect(variables).toMatchObject({
          GITHUB_APP_ID: '123456',
          GITHUB_API_URL: 'https://ghes.example.com/api/v3',
          GITHUB_WEB_URL: 'https://ghes.example.com',
          GITHUB_APP_SECRET_ARN: { Ref: secretId },
        });
        // one secrets extension, however many secrets the function reads (the API: the cursor's too)
        expect(resources[idOf(fn.function)]?.Properties.Layers, name).toHaveLength(1);
      } else {
        expect(variables).not.toHaveProperty('GITHUB_APP_SECRET_ARN');
      }
    }
    const readers = policyStatements(template)
      .filter((statement) => JSON.stringify(statement.Resource).includes(secretId))
      .flatMap((statement) => statement.roleIds);
    expect(new Set(readers)).toEqual(
      new Set(gitHubFunctions.map((name) => idOf(withGitHub.stateless.functions[name].role))),
    );
  });

  it('routes POST /webhooks/github to its function without an authorizer: the handler checks the signature', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
      RouteKey: 'POST /webhooks/github',
      AuthorizationType: 'NONE',
    });
  });

  it('reads the open pull requests from GitHub once a day, only where there is an App', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 day)',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [idOf(withGitHub.stateless.functions.pullRequestSweep.function), 'Arn'] },
        }),
      ],
    });
    expect(
      Object.values(statelessTemplate.findResources('AWS::Events::Rule')).filter(
        (rule) =>
          (rule as { Properties: { ScheduleExpression?: string } }).Properties.ScheduleExpression ===
          'rate(1 day)',
      ),
    ).toEqual([]);
  });

  it('gives every function each variable its handler reads (readEnv), with the App configured', () => {
    for (const name of functionNames) {
      const source = readFileSync(
        new URL(`../../functions/${FUNCTIONS[name].entry}.ts`, import.meta.url),
        'utf8',
      );
      const read = [...source.matchAll(/readEnv\(([^)]*)\)/g)].flatMap((call) =>
        [...(call[1] ?? '').matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]),
      );
      const fn = withGitHub.stateless.functions[name];
      const variables =
        (resources[idOf(fn.function)]?.Properties.Environment as { Variables: Json } | undefined)
          ?.Variables ?? {};
      for (const variable of read.filter((v) => isRequiredEnv(v as EnvName))) {
        expect(variables, `${name} reads ${variable}`).toHaveProperty(variable as string);
      }
    }
  });

  it('refuses a githubAppId that is not an App id', () => {
    expect(() => buildApp({ ...context, githubAppId: 'my-app' })).toThrow(/githubAppId/);
  });
});

describe('the stateless stack', () => {
  it('gives the pod a task role that may only invoke the pod models on Bedrock', () => {
    const taskRoleId = logicalId(stateless.podTaskRole);
    statelessTemplate.hasResourceProperties('AWS::ECS::TaskDefinition', {
      TaskRoleArn: { 'Fn::GetAtt': [taskRoleId, 'Arn'] },
    });
    const role = statelessTemplate.findResources('AWS::IAM::Role')[taskRoleId];
    expect(role?.Properties.Policies).toBeUndefined();
    expect(role?.Properties.ManagedPolicyArns).toBeUndefined();
    const attached = policyStatements(statelessTemplate).filter((statement) =>
      statement.roleIds.includes(taskRoleId),
    );
    const partition = { Ref: 'AWS::Partition' };
    const arn = (...parts: unknown[]) => ({ 'Fn::Join': ['', parts] });
    expect(attached.map(({ Action, Resource }) => ({ Action, Resource }))).toEqual([
      {
        Action: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'],
        Resource: [
          arn('arn:', partition, ':bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0'),
          arn('arn:', partition, ':bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0'),
          ...DEFAULT_POD_MODELS.map((id) =>
            arn(
              'arn:',
              partition,
              ':bedrock:',
              { Ref: 'AWS::Region' },
              ':',
              { Ref: 'AWS::AccountId' },
              `:inference-profile/${id}`,
            ),
          ),
        ],
      },
    ]);
  });

  it('reaches the model through Bedrock from the pod container, and lets the API refuse other models', () => {
    const resources = statelessTemplate.toJSON().Resources as Record<string, { Properties: Json }>;
    statelessTemplate.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'CLAUDE_CODE_USE_BEDROCK', Value: '1' },
            { Name: 'AWS_REGION', Value: { Ref: 'AWS::Region' } },
          ]),
        }),
      ],
    });
    const api = resources[functionIds.api]?.Properties.Environment as { Variables: Json } | undefined;
    expect(api?.Variables).toMatchObject({ POD_MODELS: DEFAULT_POD_MODELS.join(',') });
  });

  it('takes the pod models from the context: Bedrock model ids or inference profiles, a list or text', () => {
    expect(
      podModelsFrom('anthropic.claude-sonnet-4-5-20250929-v1:0, eu.anthropic.claude-haiku-4-5-20251001-v1:0'),
    ).toEqual([
      {
        id: 'anthropic.claude-sonnet-4-5-20250929-v1:0',
        foundationModel: 'anthropic.claude-sonnet-4-5-20250929-v1:0',
        crossRegion: false,
      },
      {
        id: 'eu.anthropic.claude-haiku-4-5-20251001-v1:0',
        foundationModel: 'anthropic.claude-haiku-4-5-20251001-v1:0',
        crossRegion: true,
      },
    ]);
    expect(podModelsFrom(['us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0'])).toMatchObject([
      { foundationModel: 'anthropic.claude-sonnet-4-5-20250929-v1:0', crossRegion: true },
    ]);
    expect(podModelsFrom(undefined).map((model) => model.id)).toEqual(DEFAULT_POD_MODELS);
    expect(() => podModelsFrom('claude-sonnet-4-5')).toThrow(/not a Bedrock model/);
    expect(() => podModelsFrom([])).toThrow(/must list/);
    expect(() => podModelsFrom({ model: 'x' })).toThrow(/must list/);
  });

  it('runs the pod on ARM64 Linux, logging to the stateful pods log group', () => {
    statelessTemplate.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          LogConfiguration: {
            LogDriver: 'awslogs',
            Options: Match.objectLike({
              'awslogs-group': { 'Fn::ImportValue': Match.stringLikeRegexp(logicalId(stateful.podLogGroup)) },
              'awslogs-stream-prefix': 'pod',
            }),
          },
        }),
      ],
    });
  });

  it('builds every function from its definition: ARM64, Node 22, own log group, its timeout and memory', () => {
    for (const name of functionNames) {
      statelessTemplate.hasResourceProperties('AWS::Lambda::Function', {
        Architectures: ['arm64'],
        Runtime: 'nodejs22.x',
        Timeout: FUNCTIONS[name].timeoutSeconds,
        MemorySize: FUNCTIONS[name].memoryMiB,
        Description: FUNCTIONS[name].description,
        LoggingConfig: Match.objectLike({ LogGroup: { Ref: logicalId(stateless.functions[name].logGroup) } }),
      });
    }
  });

  it('reports batch item failures from every SQS event source, with the batch settings of definitions', () => {
    const mappings = Object.values(statelessTemplate.findResources('AWS::Lambda::EventSourceMapping')).filter(
      (mapping) => JSON.stringify(mapping.Properties.EventSourceArn).includes('Queue'),
    );
    expect(mappings).toHaveLength(2);
    for (const mapping of mappings)
      expect(mapping.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    statelessTemplate.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: functionIds.startRun },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp(`GetAtt${logicalId(stateful.queue)}Arn`) },
      BatchSize: QUEUE.batchSize,
      MaximumBatchingWindowInSeconds: QUEUE.maxBatchingWindowSeconds,
    });
    statelessTemplate.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: functionIds.deadLetter },
      EventSourceArn: {
        'Fn::ImportValue': Match.stringLikeRegexp(`GetAtt${logicalId(stateful.deadLetterQueue)}Arn`),
      },
      BatchSize: DEAD_LETTER_QUEUE.batchSize,
    });
  });

  it("feeds run-feed from the table's stream in order, its run and step items only, failures to a dead-letter queue", () => {
    const mappings = Object.values(statelessTemplate.findResources('AWS::Lambda::EventSourceMapping')).filter(
      (mapping) => JSON.stringify(mapping.Properties.EventSourceArn).includes('StreamArn'),
    );
    expect(mappings).toHaveLength(1);
    expect(mappings[0]?.Properties).toMatchObject({
      FunctionName: { Ref: functionIds.runFeed },
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: RUN_FEED_SOURCE.batchSize,
      ParallelizationFactor: 1,
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: RUN_FEED_SOURCE.maximumRetryAttempts,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      FilterCriteria: { Filters: [{ Pattern: JSON.stringify(RUN_FEED_SOURCE.filters[0]) }] },
      DestinationConfig: {
        OnFailure: { Destination: { 'Fn::GetAtt': [logicalId(stateless.runFeedDeadLetterQueue), 'Arn'] } },
      },
    });
    const streamReaders = policyStatements(statelessTemplate)
      .filter((statement) => asArray(statement.Action).includes('dynamodb:GetRecords'))
      .flatMap((statement) => statement.roleIds);
    expect(streamReaders).toEqual([logicalId(stateless.functions.runFeed.role)]);
  });

  it("subscribes run-logs to every line of the pods' log group", () => {
    statelessTemplate.hasResourceProperties('AWS::Logs::SubscriptionFilter', {
      FilterName: RUN_LOGS_SOURCE.filterName,
      FilterPattern: RUN_LOGS_SOURCE.filterPattern,
      DestinationArn: { 'Fn::GetAtt': [functionIds.runLogs, 'Arn'] },
      LogGroupName: Match.anyValue(),
    });
    expect(Object.keys(statelessTemplate.findResources('AWS::Logs::SubscriptionFilter'))).toHaveLength(1);
    statelessTemplate.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [functionIds.runLogs, 'Arn'] },
      Principal: 'logs.amazonaws.com',
    });
  });

  it('serves the WebSocket API from the stream function, and lets only it, run-feed and run-logs post to its connections', () => {
    const apiId = logicalId(stateless.streamApi);
    const routes = Object.values(statelessTemplate.findResources('AWS::ApiGatewayV2::Route')).filter(
      (route) => route.Properties.ApiId.Ref === apiId,
    );
    expect(routes.map((route) => route.Properties.RouteKey).sort()).toEqual([...WEBSOCKET.routes].sort());
    statelessTemplate.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'WEBSOCKET',
      RouteSelectionExpression: WEBSOCKET.routeSelectionExpression,
    });
    statelessTemplate.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      ApiId: { Ref: apiId },
      IntegrationUri: Match.objectLike({
        'Fn::Join': Match.arrayWith([Match.arrayWith([{ 'Fn::GetAtt': [functionIds.stream, 'Arn'] }])]),
      }),
    });
    const posters = policyStatements(statelessTemplate)
      .filter((statement) => asArray(statement.Action).includes('execute-api:ManageConnections'))
      .flatMap((statement) => statement.roleIds)
      .sort();
    expect(posters).toEqual(
      (['stream', 'runFeed', 'runLogs'] as const)
        .map((name) => logicalId(stateless.functions[name].role))
        .sort(),
    );
  });

  it('lets the state machine role invoke exactly the six functions of the ASL', () => {
    const roleId = logicalId(stateless.stateMachine.role);
    const invocable = policyStatements(statelessTemplate)
      .filter(
        (statement) =>
          statement.roleIds.includes(roleId) && asArray(statement.Action).includes('lambda:InvokeFunction'),
      )
      .flatMap((statement) => asArray(statement.Resource));
    const invoked: FunctionName[] = [
      'checks',
      'markRetrying',
      'parkPod',
      'finalize',
      'requestApproval',
      'raisePullRequest',
    ];
    expect(invocable).toEqual(invoked.map((name) => ({ 'Fn::GetAtt': [functionIds[name], 'Arn'] })));
  });

  it('scopes the state machine to running the stack’s and the pods’ own task definitions on this cluster and passing their two roles', () => {
    const roleId = logicalId(stateless.stateMachine.role);
    const statements = policyStatements(statelessTemplate).filter((statement) =>
      statement.roleIds.includes(roleId),
    );
    const runTask = statements.find((statement) => asArray(statement.Action).includes('ecs:RunTask'));
    expect(asArray(runTask?.Resource).map(taskDefinitionOf)).toEqual([
      `${stateless.podTaskDefinition.family}:*`,
      `${stateless.podTaskFamilyPrefix}*`,
    ]);
    expect(runTask?.Condition).toEqual({
      ArnEquals: { 'ecs:cluster': { 'Fn::GetAtt': [clusterId, 'Arn'] } },
    });
    const passRole = statements.find((statement) => asArray(statement.Action).includes('iam:PassRole'));
    expect(passRole?.Resource).toEqual([
      { 'Fn::GetAtt': [logicalId(stateless.podTaskRole), 'Arn'] },
      { 'Fn::GetAtt': [logicalId(stateless.podTaskDefinition.obtainExecutionRole()), 'Arn'] },
    ]);
  });

  it('lets only the API register the pods’ own task definitions, under their family prefix, passing only their two roles to ECS tasks', () => {
    expect(stateless.podTaskFamilyPrefix).toBe(`${stateless.podTaskDefinition.family}-pod-`);
    expect(stateless.podTaskFamilyPrefix).toMatch(/^[A-Za-z0-9_-]{1,128}$/);
    const apiRoleId = logicalId(stateless.functions.api.role);
    const statements = policyStatements(statelessTemplate).filter((statement) =>
      statement.roleIds.includes(apiRoleId),
    );
    const register = statements.find((statement) =>
      asArray(statement.Action).includes('ecs:RegisterTaskDefinition'),
    );
    expect(asArray(register?.Resource).map(taskDefinitionOf)).toEqual([`${stateless.podTaskFamilyPrefix}*`]);
    const passRole = statements.find((statement) => asArray(statement.Action).includes('iam:PassRole'));
    expect(passRole?.Resource).toEqual([
      { 'Fn::GetAtt': [logicalId(stateless.podTaskRole), 'Arn'] },
      { 'Fn::GetAtt': [logicalId(stateless.podTaskDefinition.obtainExecutionRole()), 'Arn'] },
    ]);
    expect(passRole?.Condition).toEqual({
      StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
    });
    expect(rolesAllowedTo('iam:PassRole')).toEqual(
      ['api', 'schedules', logicalId(stateless.stateMachine.role)].sort(),
    );
  });

  it('gives the API the stack’s task definition and the pods’ family prefix, and Checks the stack’s task definition', () => {
    const resources = statelessTemplate.toJSON().Resources as Record<string, { Properties: Json }>;
    const variablesOf = (fn: FunctionName) =>
      (resources[functionIds[fn]]?.Properties.Environment as { Variables: Json } | undefined)?.Variables;
    const taskDefinition = { Ref: logicalId(stateless.podTaskDefinition) };
    expect(variablesOf('api')).toMatchObject({
      POD_TASK_DEFINITION_ARN: taskDefinition,
      POD_TASK_FAMILY_PREFIX: stateless.podTaskFamilyPrefix,
    });
    expect(variablesOf('checks')).toMatchObject({ POD_TASK_DEFINITION_ARN: taskDefinition });
  });

  it('lets only the pods’ task execution role read secrets under the pods prefix, and no other secret', () => {
    const executionRoleId = logicalId(stateless.podTaskDefinition.obtainExecutionRole());
    const reads = policyStatements(statelessTemplate).filter(
      (statement) =>
        statement.roleIds.includes(executionRoleId) &&
        asArray(statement.Action).includes('secretsmanager:GetSecretValue'),
    );
    expect(reads.map((statement) => statement.Resource)).toEqual([
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':secretsmanager:',
            { Ref: 'AWS::Region' },
            ':',
            { Ref: 'AWS::AccountId' },
            `:secret:${POD_SECRETS_PREFIX}*`,
          ],
        ],
      },
    ]);
    expect(rolesAllowedTo('secretsmanager:GetSecretValue')).not.toContain(logicalId(stateless.podTaskRole));
  });

  it('substitutes a value for every placeholder in the ASL file, and nothing else', () => {
    const asl = readFileSync(new URL('../../statemachine/run.asl.json', import.meta.url), 'utf8');
    const placeholders = [...new Set([...asl.matchAll(/\$\{(\w+)\}/g)].map((match) => match[1]))].sort();
    const [machine] = Object.values(statelessTemplate.findResources('AWS::StepFunctions::StateMachine'));
    expect(Object.keys(machine?.Properties.DefinitionSubstitutions ?? {}).sort()).toEqual(placeholders);
    expect([...ASL_SUBSTITUTIONS].sort()).toEqual(placeholders);
    expect(machine?.Properties).toMatchObject({
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true },
      DefinitionSubstitutions: { AssignPublicIp: 'ENABLED' },
    });
  });

  it('overrides the environment of the container the task definition names', () => {
    const asl = JSON.parse(readFileSync(new URL('../../statemachine/run.asl.json', import.meta.url), 'utf8'));
    const [override] = asl.States.Launch.Parameters.Overrides.ContainerOverrides;
    expect(override.Name).toBe(POD_CONTAINER_NAME);
    statelessTemplate.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Name: POD_CONTAINER_NAME })],
    });
  });

  it.each([
    [
      'sqs:SendMessage',
      [
        'api',
        'finalize',
        'githubWebhooks',
        'reconcile',
        'runFeed',
        'scheduledDispatch',
        'startRun',
        'sweeper',
        logicalId(stateless.schedulerRole),
      ].sort(),
    ],
    ['states:StartExecution', ['startRun']],
    ['states:SendTaskSuccess', ['agentApi', 'api', 'approvals', 'parkPod', 'podStopped']],
    ['states:SendTaskHeartbeat', ['agentApi', 'api', 'parkPod', 'podStopped']],
    ['states:SendTaskFailure', ['agentApi', 'api', 'parkPod', 'podStopped', 'requestApproval', 'sweeper']],
    ['ecs:StopTask', ['api', 'finalize', 'reconcile', 'startRun']],
    ['ecs:RegisterTaskDefinition', ['api']],
    ['ecs:DescribeTaskDefinition', ['api']],
    ['states:DescribeExecution', ['startRun']],
    ['dynamodb:UpdateItem', [...functionNames].sort()],
  ])('grants %s only to %j', (action, expected) => {
    expect(rolesAllowedTo(action)).toEqual(expected);
  });

  it('scopes task control to the tasks of this cluster', () => {
    const stopTask = policyStatements(statelessTemplate).find((statement) =>
      asArray(statement.Action).includes('ecs:StopTask'),
    );
    expect(stopTask?.Condition).toEqual({
      ArnEquals: { 'ecs:cluster': { 'Fn::GetAtt': [clusterId, 'Arn'] } },
    });
    expect(stopTask?.Resource).toEqual({
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':ecs:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          ':task/',
          { Ref: clusterId },
          '/*',
        ],
      ],
    });
  });

  it('grants each function exactly the table actions and indexes it declares, never index/*', () => {
    // the stream mapping's reads of the table's stream are run-feed's, asserted with the mapping
    const streamActions = [
      'dynamodb:DescribeStream',
      'dynamodb:GetRecords',
      'dynamodb:GetShardIterator',
      'dynamodb:ListStreams',
    ];
    const tableStatements = policyStatements(statelessTemplate).filter(
      (statement) =>
        asArray(statement.Action).some((action) => action.startsWith('dynamodb:')) &&
        !asArray(statement.Action).every((action) => streamActions.includes(action)),
    );
    for (const name of functionNames) {
      const roleId = logicalId(stateless.functions[name].role);
      const own = tableStatements.filter((statement) => statement.roleIds.includes(roleId));
      expect(own, name).toHaveLength(1);
      const [statement] = own as [PolicyStatement];
      const { actions, indexes } = FUNCTIONS[name].table;
      expect(asArray(statement.Action).sort(), name).toEqual(actions.map((a) => `dynamodb:${a}`).sort());
      const resources = JSON.stringify(statement.Resource);
      expect(resources).not.toContain('index/*');
      for (const index of TABLE.globalSecondaryIndexes) {
        if (indexes.includes(index.indexName)) expect(resources).toContain(`/index/${index.indexName}"`);
        else expect(resources).not.toContain(`/index/${index.indexName}"`);
      }
    }
    expect(FUNCTIONS.agentApi.table.actions).not.toContain('DeleteItem');
    expect(FUNCTIONS.sweeper.table.indexes).toEqual(['queued', 'awaitingApproval', 'active']);
  });

  it('gives each signing secret only to the functions that sign with it, read through the Parameters and Secrets layer', () => {
    const resources = statelessTemplate.toJSON().Resources as Record<string, { Properties: Json }>;
    const propertiesOf = (fn: FunctionName) => resources[functionIds[fn]]?.Properties ?? {};
    const layersOf = (fn: FunctionName) => propertiesOf(fn).Layers;
    // the logs API's cursors are read and handed on by the API and by the two that follow a run's log
    const signers = {
      approval: ['approvals', 'requestApproval'],
      cursor: ['api', 'stream', 'runLogs'],
    } as const;
    for (const [purpose, functions] of Object.entries(signers)) {
      const secretId = logicalId(stateless.signingSecrets[purpose as keyof typeof signers]);
      const readers = policyStatements(statelessTemplate)
        .filter(
          (statement) =>
            statement.Effect === 'Allow' &&
            asArray(statement.Action).includes('secretsmanager:GetSecretValue') &&
            JSON.stringify(statement.Resource).includes(`"${secretId}"`),
        )
        .flatMap((statement) => statement.roleIds)
        .map((roleId) => functionRoleIds.get(roleId) ?? roleId);
      expect([...new Set(readers)].sort(), purpose).toEqual([...functions].sort());
      for (const fn of functions) {
        const { Variables: variables } = propertiesOf(fn).Environment as { Variables: Json };
        expect(variables[`${purpose.toUpperCase()}_SECRET_ARN`], fn).toEqual({ Ref: secretId });
        expect(layersOf(fn), fn).toHaveLength(1);
        expect(layersOf(fn), fn).toEqual(layersOf('approvals'));
      }
    }
  });

  it('hands start-run the state machine ARN and checks the Agent API URL', () => {
    statelessTemplate.hasResourceProperties('AWS::Lambda::Function', {
      Description: FUNCTIONS.startRun.description,
      Environment: { Variables: Match.objectLike({ STATE_MACHINE_ARN: { Ref: stateMachineId } }) },
    });
    statelessTemplate.hasResourceProperties('AWS::Lambda::Function', {
      Description: FUNCTIONS.checks.description,
      Environment: {
        Variables: Match.objectLike({ AGENT_API_URL: { 'Fn::Join': ['', Match.arrayWith(['https://'])] } }),
      },
    });
  });

  it('routes every ROUTES entry to its function, JWT-authorized or left to the Lambda', () => {
    const routes = statelessTemplate.findResources('AWS::ApiGatewayV2::Route', {
      Properties: { ApiId: { Ref: logicalId(stateless.httpApi) } },
    });
    const integrations = statelessTemplate.findResources('AWS::ApiGatewayV2::Integration');
    expect(Object.keys(routes)).toHaveLength(ROUTES.length);
    for (const route of ROUTES) {
      const found = Object.values(routes).find(
        (r) => r.Properties.RouteKey === `${route.method} ${route.path}`,
      );
      expect(found?.Properties.AuthorizationType, `${route.method} ${route.path}`).toBe(
        route.auth === 'jwt' ? 'JWT' : 'NONE',
      );
      const integrationId = found?.Properties.Target['Fn::Join'][1][1].Ref;
      expect(integrations[integrationId]?.Properties.IntegrationUri).toEqual({
        'Fn::GetAtt': [functionIds[route.fn], 'Arn'],
      });
    }
    statelessTemplate.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: IDENTITY_PROVIDER.jwtIssuer, Audience: [IDENTITY_PROVIDER.jwtAudience] },
    });
  });

  it('logs and throttles the default stage; the Agent API, links and webhooks get buckets of their own', () => {
    const throttle = (t: RouteThrottle) => ({
      ThrottlingBurstLimit: t.burstLimit,
      ThrottlingRateLimit: t.rateLimit,
    });
    const own = ROUTES.filter((r) => r.auth !== 'jwt');
    statelessTemplate.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }),
      DefaultRouteSettings: throttle(DEFAULT_ROUTE_THROTTLE),
      RouteSettings: Object.fromEntries(
        own.map((r) => [`${r.method} ${r.path}`, throttle(ROUTE_THROTTLES[r.auth])]),
      ),
    });
    // sized for the pods: each sends a batch every 250 ms at most
    expect(ROUTE_THROTTLES.agent.rateLimit).toBe(AGENT_API_PODS * 4);
    const [stageId, stage] = Object.entries(statelessTemplate.findResources('AWS::ApiGatewayV2::Stage')).find(
      ([, r]) => r.Properties.StageName === '$default',
    ) as [string, { DependsOn?: string[] }];
    const routeIds = Object.entries(statelessTemplate.findResources('AWS::ApiGatewayV2::Route'))
      .filter(([, r]) => own.some((o) => r.Properties.RouteKey === `${o.method} ${o.path}`))
      .map(([id]) => id);
    expect(routeIds).toHaveLength(own.length);
    expect(stage.DependsOn, stageId).toEqual(expect.arrayContaining(routeIds));
  });

  it('narrows each EventBridge rule to this stack and gives its target retries and a DLQ', () => {
    const ownResource: Record<string, Json> = {
      'aws.ecs': { clusterArn: [{ 'Fn::GetAtt': [clusterId, 'Arn'] }] },
      'aws.states': { stateMachineArn: [{ Ref: stateMachineId }] },
    };
    const target = (fn: FunctionName) =>
      Match.objectLike({
        Arn: { 'Fn::GetAtt': [functionIds[fn], 'Arn'] },
        DeadLetterConfig: {
          Arn: { 'Fn::GetAtt': [logicalId(stateless.eventDeliveryDeadLetterQueue), 'Arn'] },
        },
        RetryPolicy: Match.objectLike({ MaximumRetryAttempts: Match.anyValue() }),
      });
    for (const rule of EVENT_RULES) {
      const [source] = rule.pattern.source;
      statelessTemplate.hasResourceProperties('AWS::Events::Rule', {
        EventPattern: {
          source: [...rule.pattern.source],
          'detail-type': [...rule.pattern['detail-type']],
          detail: { ...rule.pattern.detail, ...ownResource[source] },
        },
        Targets: [target(rule.fn)],
      });
    }
    statelessTemplate.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: `rate(${SWEEPER.rateMinutes} minutes)`,
      Targets: [target('sweeper')],
    });
  });

  it('alarms on failed and timed-out executions and on start-run and finalize errors', () => {
    const toTopic = [{ 'Fn::ImportValue': Match.stringLikeRegexp(logicalId(stateful.alarmTopic)) }];
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut']) {
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: metric,
        Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: stateMachineId } }],
        AlarmActions: toTopic,
      });
    }
    for (const fn of ['startRun', 'finalize'] as const) {
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionIds[fn] } }],
        AlarmActions: toTopic,
      });
    }
  });

  describe('operations', () => {
    type DashboardMetric = { namespace: string; name: string; dimensions: Record<string, string> };
    /** The dashboard's body with each CloudFormation reference in it read as the text TOKEN. */
    const dashboardBody = (): { widgets: { properties: Json }[] } => {
      const dashboards = Object.values(statelessTemplate.findResources('AWS::CloudWatch::Dashboard'));
      expect(dashboards).toHaveLength(1);
      const [dashboard] = dashboards as { Properties: Json }[];
      const body = dashboard?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
      const text = body['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : 'TOKEN')).join('');
      return JSON.parse(text);
    };
    /** Every metric a widget reads: those it names, and those its SEARCH expressions look for. */
    const dashboardMetrics = (): DashboardMetric[] =>
      dashboardBody().widgets.flatMap(({ properties }) =>
        ((properties.metrics ?? []) as unknown[][]).flatMap((row): DashboardMetric[] => {
          const [first] = row;
          if (typeof first === 'object' && first !== null && 'expression' in first) {
            const search = /SEARCH\('\{([^}]*)\} MetricName="([^"]+)"/.exec(String(first.expression));
            if (!search) return [];
            const [namespace = '', ...keys] = (search[1] ?? '').split(',');
            return [
              { namespace, name: search[2] ?? '', dimensions: Object.fromEntries(keys.map((k) => [k, '*'])) },
            ];
          }
          const [namespace, name, ...rest] = row.filter((part) => typeof part === 'string') as string[];
          const dimensions: Record<string, string> = {};
          for (let i = 0; i + 1 < rest.length; i += 2) dimensions[rest[i] as string] = rest[i + 1] as string;
          return [{ namespace: namespace ?? '', name: name ?? '', dimensions }];
        }),
      );
    /** The metrics AWS publishes that the dashboard reads, with the dimensions it publishes them under. */
    const AWS_PUBLISHED: Record<string, Record<string, string[]>> = {
      'AWS/Lambda': { Errors: ['FunctionName'], Throttles: ['FunctionName'], Duration: ['FunctionName'] },
      'AWS/SQS': {
        ApproximateNumberOfMessagesVisible: ['QueueName'],
        ApproximateAgeOfOldestMessage: ['QueueName'],
      },
      'AWS/States': {
        ExecutionsStarted: ['StateMachineArn'],
        ExecutionsFailed: ['StateMachineArn'],
        ExecutionsTimedOut: ['StateMachineArn'],
      },
      'AWS/ApiGateway': { '4xx': ['ApiId'], '5xx': ['ApiId'], Latency: ['ApiId'] },
      'AWS/Usage': { ResourceCount: ['Class', 'Resource', 'Service', 'Type'] },
      'ECS/ContainerInsights': { TaskCount: ['ClusterName'] },
    };

    it('reads on its dashboard only metrics the functions emit or AWS publishes', () => {
      const metrics = dashboardMetrics();
      expect(metrics.length).toBeGreaterThan(40);
      for (const metric of metrics) {
        const keys = Object.keys(metric.dimensions).sort();
        if (metric.namespace === 'ExecutionRuns') {
          const declared = RUN_METRICS[metric.name as keyof typeof RUN_METRICS];
          expect(declared, metric.name).toBeDefined();
          const sets = declared.dimensions.map((set) => [...set, 'service'].sort().join(','));
          expect(sets, `${metric.name} by ${keys.join(',')}`).toContain(keys.join(','));
        } else {
          expect(
            AWS_PUBLISHED[metric.namespace]?.[metric.name],
            `${metric.namespace} ${metric.name}`,
          ).toEqual(keys);
        }
      }
    });

    it('shows runs by status and exit reason, the queues, executions, every function, Fargate, the API and spend', () => {
      const shown = new Set(
        dashboardMetrics().map((m) => `${m.namespace} ${m.name} ${Object.keys(m.dimensions).sort()}`),
      );
      for (const expected of [
        'ExecutionRuns RunsEnded Status,service',
        'ExecutionRuns RunsEnded ExitReason,service',
        'ExecutionRuns RunsDispatched service',
        'ExecutionRuns QueueWait service',
        'ExecutionRuns SpendUsd service',
        'AWS/SQS ApproximateAgeOfOldestMessage QueueName',
        'AWS/States ExecutionsTimedOut StateMachineArn',
        'AWS/Usage ResourceCount Class,Resource,Service,Type',
        'AWS/ApiGateway 5xx ApiId',
      ]) {
        expect(shown, expected).toContain(expected);
      }
      const perFunction = dashboardMetrics().filter((m) => m.namespace === 'AWS/Lambda');
      for (const name of ['Errors', 'Throttles', 'Duration']) {
        expect(perFunction.filter((m) => m.name === name)).toHaveLength(Object.keys(FUNCTIONS).length);
      }
    });

    it('saves the query that tells one run’s story across its functions, its state machine and its pod', () => {
      const groups = [
        ...(Object.keys(FUNCTIONS) as FunctionName[]).map((name) => stateless.functions[name].logGroup),
        stateless.stateMachineLogGroup,
      ].map((group) => ({ Ref: logicalId(group) }));
      statelessTemplate.hasResourceProperties('AWS::Logs::QueryDefinition', {
        Name: 'execution-runs/run-story',
        QueryString: Match.stringLikeRegexp(
          `filter @message like "${RUN_ID_PLACEHOLDER}"\\n\\| sort @timestamp asc`,
        ),
        LogGroupNames: [
          ...groups,
          { 'Fn::ImportValue': Match.stringLikeRegexp(logicalId(stateful.podLogGroup)) },
        ],
      });
    });

    it('traces every function and the state machine with X-Ray', () => {
      // the stack's own functions (CDK's custom resources, such as the console's deployment, aside)
      const all = statelessTemplate.findResources('AWS::Lambda::Function');
      for (const id of Object.values(functionIds)) {
        expect((all[id]?.Properties as Json | undefined)?.TracingConfig, id).toEqual({ Mode: 'Active' });
      }
      statelessTemplate.hasResourceProperties('AWS::StepFunctions::StateMachine', {
        TracingConfiguration: { Enabled: true },
      });
    });

    it('sends every alarm of both stacks to the alarm topic, each with what to do first', () => {
      const topicArn = { Ref: logicalId(stateful.alarmTopic) };
      const imported = { 'Fn::ImportValue': expect.stringContaining(logicalId(stateful.alarmTopic)) };
      for (const [template, action] of [
        [statefulTemplate, topicArn],
        [statelessTemplate, imported],
      ] as const) {
        const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
        expect(alarms.length).toBeGreaterThan(0);
        for (const alarm of alarms) {
          const properties = alarm.Properties as Json;
          expect(properties.AlarmActions).toEqual([expect.objectContaining(action)]);
          expect(properties.AlarmDescription).toMatch(/First: /);
        }
      }
    });

    it('alarms on the failure rate, the oldest run not ended, the spend per hour and the stream and event functions failing', () => {
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: Match.stringLikeRegexp('100 \\* failed / ') }),
        ]),
        Threshold: 25,
      });
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'ExecutionRuns',
        MetricName: 'OldestActiveRunAge',
        Statistic: 'Maximum',
        Threshold: LONGEST_RUN_SECONDS,
      });
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'ExecutionRuns',
        MetricName: 'SpendUsd',
        Dimensions: [{ Name: 'service', Value: 'execution-runs' }],
        Period: 3600,
        Threshold: 100,
      });
      for (const fn of ['stream', 'runFeed', 'podStopped', 'reconcile', 'sweeper'] as const) {
        statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
          Namespace: 'AWS/Lambda',
          MetricName: 'Errors',
          Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionIds[fn] } }],
        });
      }
    });
  });

  describe('schedules', () => {
    const groupName = stateless.scheduleGroup.scheduleGroupName;
    const schedulerRoleId = logicalId(stateless.schedulerRole);
    const dlqId = logicalId(stateless.scheduleDeadLetterQueue);
    const groupArn = { 'Fn::GetAtt': [logicalId(stateless.scheduleGroup), 'Arn'] };
    const schedulesOfGroup = {
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':scheduler:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          `:schedule/${groupName}/*`,
        ],
      ],
    };

    it('gives Scheduler a role only this account’s schedule group may use, to invoke only scheduled-dispatch and dead-letter', () => {
      const role = statelessTemplate.findResources('AWS::IAM::Role')[schedulerRoleId];
      expect(role?.Properties.AssumeRolePolicyDocument.Statement).toEqual([
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Service: 'scheduler.amazonaws.com' },
          Condition: {
            StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            ArnEquals: { 'aws:SourceArn': groupArn },
          },
        },
      ]);
      const statements = policyStatements(statelessTemplate).filter((statement) =>
        statement.roleIds.includes(schedulerRoleId),
      );
      expect(statements.map(({ Action, Resource }) => ({ Action, Resource }))).toEqual([
        {
          Action: 'lambda:InvokeFunction',
          Resource: { 'Fn::GetAtt': [functionIds.scheduledDispatch, 'Arn'] },
        },
        {
          Action: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          Resource: { 'Fn::GetAtt': [dlqId, 'Arn'] },
        },
      ]);
      expect(rolesAllowedTo('lambda:InvokeFunction')).toEqual(
        [schedulerRoleId, logicalId(stateless.stateMachine.role)].sort(),
      );
    });

    it('lets only the schedules function create, update and delete the group’s schedules, passing the Scheduler role only to Scheduler', () => {
      const schedulesRoleId = logicalId(stateless.functions.schedules.role);
      const statements = policyStatements(statelessTemplate).filter((statement) =>
        asArray(statement.Action).some((action) => action.startsWith('scheduler:')),
      );
      expect(statements.map(({ Action, Resource, roleIds }) => ({ Action, Resource, roleIds }))).toEqual([
        {
          Action: ['scheduler:CreateSchedule', 'scheduler:UpdateSchedule'],
          Resource: schedulesOfGroup,
          roleIds: [schedulesRoleId],
        },
        { Action: 'scheduler:DeleteSchedule', Resource: schedulesOfGroup, roleIds: [schedulesRoleId] },
      ]);
      const passRole = policyStatements(statelessTemplate).filter(
        (statement) =>
          asArray(statement.Action).includes('iam:PassRole') &&
          JSON.stringify(statement.Resource).includes(schedulerRoleId),
      );
      expect(passRole).toEqual([
        expect.objectContaining({
          roleIds: [schedulesRoleId],
          Resource: { 'Fn::GetAtt': [schedulerRoleId, 'Arn'] },
          Condition: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
        }),
      ]);
    });

    it('gives the schedules function the group, the function ticks invoke, the role and the dead-letter queue', () => {
      const resources = statelessTemplate.toJSON().Resources as Record<string, { Properties: Json }>;
      const schedules = resources[functionIds.schedules]?.Properties.Environment as
        | { Variables: Json }
        | undefined;
      expect(schedules?.Variables).toMatchObject({
        SCHEDULE_GROUP_NAME: groupName,
        SCHEDULE_TARGET_ARN: { 'Fn::GetAtt': [functionIds.scheduledDispatch, 'Arn'] },
        SCHEDULER_ROLE_ARN: { 'Fn::GetAtt': [schedulerRoleId, 'Arn'] },
        SCHEDULE_DEAD_LETTER_QUEUE_ARN: { 'Fn::GetAtt': [dlqId, 'Arn'] },
      });
    });

    it('keeps the undelivered ticks encrypted for two weeks, and alarms on the first', () => {
      statelessTemplate.hasResourceProperties('AWS::SQS::Queue', {
        MessageRetentionPeriod: SCHEDULER.deadLetterRetentionDays * 86_400,
        SqsManagedSseEnabled: true,
      });
      statelessTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlqId, 'QueueName'] } }],
        Threshold: 1,
        AlarmActions: [{ 'Fn::ImportValue': Match.stringLikeRegexp(logicalId(stateful.alarmTopic)) }],
      });
    });
  });

  it('stages the pod image from the repository root without the excluded directories', () => {
    const { directory } = assembly;
    const manifest = JSON.parse(
      readFileSync(path.join(directory, `${stateless.artifactId}.assets.json`), 'utf8'),
    );
    const images = Object.values(manifest.dockerImages) as {
      source: { directory: string; dockerFile: string };
    }[];
    expect(images).toHaveLength(1);
    const staged = path.join(directory, images[0]?.source.directory ?? '');
    expect(images[0]?.source.dockerFile).toBe('pod/Dockerfile');
    expect(existsSync(path.join(staged, 'pod/Dockerfile'))).toBe(true);
    for (const excluded of POD_IMAGE_EXCLUDES.filter((entry) => !entry.includes('*'))) {
      expect(existsSync(path.join(staged, excluded)), excluded).toBe(false);
    }
    const dockerignore = readFileSync(new URL('../../.dockerignore', import.meta.url), 'utf8').split('\n');
    expect(dockerignore).toEqual(expect.arrayContaining(POD_IMAGE_EXCLUDES));
  });
});

describe('least privilege', () => {
  /** The SDK commands (and paginators) named in the project's own files that a function's bundle is made of. */
  const calledBy = async (fn: FunctionName): Promise<{ names: Set<string>; source: string }> => {
    const built = await esbuild.build({
      entryPoints: [path.join('functions', `${FUNCTIONS[fn].entry}.ts`)],
      bundle: true,
      write: false,
      metafile: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      logLevel: 'silent',
    });
    const source = Object.keys(built.metafile.inputs)
      .map((file) => readFileSync(file, 'utf8'))
      .join('\n');
    const names = new Set([...source.matchAll(/\b(\w+Command|paginate\w+)\b/g)].map((m) => m[1] as string));
    return { names, source };
  };

  /** DynamoDB's actions as lib-dynamodb's commands (and a transaction's parts) call them. */
  const DYNAMODB_EVIDENCE: Record<string, (names: Set<string>, source: string) => boolean> = {
    GetItem: (n) => n.has('GetCommand'),
    BatchGetItem: (n) => n.has('BatchGetCommand'),
    Query: (n) => n.has('QueryCommand') || n.has('paginateQuery'),
    PutItem: (n, s) => n.has('PutCommand') || (n.has('TransactWriteCommand') && /\bPut: \{/.test(s)),
    UpdateItem: (n, s) => n.has('UpdateCommand') || (n.has('TransactWriteCommand') && /\bUpdate: \{/.test(s)),
    DeleteItem: (n, s) => n.has('DeleteCommand') || (n.has('TransactWriteCommand') && /\bDelete: \{/.test(s)),
    ConditionCheckItem: (n, s) => n.has('TransactWriteCommand') && /\bConditionCheck: \{/.test(s),
    BatchWriteItem: (n) => n.has('BatchWriteCommand'),
  };

  /** Actions a function holds without calling them itself, and why. */
  const WITHOUT_A_CALL: Record<string, string> = {
    'logs:CreateLogStream': 'Lambda writes the function’s own log',
    'logs:PutLogEvents': 'Lambda writes the function’s own log',
    'xray:PutTraceSegments': 'Lambda sends the function’s traces',
    'xray:PutTelemetryRecords': 'Lambda sends the function’s traces',
  };
  /** What Lambda's event source mappings do with the function's role (as CDK grants it). */
  const EVENT_SOURCE_ACTIONS = {
    sqs: [
      'sqs:ReceiveMessage',
      'sqs:DeleteMessage',
      'sqs:ChangeMessageVisibility',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
    ],
    dynamodbStream: [
      'dynamodb:DescribeStream',
      'dynamodb:GetRecords',
      'dynamodb:GetShardIterator',
      'dynamodb:ListStreams',
      // the records that keep failing, to the mapping's on-failure queue
      'sqs:SendMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
    ],
  };
  const mappingsOf = (fn: FunctionName) =>
    Object.values(statelessTemplate.findResources('AWS::Lambda::EventSourceMapping')).filter(
      (mapping) => mapping.Properties.FunctionName.Ref === functionIds[fn],
    );

  it.each(functionNames)('gives %s only actions its code calls', async (fn) => {
    const { names, source } = await calledBy(fn);
    const mappings = mappingsOf(fn).map((m) => JSON.stringify(m.Properties.EventSourceArn));
    const roleId = logicalId(stateless.functions[fn].role);
    const held = new Set(
      policyStatements(statelessTemplate)
        .filter((statement) => statement.Effect === 'Allow' && statement.roleIds.includes(roleId))
        .flatMap((statement) => asArray(statement.Action)),
    );
    const justified = (action: string): boolean => {
      if (WITHOUT_A_CALL[action]) return true;
      if (
        mappings.some((arn) => arn.includes('StreamArn')) &&
        EVENT_SOURCE_ACTIONS.dynamodbStream.includes(action)
      )
        return true;
      if (mappings.some((arn) => !arn.includes('StreamArn')) && EVENT_SOURCE_ACTIONS.sqs.includes(action))
        return true;
      const [service, name = ''] = action.split(':');
      if (service === 'dynamodb') return DYNAMODB_EVIDENCE[name]?.(names, source) ?? false;
      // the signing secrets are read through the Parameters and Secrets extension
      if (action === 'secretsmanager:GetSecretValue') return source.includes('signingSecret(');
      // passing the pods' or the scheduler's role goes with the call that hands it over
      if (action === 'iam:PassRole')
        return ['RegisterTaskDefinitionCommand', 'CreateScheduleCommand', 'UpdateScheduleCommand'].some((c) =>
          names.has(c),
        );
      if (action === 'execute-api:ManageConnections') return names.has('PostToConnectionCommand');
      return names.has(`${name}Command`);
    };
    expect([...held].filter((action) => !justified(action)).sort()).toEqual([]);
  });

  it('lets the public approvals function read and update runs and approvals, and nothing else on the table', () => {
    expect(FUNCTIONS.approvals.table).toEqual({ actions: ['GetItem', 'UpdateItem'], indexes: [] });
  });
});

describe('the web console (S3 behind CloudFront)', () => {
  const distributionId = logicalId(stateless.console.distribution);
  const bucketId = logicalId(stateless.console.bucket);

  it('keeps the files in a private, encrypted bucket that only the distribution reads, through origin access control', () => {
    statelessTemplate.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: Match.objectLike({}),
    });
    statelessTemplate.resourceCountIs('AWS::CloudFront::OriginAccessControl', 1);
    statelessTemplate.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 's3:GetObject',
            Principal: { Service: 'cloudfront.amazonaws.com' },
            Condition: {
              StringEquals: {
                'AWS:SourceArn': Match.objectLike({
                  'Fn::Join': Match.arrayWith([Match.arrayWith([{ Ref: distributionId }])]),
                }),
              },
            },
          }),
        ]),
      },
    });
  });

  it('serves HTTPS only, with security headers, a strict CSP, and index.html for the app’s routes', () => {
    statelessTemplate.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({
        DefaultRootObject: 'index.html',
        DefaultCacheBehavior: Match.objectLike({ ViewerProtocolPolicy: 'redirect-to-https' }),
        CustomErrorResponses: [403, 404].map((code) => ({
          ErrorCode: code,
          ResponseCode: 200,
          ResponsePagePath: '/index.html',
          ErrorCachingMinTTL: 0,
        })),
      }),
    });
    const [policy] = Object.values(statelessTemplate.findResources('AWS::CloudFront::ResponseHeadersPolicy'));
    const headers = (policy as Json).Properties as { ResponseHeadersPolicyConfig: Json };
    const security = headers.ResponseHeadersPolicyConfig.SecurityHeadersConfig as Record<string, Json>;
    const csp = JSON.stringify(security.ContentSecurityPolicy);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(csp).toContain(IDENTITY_PROVIDER.cognitoDomain);
    expect(security.StrictTransportSecurity).toMatchObject({ Override: true, IncludeSubdomains: true });
    expect(security.FrameOptions).toMatchObject({ FrameOption: 'DENY' });
    expect(security.ContentTypeOptions).toMatchObject({ Override: true });
  });

  it('lets the API be called from the console’s origin only', () => {
    statelessTemplate.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      CorsConfiguration: {
        AllowOrigins: [{ 'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [distributionId, 'DomainName'] }]] }],
        AllowHeaders: ['authorization', 'content-type', 'idempotency-key'],
        AllowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
        MaxAge: 600,
      },
    });
  });

  it('writes the runtime config at deploy: the API URL and the Cognito hosted UI with the API’s audience as client', () => {
    const [deployment] = Object.values(statelessTemplate.findResources('Custom::CDKBucketDeployment'));
    const { SourceObjectKeys: keys, SourceMarkers: markers } = (deployment as Json).Properties as {
      SourceObjectKeys: string[];
      SourceMarkers: Record<string, unknown>[];
    };
    const configAsset = keys
      .map((key) => path.join(assembly.directory, `asset.${key.replace(/\.zip$/, '')}`, 'config.json'))
      .find((file) => existsSync(file));
    expect(configAsset).toBeDefined();
    const config = JSON.parse(readFileSync(configAsset as string, 'utf8'));
    const [apiMarker] = Object.entries(markers.find((m) => Object.keys(m).length > 0) ?? {});
    expect(config).toEqual({
      apiUrl: apiMarker?.[0],
      auth: {
        kind: 'cognito',
        domain: IDENTITY_PROVIDER.cognitoDomain,
        clientId: IDENTITY_PROVIDER.jwtAudience,
        scopes: ['openid', 'email', 'profile'],
      },
    });
    // the marker is the HTTP API's endpoint, filled in at deploy
    expect(apiMarker?.[1]).toEqual({ 'Fn::GetAtt': [logicalId(stateless.httpApi), 'ApiEndpoint'] });
  });
});

describe('the stack’s own user pool (no identity provider named)', () => {
  const own = buildApp({ ...cdkJson.context, 'aws:cdk:bundling-stacks': [] });
  const template = Template.fromStack(own.stateless);
  const pool = own.stateless.userPool;

  it('lets only an administrator add people, with the account and role the API reads, and signs in with a strong password', () => {
    expect(pool).toBeDefined();
    template.hasResourceProperties('AWS::Cognito::UserPool', {
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      UsernameAttributes: ['email'],
      Schema: Match.arrayWith([
        Match.objectLike({ Name: 'accountId', AttributeDataType: 'String', Mutable: true }),
        Match.objectLike({ Name: 'accountRole', AttributeDataType: 'String', Mutable: true }),
      ]),
      Policies: { PasswordPolicy: Match.objectLike({ MinimumLength: 12, RequireSymbols: true }) },
      MfaConfiguration: 'OPTIONAL',
      DeletionProtection: 'ACTIVE',
    });
    template.hasResource('AWS::Cognito::UserPool', { DeletionPolicy: 'Retain' });
  });

  it('gives the console a public client whose people can read their account and role but not write them', () => {
    const client = Object.values(template.findResources('AWS::Cognito::UserPoolClient'))[0]
      ?.Properties as Json;
    expect(client).toMatchObject({
      GenerateSecret: false,
      AllowedOAuthFlows: ['code'],
      AllowedOAuthScopes: expect.arrayContaining(['openid', 'email', 'profile']),
      PreventUserExistenceErrors: 'ENABLED',
    });
    expect(client.ReadAttributes).toEqual(expect.arrayContaining(['custom:accountId', 'custom:accountRole']));
    expect(JSON.stringify(client.WriteAttributes)).not.toContain('custom:');
    const { console: hosting } = own.stateless;
    expect(client.CallbackURLs).toEqual([own.stateless.resolve(`${hosting.url}/auth/callback`)]);
    expect(client.LogoutURLs).toEqual([own.stateless.resolve(hosting.url)]);
  });

  it('is the issuer of the API’s JWT authorizer, with the console’s client as audience', () => {
    const ids = (type: string) => Object.keys(template.findResources(type));
    const [poolId] = ids('AWS::Cognito::UserPool');
    const [clientId] = ids('AWS::Cognito::UserPoolClient');
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: {
        Issuer: Match.objectLike({ 'Fn::GetAtt': [poolId, 'ProviderURL'] }),
        Audience: [{ Ref: clientId }],
      },
    });
    template.hasResourceProperties('AWS::Cognito::UserPoolDomain', {
      Domain: { 'Fn::Join': ['', ['execution-runs-', { Ref: 'AWS::AccountId' }]] },
    });
    template.hasOutput('UserPoolId', { Value: { Ref: poolId } });
  });

  it('is not made when the context names an identity provider, which takes all three values', () => {
    expect(stateless.userPool).toBeUndefined();
    expect(Template.fromStack(stateless).findResources('AWS::Cognito::UserPool')).toEqual({});
    expect(() => buildApp({ ...context, cognitoDomain: undefined })).toThrow(/missing: cognitoDomain/);
  });
});
