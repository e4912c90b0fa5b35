import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Approval, DecisionRecord } from '../domain/approval.js';
import { appendRunOfApproval } from '../observability.js';
import type { ApprovalStore } from '../ports.js';
import { compact, conditionFailedItem, Expression, isConditionFailed, keys, Update } from './dynamo-keys.js';

/*
 * Approval requests in the runs table, one item each, found by the opaque id the links carry:
 *
 *   APPROVAL#<approvalId>  APPROVAL   the approval, `taskToken` (never returned), `decision` once
 *                                     decided (written once, conditionally), `approvalExpiresAt` (ISO)
 *                                     and `expiresAt`, the table's TTL, a while after it, so an old link
 *                                     still shows what happened before the item goes.
 */

/** How long an approval stays readable after its window closed. */
const RETAIN_AFTER_EXPIRY_SECONDS = 30 * 86_400;

const approvalKey = (approvalId: string) => ({ pk: `APPROVAL#${approvalId}`, sk: 'APPROVAL' });

const toItem = (approval: Approval, taskToken: string): Record<string, unknown> => {
  const { expiresAt, ...rest } = approval;
  return compact({
    ...rest,
    ...approvalKey(approval.approvalId),
    taskToken,
    approvalExpiresAt: expiresAt,
    expiresAt: Math.floor(Date.parse(expiresAt) / 1000) + RETAIN_AFTER_EXPIRY_SECONDS,
  });
};

const fromItem = (item: Record<string, unknown>): Approval => {
  const { pk: _pk, sk: _sk, taskToken: _token, expiresAt: _ttl, approvalExpiresAt, ...rest } = item;
  return { ...rest, expiresAt: String(approvalExpiresAt) } as Approval;
};

export class DynamoApprovalStore implements ApprovalStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async put(approval: Approval, taskToken: string): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: toItem(approval, taskToken),
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async get(approvalId: string): Promise<Approval | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: approvalKey(approvalId), ConsistentRead: true }),
    );
    if (!out.Item) return undefined;
    const approval = fromItem(out.Item);
    appendRunOfApproval(approval);
    return approval;
  }

  async getTaskToken(approvalId: string): Promise<string | undefined> {
    const projection = new Expression();
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: approvalKey(approvalId),
        ConsistentRead: true,
        ProjectionExpression: projection.name('taskToken'),
        ...projection.attributes(),
      }),
    );
    const token = out.Item?.taskToken;
    return typeof token === 'string' ? token : undefined;
  }

  async recordDecision(approvalId: string, decision: DecisionRecord, now: Date) {
    const update = new Update().set('decision', compact(decision));
    const condition = [
      `attribute_exists(${update.name('pk')})`,
      `attribute_not_exists(${update.name('decision')})`,
      `${update.name('approvalExpiresAt')} > ${update.value(now.toISOString())}`,
    ].join(' AND ');
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: approvalKey(approvalId),
          UpdateExpression: update.expression(),
          ConditionExpression: condition,
          ...update.attributes(),
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { recorded: true as const, approval: fromItem(out.Attributes ?? {}) };
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      // The refusal carries the item in wire form; a consistent read gives it in plain form.
      return {
        recorded: false as const,
        approval: conditionFailedItem(err) ? await this.get(approvalId) : undefined,
      };
    }
  }

  async markNotApplied(approvalId: string): Promise<void> {
    const expression = new Expression();
    const decision = expression.name('decision');
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: approvalKey(approvalId),
        UpdateExpression: `SET ${decision}.${expression.name('applied')} = ${expression.value(false)}`,
        ConditionExpression: `attribute_exists(${decision})`,
        ...expression.attributes(),
      }),
    );
  }

  async checkpointDetails(runId: string, seq: number): Promise<{ details?: string; truncated: boolean }> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.event(runId, seq), ConsistentRead: true }),
    );
    const details = out.Item?.details;
    return {
      details: typeof details === 'string' ? details : undefined,
      truncated: out.Item?.truncated === true,
    };
  }
}
