import { randomUUID } from 'node:crypto';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoApprovalStore } from '../../shared/adapters/dynamo-approvals.js';
import { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import type { Approval, DecisionRecord } from '../../shared/domain/approval.js';
import { resume, stop } from '../../shared/domain/commands.js';
import { newRunId } from '../../shared/domain/ids.js';
import type { Run, Transition } from '../../shared/domain/run.js';
import { useTestTable } from '../support/dynamodb-local.js';
import { runFactory, snapshotFactory } from '../support/factories.js';
import { recordBatch } from '../support/record-batch.js';

const table = useTestTable();
let store: DynamoApprovalStore;
let runs: DynamoRunStore;
beforeAll(() => {
  store = new DynamoApprovalStore(table.doc, table.tableName);
  runs = new DynamoRunStore(table.doc, table.tableName);
});

const NOW = new Date('2026-03-01T12:00:00.000Z');

const approvalFor = (runId: string, overrides: Partial<Approval> = {}): Approval => ({
  approvalId: `appr_${randomUUID().replaceAll('-', '')}`,
  runId,
  accountId: 'acct-1',
  projectId: 'proj-1',
  itemId: 'ITEM-1',
  podId: 'pod-1',
  checkpoint: { seq: 3, name: 'plan', summary: 'Plan: 2 steps', details: 'step one\nstep two' },
  requestedAt: '2026-03-01T11:59:00.000Z',
  expiresAt: '2026-03-01T13:00:00.000Z',
  podSecondsLeft: 3000,
  ...overrides,
});

const decision = (by: string, value: 'approved' | 'cancelled' = 'approved'): DecisionRecord => ({
  decision: value,
  by,
  via: 'email_link',
  at: NOW.toISOString(),
});

/** A supervised run paused at checkpoint 3. */
const pausedRun = async () => {
  const run = runFactory({
    runId: newRunId(),
    mode: 'supervised',
    status: 'AWAITING_APPROVAL',
    pendingApproval: { seq: 3, name: 'plan', summary: 'Plan: 2 steps', requestedAt: 't0' },
  });
  await runs.create(run, snapshotFactory());
  return run.runId;
};
const current = async (runId: string) => (await runs.get(runId)) as Run;
const tokenOf = async (runId: string) => (await runs.getWithSecrets(runId))?.secrets.podTaskToken;

describe('DynamoApprovalStore', () => {
  it('keeps the task token apart from the approval it returns, and a TTL past the window', async () => {
    const approval = approvalFor(newRunId());
    await store.put(approval, 'task-token');
    expect(await store.get(approval.approvalId)).toEqual(approval);
    expect(await store.getTaskToken(approval.approvalId)).toBe('task-token');
    const { Item } = await table.doc.send(
      new GetCommand({
        TableName: table.tableName,
        Key: { pk: `APPROVAL#${approval.approvalId}`, sk: 'APPROVAL' },
      }),
    );
    expect(Item?.expiresAt).toBeGreaterThan(Date.parse(approval.expiresAt) / 1000);
    expect(await store.get('appr_missing_0000000000')).toBeUndefined();
  });

  it('records the first decision only, and hands later ones the decision on record', async () => {
    const approval = approvalFor(newRunId());
    await store.put(approval, 'task-token');
    const first = await store.recordDecision(approval.approvalId, decision('alice'), NOW);
    expect(first).toEqual({ recorded: true, approval: { ...approval, decision: decision('alice') } });
    const second = await store.recordDecision(approval.approvalId, decision('bob', 'cancelled'), NOW);
    expect(second).toEqual({ recorded: false, approval: { ...approval, decision: decision('alice') } });
  });

  it('lets exactly one of 20 concurrent decisions through', async () => {
    const approval = approvalFor(newRunId());
    await store.put(approval, 'task-token');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.recordDecision(approval.approvalId, decision(`user-${i}`), NOW),
      ),
    );
    expect(results.filter((r) => r.recorded)).toHaveLength(1);
    const winner = results.find((r) => r.recorded)?.approval.decision;
    for (const r of results) expect(r.approval?.decision).toEqual(winner);
  });

  it('records nothing once the window has closed, or for an approval that does not exist', async () => {
    const approval = approvalFor(newRunId());
    await store.put(approval, 'task-token');
    const late = await store.recordDecision(
      approval.approvalId,
      decision('alice'),
      new Date(approval.expiresAt),
    );
    expect(late).toEqual({ recorded: false, approval });
    expect(await store.recordDecision('appr_missing_0000000000', decision('alice'), NOW)).toEqual({
      recorded: false,
      approval: undefined,
    });
  });

  it('marks a decision that came too late as not applied', async () => {
    const approval = approvalFor(newRunId());
    await store.put(approval, 'task-token');
    await store.recordDecision(approval.approvalId, decision('alice'), NOW);
    await store.markNotApplied(approval.approvalId);
    expect((await store.get(approval.approvalId))?.decision).toEqual({
      ...decision('alice'),
      applied: false,
    });
  });

  it('reads the full details of the checkpoint event the run recorded', async () => {
    const runId = await pausedRun();
    await recordBatch(runs, runId, [
      { type: 'checkpoint', seq: 3, at: NOW.toISOString(), name: 'plan', summary: 's', details: 'all of it' },
    ]);
    expect(await store.checkpointDetails(runId, 3)).toEqual({ details: 'all of it', truncated: false });
    expect(await store.checkpointDetails(runId, 4)).toEqual({ details: undefined, truncated: false });
  });
});

describe('the approval on the run record', () => {
  it('parks the approval token as the run wait only while the run waits at that checkpoint', async () => {
    const runId = await pausedRun();
    const pending = {
      seq: 3,
      name: 'plan',
      summary: 'Plan: 2 steps',
      requestedAt: 't0',
      approvalId: 'a1',
      expiresAt: 't9',
    };
    expect(await runs.parkApproval(runId, { ...pending, seq: 4 }, 'approval-token')).toBeUndefined();
    const parked = await runs.parkApproval(runId, pending, 'approval-token');
    expect(parked?.pendingApproval).toEqual(pending);
    expect(parked).not.toHaveProperty('podTaskToken');
    expect(await tokenOf(runId)).toBe('approval-token');

    const paused = await current(runId);
    await runs.apply(paused, stop(paused, 'alice', NOW));
    expect(await runs.parkApproval(runId, pending, 'approval-token-2')).toBeUndefined();
    expect(await tokenOf(runId)).toBe('approval-token');
  });

  it('moves a pending approval into the history once, for its own checkpoint only', async () => {
    const runId = await pausedRun();
    const entry = {
      seq: 3,
      name: 'plan',
      summary: 's',
      requestedAt: 't0',
      decision: 'approved' as const,
      at: 't1',
    };
    const paused = await current(runId);
    expect(resume(paused, { ...entry, seq: 9 }, NOW)).toBeUndefined();
    const resumed = resume(paused, entry, NOW) as Transition;
    expect((await runs.apply(paused, { ...resumed, closeApproval: { ...entry, seq: 9 } })).applied).toBe(
      false,
    );
    expect((await runs.apply(paused, resumed)).applied).toBe(true);
    expect((await runs.apply(paused, resumed)).applied).toBe(false);
    const run = await current(runId);
    expect(run.status).toBe('RUNNING');
    expect(run.pendingApproval).toBeUndefined();
    expect(run.approvals).toEqual([entry]);
  });
});
