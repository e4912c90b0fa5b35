import type { StepEvent } from '../domain/agent-batch.js';
import { NotFoundError } from '../domain/errors.js';
import { isTerminal, type Run } from '../domain/run.js';
import { STEP_CONTENT_INLINE_BYTES, type Step, type StepContentRef } from '../domain/steps.js';
import type { Caller } from '../domain/tenancy.js';
import type { DirectoryRepository, RunStore, StepContentStore, Timeline } from '../ports.js';
import type { StepsQuery } from '../schemas/timeline.js';
import { getRun } from './runs.js';

/** The step timeline: every step the agent took, in the pod's seq order, whole text on demand. */

export interface TimelineDeps {
  runs: RunStore;
  directory: DirectoryRepository;
  timeline: Timeline;
  stepContent: StepContentStore;
}

/** A step as the API shows it: arguments as sent, and a link to the whole content when it was cut. */
export type StepView = Omit<Step, 'args' | 'fullContent'> & {
  args?: unknown;
  /** the start of the arguments' JSON text, when they were cut */
  argsPreview?: string;
  fullContent?: { href: string; bytes: number };
};

export const stepContentPath = (runId: string, seq: number) => `/v1/runs/${runId}/steps/${seq}/content`;

const parseArgs = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

export const stepView = (runId: string, step: Step): StepView => {
  const { args, fullContent, ...rest } = step;
  const view: StepView = { ...rest };
  if (args !== undefined) {
    if (step.argsTruncated) view.argsPreview = args;
    else view.args = parseArgs(args);
  }
  if (fullContent) view.fullContent = { href: stepContentPath(runId, step.seq), bytes: fullContent.bytes };
  return view;
};

/** The highest seq a step can have: its key holds ten digits. */
const MAX_SEQ = 9_999_999_999;

/**
 * The last seq a follower may read up to: while the run is active, the end of its first run of
 * recorded seqs, since a batch's steps are written before its seqs are recorded and a batch still
 * being written (or lost) leaves a gap after them, so a reader following with `after` never skips a
 * step. Once the run has ended nothing more is written.
 */
const settledThrough = (run: Run): number => {
  if (isTerminal(run.status)) return MAX_SEQ;
  return run.seqs?.[0]?.[1] ?? 0;
};

export const listSteps = async (
  deps: Pick<TimelineDeps, 'runs' | 'directory' | 'timeline'>,
  caller: Caller,
  runId: string,
  query: StepsQuery,
): Promise<{ items: StepView[]; nextAfter: number | null }> => {
  const run = await getRun(deps, caller, runId);
  const page = await deps.timeline.listSteps(run.runId, {
    afterSeq: query.after,
    throughSeq: settledThrough(run),
    limit: query.limit,
  });
  const last = page.items.at(-1);
  return {
    items: page.items.map((step) => stepView(run.runId, step)),
    nextAfter: page.more && last ? last.seq : null,
  };
};

/** The whole content of one step: from its record, or from where it was kept when it was cut. */
export const getStepContent = async (
  deps: TimelineDeps,
  caller: Caller,
  runId: string,
  seq: number,
): Promise<string> => {
  const run = await getRun(deps, caller, runId);
  const step = await deps.timeline.getStep(run.runId, seq);
  if (!step) throw new NotFoundError('step', `${runId}/${seq}`);
  if (!step.truncated) return step.content;
  const text = step.fullContent ? await deps.stepContent.get(step.fullContent) : undefined;
  if (text === undefined)
    throw new NotFoundError('full content (expired or never kept) of step', `${runId}/${seq}`);
  return text;
};

/**
 * Before a batch is recorded: keep the whole text of each of its new steps too large for its record,
 * and say where, by seq.
 */
export const keepFullStepContent = async (
  deps: Pick<TimelineDeps, 'stepContent'>,
  runId: string,
  steps: readonly StepEvent[],
): Promise<Map<number, StepContentRef>> => {
  const kept = new Map<number, StepContentRef>();
  for (const e of steps) {
    if (Buffer.byteLength(e.content, 'utf8') <= STEP_CONTENT_INLINE_BYTES) continue;
    kept.set(e.seq, await deps.stepContent.put(runId, e.seq, e.content));
  }
  return kept;
};
