import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeTasksCommand, ECSClient } from '@aws-sdk/client-ecs';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { importJWK, type JWK, SignJWT } from 'jose';
import { podLogText } from '../../../shared/schemas/pod-log.js';
import { endpoints } from './api.js';

/** SDK clients pointed at the local cloud, the way a person inspects it with --endpoint-url. */
const config = () => ({
  region: endpoints().region,
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
});

export const cloudwatch = () =>
  new CloudWatchLogsClient({
    region: endpoints().region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    endpoint: endpoints().services.logs,
  });

/**
 * Every message of the run's pod log stream, read forward from its head straight from CloudWatch Logs,
 * as the run's log page shows it (without the run id each line begins with).
 */
export const wholeStream = async (logStreamName: string, runId: string): Promise<string[]> => {
  const client = cloudwatch();
  const messages: string[] = [];
  let token: string | undefined;
  for (;;) {
    const page = await client.send(
      new GetLogEventsCommand({
        logGroupName: endpoints().podLogGroup,
        logStreamName,
        startFromHead: true,
        nextToken: token,
      }),
    );
    messages.push(...(page.events ?? []).map((e) => podLogText(runId, e.message ?? '')));
    if (page.nextForwardToken === token) return messages;
    token = page.nextForwardToken;
  }
};

export const sqs = () => new SQSClient({ ...config(), endpoint: endpoints().services.sqs });
export const sfn = () => new SFNClient({ ...config(), endpoint: endpoints().services.stepfunctions });
export const ecs = () => new ECSClient({ ...config(), endpoint: endpoints().services.ecs });
export const secretsManager = () =>
  new SecretsManagerClient({ ...config(), endpoint: endpoints().services.secretsmanager });
export const dynamodb = () => new DynamoDBClient({ ...config(), endpoint: endpoints().services.dynamodb });
/** The same, with the document client's plain values. */
export const dynamo = () => DynamoDBDocumentClient.from(dynamodb());

export const executionsOf = async (runId: string) => {
  const out = await sfn().send(
    new ListExecutionsCommand({ stateMachineArn: endpoints().stateMachineArn, maxResults: 1000 }),
  );
  return (out.executions ?? []).filter((e) => e.name?.startsWith(runId));
};

export const taskStatus = async (taskArn: string) => {
  const out = await ecs().send(
    new DescribeTasksCommand({ cluster: endpoints().clusterArn, tasks: [taskArn] }),
  );
  return out.tasks?.[0]?.lastStatus;
};

/** Wait until the run's sandbox task has stopped (its process is gone). */
export const waitForTaskStopped = async (taskArn: string, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await taskStatus(taskArn);
    if (status === 'STOPPED') return;
    if (Date.now() > deadline) throw new Error(`task ${taskArn} is still ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

export const ecsControl = (route: string, body: unknown) =>
  fetch(`${endpoints().services.ecs}${route}`, { method: 'POST', body: JSON.stringify(body) });

export const sfnControl = (route: string, body: unknown) =>
  fetch(`${endpoints().services.stepfunctions}${route}`, { method: 'POST', body: JSON.stringify(body) });

/** A token from the local issuer for any user of any tenant; `expiresAt` as jose takes it (a past one for expired tokens). */
export const tokenFor = async (
  claims: {
    sub: string;
    accountId: string;
    accountRole?: 'admin' | 'member';
    email?: string;
  },
  expiresAt: number | string = '1h',
) => {
  const e = endpoints();
  const jwk = JSON.parse(await readFile(e.devIssuerKeyPath, 'utf8')) as JWK & { privateJwk?: JWK };
  const key = await importJWK(jwk.privateJwk ?? jwk, 'RS256');
  return new SignJWT({
    'custom:accountId': claims.accountId,
    'custom:accountRole': claims.accountRole ?? 'member',
    email: claims.email,
  })
    .setProtectedHeader({ alg: 'RS256', kid: (jwk.privateJwk ?? jwk).kid })
    .setSubject(claims.sub)
    .setIssuer(e.issuer)
    .setAudience(e.audience)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(key);
};

/**
 * For a test that plays the pod: a run-scoped token of its own, whose hash replaces the pod's on the
 * run record (the pod spent its launch code already; its own token stops working).
 */
export const takeOverPod = async (runId: string): Promise<string> => {
  const token = `${runId}.${randomBytes(32).toString('base64url')}`;
  await dynamo().send(
    new UpdateCommand({
      TableName: endpoints().tableName,
      Key: { pk: `RUN#${runId}`, sk: 'RUN' },
      UpdateExpression: 'SET agentTokenHash = :hash',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':hash': createHash('sha256').update(token).digest('hex') },
    }),
  );
  return token;
};

/** The run's ledger items, as someone inspecting the table reads them: one per event batch, and the settlement. */
export const ledgerItemsOf = async (runId: string) =>
  (
    await dynamo().send(
      new QueryCommand({
        TableName: endpoints().tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :usage)',
        ExpressionAttributeValues: { ':pk': `RUN#${runId}`, ':usage': 'USAGE#' },
        ConsistentRead: true,
      }),
    )
  ).Items ?? [];

/** Every priced line of the run's ledger: each batch item's lines, and the settlement. */
export const ledgerLinesOf = async (runId: string): Promise<Record<string, unknown>[]> =>
  (await ledgerItemsOf(runId)).flatMap((item) =>
    Array.isArray(item.lines) ? (item.lines as Record<string, unknown>[]) : [item],
  );
