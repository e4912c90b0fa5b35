import { Duration, Stack } from 'aws-cdk-lib';
import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { EXIT_REASONS, isTerminal, RUN_STATUSES, TRANSITIONS } from '../../shared/domain/run.js';
import { LAUNCH_FAILURE_KINDS, RUN_METRICS, type RunMetricName } from '../../shared/domain/run-metrics.js';
import { FUNCTION_DEFAULT_ENVIRONMENT, type FunctionName } from '../../shared/manifest.js';
import type { RunFunction } from './run-function.js';

const FIVE_MINUTES = Duration.minutes(5);

/**
 * A run metric as the functions publish it (shared/domain/run-metrics.ts): Powertools adds the
 * `service` dimension to every one. Naming a dimension set the code does not publish fails the synth,
 * since CloudWatch would show such a metric as empty rather than refuse it.
 */
export const runMetric = (
  name: RunMetricName,
  dimensions: Record<string, string> = {},
  options: cloudwatch.MetricOptions = {},
): cloudwatch.Metric => {
  const keys = Object.keys(dimensions).sort().join(',');
  const published = RUN_METRICS[name].dimensions.some((set) => [...set].sort().join(',') === keys);
  if (!published) throw new Error(`${name} is not published with the dimensions ${keys || '(none)'}`);
  return new cloudwatch.Metric({
    namespace: FUNCTION_DEFAULT_ENVIRONMENT.POWERTOOLS_METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: FUNCTION_DEFAULT_ENVIRONMENT.POWERTOOLS_SERVICE_NAME, ...dimensions },
    period: FIVE_MINUTES,
    statistic: cloudwatch.Stats.SUM,
    ...options,
  });
};

/** The statuses a run ends in from an active one: those RunsEnded counts (a later DONE is no end). */
export const ENDING_STATUSES = RUN_STATUSES.filter(
  (status) =>
    isTerminal(status) &&
    RUN_STATUSES.some((from) => !isTerminal(from) && TRANSITIONS[from].includes(status)),
);

export interface RunDashboardProps {
  functions: Record<FunctionName, RunFunction>;
  stateMachine: sfn.StateMachine;
  queue: sqs.IQueue;
  deadLetterQueue: sqs.IQueue;
  httpApi: apigwv2.HttpApi;
  cluster: ecs.Cluster;
}

/**
 * The one page an operator opens: the runs (by status, failures by exit reason, waits, launches,
 * spend), then what carries them (the queue and its dead letters, the executions, each function,
 * Fargate against the account's quota, the API). Every graph reads a metric the functions publish
 * (runMetric) or one AWS publishes for the resource; the spend by account is a Logs Insights query
 * over the run metrics' lines, where the account is a property rather than a dimension.
 */
export class RunDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: RunDashboardProps) {
    super(scope, id);
    const fns = Object.entries(props.functions) as [FunctionName, RunFunction][];
    const perFunction = (title: string, metric: (fn: RunFunction) => cloudwatch.IMetric) =>
      new cloudwatch.GraphWidget({
        title,
        width: 8,
        left: fns.map(([name, fn]) =>
          (metric(fn) as cloudwatch.Metric).with({ label: name, period: FIVE_MINUTES }),
        ),
        legendPosition: cloudwatch.LegendPosition.RIGHT,
      });
    const fargateVcpus = new cloudwatch.Metric({
      namespace: 'AWS/Usage',
      metricName: 'ResourceCount',
      dimensionsMap: { Service: 'Fargate', Type: 'Resource', Resource: 'vCPU', Class: 'Standard/OnDemand' },
      period: Duration.minutes(1),
      statistic: cloudwatch.Stats.MAXIMUM,
      label: 'Fargate vCPUs in use (account)',
    });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${Stack.of(this).stackName}-operations`,
      defaultInterval: Duration.hours(6),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Runs by status',
            width: 12,
            stacked: true,
            left: [
              runMetric('RunsDispatched', {}, { label: 'dispatched' }),
              runMetric('RunsStarted', {}, { label: 'started' }),
              ...ENDING_STATUSES.map((status) =>
                runMetric('RunsEnded', { Status: status }, { label: status }),
              ),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Ended runs by exit reason (all but completed)',
            width: 12,
            stacked: true,
            left: EXIT_REASONS.filter((reason) => reason !== 'completed').map((reason) =>
              runMetric('RunsEnded', { ExitReason: reason }, { label: reason }),
            ),
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Waits: queue (dispatch → PROVISIONING) and approval, p50 / p99',
            width: 8,
            left: [
              runMetric('QueueWait', {}, { statistic: cloudwatch.Stats.p(50), label: 'queue p50' }),
              runMetric('QueueWait', {}, { statistic: cloudwatch.Stats.p(99), label: 'queue p99' }),
            ],
            right: [
              runMetric('ApprovalWait', {}, { statistic: cloudwatch.Stats.p(50), label: 'approval p50' }),
              runMetric('ApprovalWait', {}, { statistic: cloudwatch.Stats.p(99), label: 'approval p99' }),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Run duration p50 / p99, and the oldest run not ended',
            width: 8,
            left: [
              runMetric('RunDuration', {}, { statistic: cloudwatch.Stats.p(50), label: 'p50 (ms)' }),
              runMetric('RunDuration', {}, { statistic: cloudwatch.Stats.p(99), label: 'p99 (ms)' }),
            ],
            right: [
              runMetric(
                'OldestActiveRunAge',
                {},
                {
                  statistic: cloudwatch.Stats.MAXIMUM,
                  label: 'oldest run not ended (s)',
                },
              ),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Sandbox launches: attempts and failures by kind',
            width: 8,
            left: [
              runMetric('LaunchAttempts', {}, { label: 'attempts' }),
              ...LAUNCH_FAILURE_KINDS.map((kind) =>
                runMetric('LaunchFailures', { FailureKind: kind }, { label: `failed: ${kind}` }),
              ),
            ],
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Runs queue and its dead-letter queue',
            width: 12,
            left: [
              props.queue.metricApproximateNumberOfMessagesVisible({ label: 'queued messages' }),
              props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: 'dead letters' }),
            ],
            right: [props.queue.metricApproximateAgeOfOldestMessage({ label: 'oldest message age (s)' })],
          }),
          new cloudwatch.GraphWidget({
            title: 'Run executions',
            width: 12,
            left: [
              props.stateMachine.metricStarted({ label: 'started', period: FIVE_MINUTES }),
              props.stateMachine.metricFailed({ label: 'failed', period: FIVE_MINUTES }),
              props.stateMachine.metricTimedOut({ label: 'timed out', period: FIVE_MINUTES }),
            ],
          }),
        ],
        [
          perFunction('Lambda errors', (fn) => fn.function.metricErrors({ statistic: cloudwatch.Stats.SUM })),
          perFunction('Lambda throttles', (fn) =>
            fn.function.metricThrottles({ statistic: cloudwatch.Stats.SUM }),
          ),
          perFunction('Lambda duration p99 (ms)', (fn) =>
            fn.function.metricDuration({ statistic: cloudwatch.Stats.p(99) }),
          ),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Fargate: vCPUs in use against the account quota, pods running',
            width: 8,
            left: [
              fargateVcpus,
              new cloudwatch.MathExpression({
                expression: 'SERVICE_QUOTA(vcpus)',
                usingMetrics: { vcpus: fargateVcpus },
                label: 'Fargate vCPU quota',
                period: Duration.minutes(1),
              }),
            ],
            right: [
              // Container Insights (enabled on the cluster)
              new cloudwatch.Metric({
                namespace: 'ECS/ContainerInsights',
                metricName: 'TaskCount',
                dimensionsMap: { ClusterName: props.cluster.clusterName },
                period: Duration.minutes(1),
                statistic: cloudwatch.Stats.MAXIMUM,
                label: 'pods running (cluster)',
              }),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'HTTP API: 4xx / 5xx and latency',
            width: 8,
            left: [
              props.httpApi.metricClientError({ label: '4xx', period: FIVE_MINUTES }),
              props.httpApi.metricServerError({ label: '5xx', period: FIVE_MINUTES }),
            ],
            right: [
              props.httpApi.metricLatency({
                statistic: cloudwatch.Stats.p(99),
                label: 'latency p99 (ms)',
                period: FIVE_MINUTES,
              }),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Spend per hour (USD) and cost per run',
            width: 8,
            left: [runMetric('SpendUsd', {}, { period: Duration.hours(1), label: 'spend per hour' })],
            right: [
              runMetric('RunCostUsd', {}, { statistic: cloudwatch.Stats.p(50), label: 'run cost p50' }),
              runMetric('RunCostUsd', {}, { statistic: cloudwatch.Stats.p(99), label: 'run cost p99' }),
            ],
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Tokens by model (ended runs)',
            width: 12,
            left: [
              new cloudwatch.MathExpression({
                expression: `SEARCH('{${FUNCTION_DEFAULT_ENVIRONMENT.POWERTOOLS_METRICS_NAMESPACE},Model,service} MetricName="TokensUsed"', 'Sum', 3600)`,
                label: '',
                period: Duration.hours(1),
              }),
            ],
          }),
          new cloudwatch.LogQueryWidget({
            title: 'Spend per account per hour (top 20, USD)',
            width: 12,
            logGroupNames: [props.functions.runFeed.logGroup.logGroupName],
            view: cloudwatch.LogQueryVisualizationType.TABLE,
            queryLines: [
              'fields @timestamp, accountId, SpendUsd',
              'filter ispresent(SpendUsd)',
              'stats sum(SpendUsd) as spendUsd by accountId, bin(1h) as hour',
              'sort spendUsd desc',
              'limit 20',
            ],
          }),
        ],
      ],
    });
  }
}
