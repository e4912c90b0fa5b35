import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2WithJWTAuthorizer, Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { newRunId } from '../../shared/domain/ids.js';
import { type GitHubIssueRef, type Run, ZERO_COST } from '../../shared/domain/run.js';
import type { Pod, Project } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, RunConfigSnapshot } from '../../shared/ports.js';

/** Event and record factories for handler tests. */

export const lambdaContext = (): Context =>
  ({
    functionName: 'test',
    awsRequestId: 'req-1',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:test',
    memoryLimitInMB: '256',
    getRemainingTimeInMillis: () => 10_000,
  }) as unknown as Context;

export const sqsRecordFactory = (body: unknown, messageId = `m-${Math.random()}`): SQSRecord => ({
  messageId,
  receiptHandle: `rh-${messageId}`,
  body: typeof body === 'string' ? body : JSON.stringify(body),
  attributes: {
    ApproximateReceiveCount: '1',
    SentTimestamp: '0',
    SenderId: 'test',
    ApproximateFirstReceiveTimestamp: '0',
  },
  messageAttributes: {},
  md5OfBody: '',
  eventSource: 'aws:sqs',
  eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:runs',
  awsRegion: 'us-east-1',
});

export const sqsEvent = (...records: SQSRecord[]): SQSEvent => ({ Records: records });

export const httpEvent = (
  routeKey: string,
  options: {
    pathParameters?: Record<string, string>;
    body?: string;
    headers?: Record<string, string>;
    query?: Record<string, string>;
    claims?: Record<string, string>;
  } = {},
): APIGatewayProxyEventV2WithJWTAuthorizer =>
  ({
    version: '2.0',
    routeKey,
    rawPath: routeKey.split(' ')[1],
    rawQueryString: '',
    headers: options.headers ?? {},
    queryStringParameters: options.query,
    pathParameters: options.pathParameters,
    body: options.body,
    isBase64Encoded: false,
    requestContext: {
      routeKey,
      http: { method: routeKey.split(' ')[0], path: routeKey.split(' ')[1], sourceIp: '198.51.100.7' },
      authorizer: {
        jwt: {
          claims: options.claims ?? {
            sub: 'alice',
            'custom:accountId': 'acct-1',
            'custom:accountRole': 'member',
          },
          scopes: [],
        },
      },
    },
  }) as unknown as APIGatewayProxyEventV2WithJWTAuthorizer;

export const runFactory = (overrides: Partial<Run> = {}): Run => ({
  runId: 'run_01J0000000000000000000000A',
  accountId: 'acct-1',
  projectId: 'proj-1',
  itemId: 'ITEM-1',
  podId: 'pod-1',
  mode: 'autopilot',
  status: 'QUEUED',
  history: [{ status: 'QUEUED', at: '2026-01-01T00:00:00.000Z' }],
  source: 'api',
  attribution: 'alice',
  repos: [],
  usage: {},
  cost: { ...ZERO_COST },
  artifacts: [],
  attempt: 1,
  redriveCount: 0,
  lastSeq: 0,
  version: 1,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

export const projectFactory = (overrides: Partial<Project> = {}): Project => ({
  accountId: 'acct-1',
  projectId: 'proj-1',
  name: 'Project',
  repos: ['https://github.com/example/app'],
  members: [{ userId: 'alice', role: 'member' }],
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

/** The directory reads a run's readers are checked with: these projects (by default alice's proj-1), and nothing else. */
export const directoryOf = (...projects: Project[]): DirectoryRepository => {
  const all = projects.length > 0 ? projects : [projectFactory()];
  return {
    getProject: async (accountId: string, projectId: string) =>
      all.find((p) => p.accountId === accountId && p.projectId === projectId),
    listProjects: async (accountId: string) => all.filter((p) => p.accountId === accountId),
  } as unknown as DirectoryRepository;
};

/**
 * A run of its own for tests that share a table: a new run id and account, in `status` (RUNNING by
 * default) since now, on pod `pod-a`.
 */
export const ownRunFactory = (overrides: Partial<Run> = {}): Run => {
  const now = new Date();
  const status = overrides.status ?? 'RUNNING';
  return runFactory({
    runId: newRunId(now.getTime()),
    accountId: `acct-${randomUUID().slice(0, 8)}`,
    podId: 'pod-a',
    status,
    history: [{ status, at: now.toISOString() }],
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    ...overrides,
  });
};

export const podFactory = (overrides: Partial<Pod> = {}): Pod => ({
  accountId: 'acct-1',
  podId: 'pod-1',
  name: 'Pod',
  cpu: 1024,
  memoryMiB: 2048,
  agent: { kind: 'demo' },
  hooks: {},
  checkpoints: ['plan', 'commit'],
  env: {},
  secrets: {},
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 86_400,
  runBudgetMicroUsd: 0,
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...overrides,
});

/** The config a run is frozen with at dispatch: on `podFactory()`'s pod unless told otherwise. */
export const snapshotFactory = (overrides: Partial<RunConfigSnapshot> = {}): RunConfigSnapshot => ({
  prompt: 'p',
  repos: [],
  dispatcher: { userId: 'alice' },
  pod: podFactory(),
  request: {},
  ...overrides,
});

/** The issue a run was started from, on the stand-in's demo repository. */
export const gitHubIssueFactory = (overrides: Partial<GitHubIssueRef> = {}): GitHubIssueRef => ({
  repo: 'demo/demo-app',
  fullName: 'demo/demo-app',
  number: 12,
  url: 'https://github.com/demo/demo-app/issues/12',
  calledBy: 'octocat',
  ...overrides,
});
