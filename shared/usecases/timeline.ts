import { NotFoundError } from '../domain/errors.js';
import { isTerminal, type Run } from '../domain/run.js';
import { STEP_CONTENT_INLINE_BYTES, type Step, type StepContentRef } from '../domain/steps.js';
import type { Caller } from '../domain/tenancy.js';
import type { AgentEvent, RunRepository, StepContentStore } from '../ports.js';
import type { StepsQuery } from '../schemas/timeline.js';
import { getRun } from './runs.js';

/** The step timeline: every step the agent took, in the pod's seq order, whole text on demand. */

export interface TimelineDeps {
  runs: RunRepository;
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

export const listSteps = async (
  deps: Pick<TimelineDeps, 'runs'>,
  caller: Caller,
  runId: string,
  query: StepsQuery,
): Promise<{ items: StepView[]; nextAfter: number | null }> => {
  const run = await getRun(deps, caller, runId);
  // Once the run has ended nothing is being written, so the settled mark is not needed (nor trusted:
  // a pod that died mid-batch never raised it).
  const page = await deps.runs.listSteps(run.runId, {
    afterSeq: query.after,
    limit: query.limit,
    settledOnly: !isTerminal(run.status),
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
  const step = await deps.runs.getStep(run.runId, seq);
  if (!step) throw new NotFoundError('step', `${runId}/${seq}`);
  if (!step.truncated) return step.content;
  const text = step.fullContent ? await deps.stepContent.get(step.fullContent) : undefined;
  if (text === undefined)
    throw new NotFoundError('full content (expired or never kept) of step', `${runId}/${seq}`);
  return text;
};

const isOversized = (e: AgentEvent): e is Extract<AgentEvent, { type: 'step' }> =>
  e.type === 'step' && Buffer.byteLength(e.content, 'utf8') > STEP_CONTENT_INLINE_BYTES;

/**
 * Before a batch is recorded: keep the whole text of each step too large for its record, and say where,
 * by seq. A step the run has already recorded (a resent batch) is not kept again.
 */
export const keepFullStepContent = async (
  deps: TimelineDeps,
  run: Run,
  events: AgentEvent[],
): Promise<Map<number, StepContentRef>> => {
  const kept = new Map<number, StepContentRef>();
  for (const e of events.filter(isOversized)) {
    if (e.seq <= run.lastSeq && (await deps.runs.getStep(run.runId, e.seq))) continue;
    kept.set(e.seq, await deps.stepContent.put(run.runId, e.seq, e.content));
  }
  return kept;
};
