import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { DEAD_LETTER_QUEUE, FUNCTIONS, QUEUE, TABLE } from '../../shared/manifest.js';

export interface StatefulStackProps extends StackProps {
  /** an address that receives the alarms by email (it must confirm the subscription) */
  alarmEmail?: string;
}

/**
 * What holds data and outlives a redeploy of the code: the runs table, the runs queue and its DLQ,
 * the pods' log group, and the topic every alarm notifies.
 */
export class StatefulStack extends Stack {
  /** with its stream (TABLE.stream), whose ARN the stateless stack reads as `props.table.tableStreamArn` */
  public readonly table: dynamodb.Table;
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly podLogGroup: logs.LogGroup;
  /** the whole text of steps too large for their record, a stream per step */
  public readonly stepContentLogGroup: logs.LogGroup;
  public readonly alarmTopic: sns.Topic;
  public readonly deadLetterAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: StatefulStackProps = {}) {
    super(scope, id, props);

    this.table = new dynamodb.Table(this, 'RunsTable', {
      partitionKey: { name: TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TABLE.timeToLiveAttribute,
      stream: dynamodb.StreamViewType[TABLE.stream],
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const index of TABLE.globalSecondaryIndexes) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.indexName,
        partitionKey: { name: index.partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: index.sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.INCLUDE,
        nonKeyAttributes: [...TABLE.projectedAttributes],
      });
    }

    this.deadLetterQueue = new sqs.Queue(this, 'RunsDeadLetterQueue', {
      retentionPeriod: Duration.days(DEAD_LETTER_QUEUE.retentionDays),
      // Lambda's SQS event source needs a visibility timeout of at least the function's timeout;
      // six times it is AWS's advice, so a throttled batch is not delivered twice.
      visibilityTimeout: Duration.seconds(FUNCTIONS.deadLetter.timeoutSeconds * 6),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'RunsQueue', {
      visibilityTimeout: Duration.seconds(QUEUE.visibilityTimeoutSeconds),
      retentionPeriod: Duration.days(QUEUE.retentionDays),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: QUEUE.maxReceiveCount },
    });

    this.podLogGroup = new logs.LogGroup(this, 'PodLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Part of the step timeline, which outlives the raw sandbox output.
    this.stepContentLogGroup = new logs.LogGroup(this, 'StepContentLogs', {
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.alarmTopic = this.createAlarmTopic(props.alarmEmail);

    this.deadLetterAlarm = new cloudwatch.Alarm(this, 'DeadLetterDepthAlarm', {
      alarmDescription:
        'Run messages reached the dead-letter queue: their runs are DEAD_LETTER. First: read the story (saved Logs Insights query) of a run the messages name, fix what kept start-run from starting it, then POST /v1/runs/{runId}/redrive.',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.deadLetterAlarm.addAlarmAction(new cloudwatchActions.SnsAction(this.alarmTopic));

    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'QueueUrl', { value: this.queue.queueUrl });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn });
  }

  /**
   * CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key (its key policy does
   * not admit CloudWatch), so the topic has its own key that does.
   */
  private createAlarmTopic(alarmEmail: string | undefined): sns.Topic {
    const cloudwatchPrincipal = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
    const fromThisAccountsAlarms = {
      StringEquals: { 'aws:SourceAccount': this.account },
      ArnLike: {
        'aws:SourceArn': this.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*' }),
      },
    };

    const key = new kms.Key(this, 'AlarmTopicKey', {
      description: 'Encrypts the alarm topic; CloudWatch alarms may use it to publish',
      enableKeyRotation: true,
    });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [cloudwatchPrincipal],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        // In a key policy '*' means this key itself; the conditions narrow it to this account's alarms.
        resources: ['*'],
        conditions: fromThisAccountsAlarms,
      }),
    );

    const topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'Execution runs alarms',
      masterKey: key,
      enforceSSL: true,
    });
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [cloudwatchPrincipal],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: fromThisAccountsAlarms,
      }),
    );
    if (alarmEmail) topic.addSubscription(new subscriptions.EmailSubscription(alarmEmail));
    return topic;
  }
}
