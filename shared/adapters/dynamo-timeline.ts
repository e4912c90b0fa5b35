import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { StepEvent } from '../domain/agent-batch.js';
import { STEP_CONTENT_INLINE_BYTES, type Step, type StepContentRef, type StepPage } from '../domain/steps.js';
import type { AgentEvent, Timeline } from '../ports.js';
import { compact, keys } from './dynamo-keys.js';
import { RunPacks } from './dynamo-packs.js';

/*
 * The step timeline and the other per-seq records of a run, in the run's partition:
 *
 *   RUN#<runId>  STEPS#<seq:10>  the steps of one event batch from this seq on (`steps`, in seq order,
 *                                with `first` and `last`), packed into as few items as fit (each well
 *                                under DynamoDB's 400 KB): a batch of small steps is one item, written
 *                                in the batch's own transaction, and costs a write unit per KB, not
 *                                per step. A step's content above 32 KB is cut (`truncated`,
 *                                `contentBytes`) and `fullContent` points at the whole text, kept in
 *                                CloudWatch Logs.
 *   RUN#<runId>  EVT#<seq:10>    a checkpoint (with its details, up to 96 KB), an artifact or a result.
 *
 * Both are written with the batch that records their seqs on the run (or, for a batch too large for
 * one transaction, just before it): a seq the run has recorded always has its item.
 */

const STEP_ARGS_LIMIT = 8 * 1024;
const CHECKPOINT_DETAILS_LIMIT = 96 * 1024;
/** A pack's steps stay under this many bytes of JSON, which is more than they take in the item. */
export const STEP_PACK_BYTES = 300 * 1024;

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

/** A step as it is kept: content and arguments cut to their limits, with where the whole text is. */
const stepRecord = (
  e: StepEvent,
  fullContent: StepContentRef | undefined,
  costMicroUsd: number | undefined,
) => {
  const content = truncateUtf8(e.content, STEP_CONTENT_INLINE_BYTES);
  // JSON text, not a map: tool arguments are arbitrary and may nest deeper than DynamoDB allows.
  const args = e.args === undefined ? undefined : truncateUtf8(JSON.stringify(e.args), STEP_ARGS_LIMIT);
  return compact({
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
  }) as Step;
};

/** The items a batch's steps are kept in: consecutive steps, in seq order, each item under the size. */
export const stepPacks = (
  runId: string,
  steps: readonly StepEvent[],
  fullContent: ReadonlyMap<number, StepContentRef>,
  costOf: (seq: number) => number | undefined,
): Record<string, unknown>[] => {
  const packs: Step[][] = [];
  let bytes = 0;
  for (const e of steps) {
    const record = stepRecord(e, fullContent.get(e.seq), costOf(e.seq));
    const size = Buffer.byteLength(JSON.stringify(record), 'utf8');
    const current = packs.at(-1);
    if (current && bytes + size <= STEP_PACK_BYTES) {
      current.push(record);
      bytes += size;
    } else {
      packs.push([record]);
      bytes = size;
    }
  }
  return packs.map((pack) => {
    const first = pack[0]?.seq ?? 0;
    return { ...keys.steps(runId, first), runId, first, last: pack.at(-1)?.seq ?? first, steps: pack };
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

const stepsOf = (item: Record<string, unknown> | undefined): Step[] =>
  Array.isArray(item?.steps) ? (item.steps as Step[]) : [];

export class DynamoTimeline implements Timeline {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async listSteps(
    runId: string,
    query: { afterSeq: number; throughSeq: number; limit: number },
  ): Promise<StepPage> {
    const { afterSeq, throughSeq, limit } = query;
    if (limit <= 0 || throughSeq <= afterSeq) return { items: [], more: false };
    // One more than asked for tells whether another page follows.
    const want = limit + 1;
    const found: Step[] = [];
    for await (const pack of this.packs(runId).from(afterSeq + 1, throughSeq)) {
      for (const step of stepsOf(pack)) {
        // a seq is kept once; a step packed twice (a batch written again with others) shows once
        const last = found.at(-1)?.seq ?? afterSeq;
        if (step.seq > last && step.seq <= throughSeq) found.push(step);
      }
      if (found.length >= want) break;
    }
    return { items: found.slice(0, limit), more: found.length > limit };
  }

  async getStep(runId: string, seq: number): Promise<Step | undefined> {
    return stepsOf(await this.packs(runId).holding(seq)).find((step) => step.seq === seq);
  }

  private packs(runId: string): RunPacks {
    return new RunPacks(this.db, this.tableName, (seq) => keys.steps(runId, seq));
  }
}
