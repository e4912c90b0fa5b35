import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { makeHandler as makeApi } from '../../functions/api.js';
import { makeHandler as makeApprovals } from '../../functions/approvals.js';
import { makeHandler as makeRequestApproval } from '../../functions/request-approval.js';
import { DynamoApprovalStore } from '../../shared/adapters/dynamo-approvals.js';
import { toRunItem } from '../../shared/adapters/dynamo-run-item.js';
import { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import { signApprovalLink } from '../../shared/domain/approval.js';
import { validatedHandler } from '../../shared/lambda.js';
import { logger, runKeysOf } from '../../shared/observability.js';
import type { ApprovalStore, DirectoryRepository, TaskSignals } from '../../shared/ports.js';
import * as z from '../../shared/zod.js';
import { httpEvent, lambdaContext, projectFactory, runFactory } from '../support/factories.js';

// The handler modules build their production composition root at import; give it what it reads.
await vi.hoisted(() => import('../support/handler-environment.js'));

describe('runKeysOf', () => {
  it.each([
    [
      'a state machine task’s input',
      { runId: 'run_1', accountId: 'acct-1' },
      { runId: 'run_1', accountId: 'acct-1' },
    ],
    ['an HTTP route’s path', { pathParameters: { runId: 'run_1' } }, { runId: 'run_1' }],
    ['an ECS task state change', { detail: { startedBy: 'run_1', taskArn: 't' } }, { runId: 'run_1' }],
    [
      'a redriven execution’s status change',
      { detail: { name: 'run_1-r2', status: 'FAILED' } },
      { runId: 'run_1' },
    ],
    [
      'an execution’s status change with its input',
      { detail: { name: 'run_1', input: '{"runId":"run_1","accountId":"acct-1"}' } },
      { runId: 'run_1', accountId: 'acct-1' },
    ],
    ['a batch of several runs', { Records: [{ body: '{"runId":"run_1"}' }] }, {}],
  ])('finds the run of %s', (_, event, keys) => {
    expect(runKeysOf(event)).toEqual(keys);
  });
});

const SECRET = 's'.repeat(32);

describe('the handlers’ log lines', () => {
  const dynamo = mockClient(DynamoDBDocumentClient);
  const runs = new DynamoRunStore(DynamoDBDocumentClient.from(new DynamoDBClient({})), 'runs');
  let lines: Record<string, unknown>[];
  let level: ReturnType<typeof logger.getLevelName>;
  beforeEach(() => {
    dynamo.reset();
    lines = [];
    // warnings and errors go to stderr
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk) => {
        lines.push(
          ...String(chunk)
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line)),
        );
        return true;
      });
    }
    level = logger.getLevelName();
    logger.setLogLevel('INFO');
  });
  afterEach(() => {
    logger.setLogLevel(level);
    vi.restoreAllMocks();
  });

  /** A handler that writes a line, after reading run_1 when it is told to. */
  const working = validatedHandler(z.looseObject({ read: z.optional(z.boolean()) }), async ({ read }) => {
    if (read) await runs.get('run_1');
    logger.info('working');
    return null;
  });

  it('carry the run and its account during the invocation about it, and not after', async () => {
    await working({ runId: 'run_1', accountId: 'acct-1' }, lambdaContext());
    await working({}, lambdaContext());

    expect(lines).toEqual([
      expect.objectContaining({ message: 'working', runId: 'run_1', accountId: 'acct-1' }),
      expect.not.objectContaining({ runId: 'run_1' }),
    ]);
  });

  it('carry the account of the run a state machine task reads, its payload naming only the run, and not after', async () => {
    const run = runFactory({
      runId: 'run_1',
      accountId: 'acct-7',
      status: 'AWAITING_APPROVAL',
      pendingApproval: { seq: 3, name: 'deploy', summary: 'ready', requestedAt: '2026-01-01T00:00:00.000Z' },
    });
    dynamo.on(GetCommand).resolves({ Item: toRunItem(run) });
    dynamo.on(UpdateCommand).resolves({ Attributes: toRunItem(run) });
    // no project admin to mail: the task warns
    const requestApproval = makeRequestApproval(
      {
        runs,
        directory: {
          getProject: async () => projectFactory({ accountId: 'acct-7' }),
          getPod: async () => undefined,
        } as unknown as DirectoryRepository,
        approvals: {
          put: async () => undefined,
          checkpointDetails: async () => ({ truncated: false }),
        } as unknown as ApprovalStore,
        signals: {} as TaskSignals,
        clock: { now: () => new Date('2026-01-01T00:01:00.000Z') },
        notifier: { send: vi.fn() },
      },
      { secret: async () => 's'.repeat(32), publicApiUrl: 'https://api.example.com' },
    );

    const payload = { checkpoint: { seq: 3, name: 'deploy' }, windowSeconds: 3600, maxDurationSeconds: 7200 };
    await requestApproval({ runId: 'run_1', taskToken: 'token', ...payload }, lambdaContext());
    await working({ runId: 'run_2' }, lambdaContext());

    expect(lines).toEqual([
      expect.objectContaining({ level: 'WARN', runId: 'run_1', accountId: 'acct-7' }),
      expect.not.objectContaining({ accountId: expect.anything() }),
    ]);
  });

  it('do not carry the account of a run read by an invocation about no single run (one of a batch)', async () => {
    dynamo.on(GetCommand).resolves({ Item: toRunItem(runFactory({ runId: 'run_1', accountId: 'acct-7' })) });

    await working({ read: true }, lambdaContext());

    expect(lines).toEqual([expect.not.objectContaining({ accountId: expect.anything() })]);
  });

  it('of the HTTP API carry the account of the caller’s token, request by request', async () => {
    const api = makeApi(
      {
        runs: {
          get: async () => {
            throw new Error('the table cannot be read');
          },
        },
        directory: { getAccount: async () => undefined },
        requests: { count: async () => 1 },
        clock: { now: () => new Date() },
      } as unknown as Parameters<typeof makeApi>[0],
      { tenant: 'custom:accountId', accountRole: 'custom:accountRole', webSocketUrl: 'wss://ws.example.com' },
    );
    const { runId } = runFactory();
    const request = (accountId: string) =>
      httpEvent('GET /v1/runs/{runId}', {
        pathParameters: { runId },
        claims: { sub: 'alice', 'custom:accountId': accountId },
      });

    expect((await api(request('acct-1'), lambdaContext())).statusCode).toBe(500);
    expect((await api(request('acct-2'), lambdaContext())).statusCode).toBe(500);
    await working({}, lambdaContext());

    expect(lines).toEqual([
      expect.objectContaining({ message: 'request failed', runId, accountId: 'acct-1' }),
      expect.objectContaining({ message: 'request failed', runId, accountId: 'acct-2' }),
      expect.not.objectContaining({ accountId: expect.anything() }),
    ]);
  });

  it('of an approval link’s page carry the approval’s run and account once it is read', async () => {
    const approvalId = 'AbCdEfGhIjKlMnOpQrStUvWx';
    dynamo.on(GetCommand).resolves({
      Item: {
        pk: `APPROVAL#${approvalId}`,
        sk: 'APPROVAL',
        approvalId,
        runId: 'run_9',
        accountId: 'acct-9',
        projectId: 'proj-1',
        approvalExpiresAt: '2026-01-01T01:00:00.000Z',
      },
    });
    const approvals = makeApprovals(
      {
        approvals: new DynamoApprovalStore(DynamoDBDocumentClient.from(new DynamoDBClient({})), 'runs'),
        directory: {
          getProject: async () => {
            throw new Error('the table cannot be read');
          },
        },
      } as unknown as Parameters<typeof makeApprovals>[0],
      {
        secret: async () => SECRET,
        claims: { tenant: 'custom:accountId', accountRole: 'custom:accountRole' },
      },
    );
    const page = httpEvent('GET /approve/{approvalId}', {
      pathParameters: { approvalId },
      query: { for: 'alice', sig: signApprovalLink(SECRET, approvalId, 'alice') },
    });
    delete (page.requestContext as { authorizer?: unknown }).authorizer;

    expect((await approvals(page, lambdaContext())).statusCode).toBe(500);
    await working({}, lambdaContext());

    expect(lines).toEqual([
      expect.objectContaining({ message: 'approval page failed', runId: 'run_9', accountId: 'acct-9' }),
      expect.not.objectContaining({ runId: expect.anything() }),
    ]);
  });
});
