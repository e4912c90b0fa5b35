import { type DynamoDBDocumentClient, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { StepEvent } from '../domain/agent-batch.js';
import { STEP_CONTENT_INLINE_BYTES, type Step, type StepContentRef, type StepPage } from '../domain/steps.js';
import type { AgentEvent, Timeline } from '../ports.js';
import { compact, Expression, keys } from './dynamo-keys.js';

/*
 * The step timeline and the other per-seq records of a run, in the run's partition:
 *
 *   RUN#<runId>  STEP#<seq:10>  an agent step; content above 32 KB is cut (`truncated`, `contentBytes`)
 *                               and `fullContent` points at the whole text, kept in CloudWatch Logs.
 *   RUN#<runId>  EVT#<seq:10>   a checkpoint (with its details, up to 96 KB), an artifact or a result.
 *
 * Both are written by the run store as part of a batch, before the batch's write to the run records
 * their seqs: a seq the run has recorded always has its item.
 */

const STEP_ARGS_LIMIT = 8 * 1024;
const CHECKPOINT_DETAILS_LIMIT = 96 * 1024;

export const truncateUtf8 = (
  text: string,
  limitBytes: number,
): { text: string; bytes: number; truncated: boolean } => {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= limitBytes) return { text, bytes, truncated: false };
  // A cut can split a character; the decoder marks the broken tail with U+FFFD, which goes.
  const cut = Buffer.from(text, 'utf8')
    .subarray(0, limitBytes)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  return { text: cut, bytes, truncated: true };
};

export const stepItem = (
  runId: string,
  e: StepEvent,
  fullContent: StepContentRef | undefined,
  costMicroUsd: number | undefined,
): Record<string, unknown> => {
  const content = truncateUtf8(e.content, STEP_CONTENT_INLINE_BYTES);
  // JSON text, not a map: tool arguments are arbitrary and may nest deeper than DynamoDB allows.
  const args = e.args === undefined ? undefined : truncateUtf8(JSON.stringify(e.args), STEP_ARGS_LIMIT);
  return compact({
    ...keys.step(runId, e.seq),
    runId,
    seq: e.seq,
    at: e.at,
    kind: e.kind,
    content: content.text,
    tool: e.tool,
    model: e.model,
    usage: e.usage,
    args: args?.text,
    costMicroUsd,
    ...(content.truncated ? { truncated: true, contentBytes: content.bytes, fullContent } : {}),
    ...(args?.truncated ? { argsTruncated: true, argsBytes: args.bytes } : {}),
  });
};

export const eventItem = (runId: string, e: AgentEvent): Record<string, unknown> => {
  const fields: Record<string, unknown> = { ...e };
  if (e.type === 'checkpoint' && e.details !== undefined) {
    const details = truncateUtf8(e.details, CHECKPOINT_DETAILS_LIMIT);
    fields.details = details.text;
    if (details.truncated) Object.assign(fields, { truncated: true, detailsBytes: details.bytes });
  }
  return compact({ ...keys.event(runId, e.seq), runId, ...fields });
};

/** The item without its keys; `costMicroUsd`, once steps are priced, comes along. */
const fromStepItem = (item: Record<string, unknown>): Step => {
  const { pk: _pk, sk: _sk, runId: _runId, ...step } = item;
  return step as unknown as Step;
};

export class DynamoTimeline implements Timeline {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async listSteps(
    runId: string,
    query: { afterSeq: number; throughSeq: number; limit: number },
  ): Promise<StepPage> {
    if (query.limit <= 0 || query.throughSeq <= query.afterSeq) return { items: [], more: false };
    // One more than asked for tells whether another page follows.
    const want = query.limit + 1;
    const found: Record<string, unknown>[] = [];
    const range = new Expression();
    const keyCondition = `${range.name('pk')} = ${range.value(keys.run(runId).pk)} AND ${range.name('sk')} BETWEEN ${range.value(keys.step(runId, query.afterSeq + 1).sk)} AND ${range.value(keys.step(runId, query.throughSeq).sk)}`;
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: keyCondition,
          ConsistentRead: true,
          Limit: want - found.length,
          ExclusiveStartKey: startKey,
          ...range.attributes(),
        }),
      );
      found.push(...(page.Items ?? []));
      startKey = page.LastEvaluatedKey;
    } while (startKey && found.length < want);
    return { items: found.slice(0, query.limit).map(fromStepItem), more: found.length > query.limit };
  }

  async getStep(runId: string, seq: number): Promise<Step | undefined> {
    const out = await this.db.send(new GetCommand({ TableName: this.tableName, Key: keys.step(runId, seq) }));
    return out.Item ? fromStepItem(out.Item) : undefined;
  }
}
