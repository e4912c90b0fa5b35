/** The step timeline: what the agent did, one record per `step` event, in the pod's seq order. */

export const STEP_KINDS = ['assistant', 'tool_call', 'tool_result'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/**
 * Step content kept in the step record. DynamoDB items stop at 400 KB and write units grow with the
 * item, so larger content is cut there and its full text kept apart (see StepContentRef).
 */
export const STEP_CONTENT_INLINE_BYTES = 32 * 1024;

/** Where the full text of a cut step lives: a log stream of its own, in parts. */
export interface StepContentRef {
  logGroup: string;
  logStream: string;
  parts: number;
  bytes: number;
}

export interface StepUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
}

export interface Step {
  seq: number;
  at: string;
  kind: StepKind;
  /** the content, cut at STEP_CONTENT_INLINE_BYTES when `truncated` */
  content: string;
  tool?: string;
  /** the tool arguments as JSON text, cut at 8 KB when `argsTruncated` */
  args?: string;
  model?: string;
  usage?: StepUsage;
  /** the step's token cost in micro-USD, set when steps are priced; absent until then */
  costMicroUsd?: number;
  truncated?: boolean;
  /** the size of the whole content, when it was cut */
  contentBytes?: number;
  argsTruncated?: boolean;
  argsBytes?: number;
  /** where the whole content is, when it was cut */
  fullContent?: StepContentRef;
}

/** Steps of one page and whether more were recorded after them. */
export interface StepPage {
  items: Step[];
  more: boolean;
}
