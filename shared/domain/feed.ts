import type { Run } from './run.js';
import { isTerminal } from './run.js';
import type { Step } from './steps.js';

/**
 * A run's feed: everything that happens to a run, as events numbered 1, 2, 3, ... per run, whatever
 * their kind. The feed is derived from the run's own records as they change (the run item, and the
 * steps written with it), so no writer of a run has to know about it; followers resume from the
 * number they last saw.
 */

export const FEED_KINDS = ['status', 'phase', 'step', 'approval', 'cost', 'artifact'] as const;
export type FeedKind = (typeof FEED_KINDS)[number];

export interface FeedEvent {
  /** 1, 2, 3, ... per run: no gaps, so a follower knows when it missed one */
  seq: number;
  kind: FeedKind;
  at: string;
  data: Record<string, unknown>;
}

export type NewFeedEvent = Omit<FeedEvent, 'seq'>;

/** Where a run's feed stands: its last event's seq, the last change of the run it holds, its last step. */
export interface FeedHead {
  seq: number;
  /** the stream position of the last change appended (decimal digits, compared as numbers); '' for none */
  lastChange: string;
  /** the highest step seq in the feed: a step written again in a later pack is not fed twice */
  lastStepSeq: number;
}

export const EMPTY_FEED: FeedHead = { seq: 0, lastChange: '', lastStepSeq: 0 };

/** A write of the run's records, as its stream delivers it: `change` is its position in the stream. */
export type RunChange =
  | { kind: 'run'; runId: string; before?: Run; after: Run; change: string }
  | { kind: 'steps'; runId: string; steps: Step[]; change: string };

/** Stream positions are decimal numbers of any length. */
const isAfter = (change: string, than: string): boolean =>
  change.length !== than.length ? change.length > than.length : change > than;

/**
 * The events a change adds to the feed where it stands; undefined for a change the feed already holds
 * (the stream delivers a batch again after a failure).
 */
export const feedEventsOf = (head: FeedHead, change: RunChange): NewFeedEvent[] | undefined => {
  if (!isAfter(change.change, head.lastChange)) return undefined;
  if (change.kind === 'run') return runChangeEvents(change.before, change.after);
  return stepEvents(change.steps.filter((step) => step.seq > head.lastStepSeq));
};

/** Where the feed stands once `events`, made by the change at `lastChange`, are appended. */
export const headAfter = (head: FeedHead, lastChange: string, events: readonly NewFeedEvent[]): FeedHead => ({
  seq: head.seq + events.length,
  lastChange,
  lastStepSeq: Math.max(
    head.lastStepSeq,
    ...events.filter((event) => event.kind === 'step').map((event) => Number(event.data.seq)),
  ),
});

/** WebSocket messages are at most 128 KB; a step's content in the feed is cut well below that. */
export const FEED_STEP_CONTENT_CHARS = 8 * 1024;

const appended = <T>(before: readonly T[] | undefined, after: readonly T[] | undefined): T[] =>
  (after ?? []).slice(before?.length ?? 0);

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * What a write of the run item changed, as events in the order a reader wants them: the phase, the
 * checkpoint, artifacts and cost first, then the status changes, so a terminal status is the last
 * event of its run. `before` is undefined for the run's first write.
 */
export const runChangeEvents = (before: Run | undefined, after: Run): NewFeedEvent[] => {
  const at = after.updatedAt;
  const events: NewFeedEvent[] = [];
  if (after.phase !== undefined && after.phase !== before?.phase) {
    events.push({ kind: 'phase', at, data: { phase: after.phase } });
  }
  const pending = after.pendingApproval;
  // once per checkpoint: the approval's id and expiry, recorded a moment later, are no new checkpoint
  if (pending && pending.seq !== before?.pendingApproval?.seq) {
    events.push({ kind: 'approval', at, data: { state: 'pending', ...pending } });
  }
  for (const ended of appended(before?.approvals, after.approvals)) {
    events.push({ kind: 'approval', at: ended.at, data: { state: ended.decision, ...ended } });
  }
  for (const artifact of appended(before?.artifacts, after.artifacts)) {
    events.push({ kind: 'artifact', at: artifact.at, data: { ...artifact } });
  }
  if (after.pullRequest && !same(after.pullRequest, before?.pullRequest)) {
    events.push({ kind: 'artifact', at, data: { kind: 'pull_request', ...after.pullRequest } });
  }
  if (before && (!same(after.cost, before.cost) || !same(after.usage, before.usage))) {
    events.push({ kind: 'cost', at, data: { cost: after.cost, usage: after.usage } });
  }
  const statuses = appended(before?.history, after.history);
  statuses.forEach((change, i) => {
    const last = i === statuses.length - 1;
    events.push({
      kind: 'status',
      at: change.at,
      data: {
        status: change.status,
        // what the run ended with goes with its terminal status
        ...(last && isTerminal(change.status)
          ? {
              exitReason: after.exitReason,
              message: after.message,
              completedAt: after.completedAt,
              durationMs: after.durationMs,
            }
          : {}),
      },
    });
  });
  return events.map((event) => ({ ...event, data: definedOnly(event.data) }));
};

/** Steps as the feed carries them: their content cut to what a message can hold, with how long it was. */
export const stepEvents = (steps: readonly Step[]): NewFeedEvent[] =>
  steps.map(({ fullContent: _kept, args: _args, ...step }) => {
    const cut = step.content.length > FEED_STEP_CONTENT_CHARS;
    return {
      kind: 'step',
      at: step.at,
      data: definedOnly({
        ...step,
        content: cut ? step.content.slice(0, FEED_STEP_CONTENT_CHARS) : step.content,
        truncated: step.truncated || cut || undefined,
      }),
    };
  });

/** The event that ends a run's feed: after it, nothing more is sent to the run's followers. */
export const endsFeed = (event: Pick<FeedEvent, 'kind' | 'data'>): boolean =>
  event.kind === 'status' && isTerminal(event.data.status as Run['status']);

const definedOnly = (data: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(data).filter(([, value]) => value !== undefined));
