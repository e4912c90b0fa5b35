import { listedModel, type PriceTable } from './pricing.js';
import { isTerminal, type Run, type RunStatus } from './run.js';

/**
 * The run metrics: what a write of the run item says about the fleet of runs, as CloudWatch metrics
 * (one namespace, FUNCTION_DEFAULT_ENVIRONMENT's). Pure: the writes come from the table's stream and
 * the metrics go out as EMF lines through an adapter. Every dimension's values come from a closed set
 * (statuses, exit reasons, the price table's models, launch failure kinds), so the number of series
 * is bounded whatever the runs, accounts or pods: the account and the run travel with each line as
 * properties, never as dimensions (docs/decisions/0023).
 */

/** Each metric the code emits, its unit, and the dimension sets it is published under. */
export const RUN_METRICS = {
  /** a run was created QUEUED (dispatched, replayed, redriven) */
  RunsDispatched: { unit: 'Count', dimensions: [[]] },
  /** a run left the queue: checks passed and its first sandbox is being launched */
  RunsStarted: { unit: 'Count', dimensions: [[]] },
  /** from the run's QUEUED to its PROVISIONING */
  QueueWait: { unit: 'Milliseconds', dimensions: [[]] },
  /** a sandbox launch was begun (PROVISIONING), the first one and each relaunch */
  LaunchAttempts: { unit: 'Count', dimensions: [[]] },
  /** a launch failed and was counted against the run's attempts, by kind */
  LaunchFailures: { unit: 'Count', dimensions: [['FailureKind']] },
  /** a run reached a terminal status from an active one, by status and by exit reason */
  RunsEnded: { unit: 'Count', dimensions: [['Status'], ['ExitReason']] },
  /** from the run's creation to its end */
  RunDuration: { unit: 'Milliseconds', dimensions: [[]] },
  /** how long a checkpoint waited for its decision */
  ApprovalWait: { unit: 'Milliseconds', dimensions: [[]] },
  /** what an ended run cost in all (tokens, sandbox, fee), in US dollars */
  RunCostUsd: { unit: 'None', dimensions: [[]] },
  /**
   * the tokens an ended run used, by model (input, output, cache read and write): the price table's
   * model it is priced as, or `other` (a pod may report any name)
   */
  TokensUsed: { unit: 'Count', dimensions: [['Model']] },
  /** what runs cost since the last write (live token use, then the sandbox at settlement), in US dollars */
  SpendUsd: { unit: 'None', dimensions: [[]] },
  /** the age of the oldest run not ended, measured by the sweeper on its schedule (0: none) */
  OldestActiveRunAge: { unit: 'Seconds', dimensions: [[]] },
} as const satisfies Record<string, { unit: MetricUnitName; dimensions: readonly (readonly string[])[] }>;

export type MetricUnitName = 'Count' | 'Milliseconds' | 'Seconds' | 'None';
export type RunMetricName = keyof typeof RUN_METRICS;

/** One value of one metric, with the values of its dimensions (those its sets name). */
export interface RunMetric {
  name: RunMetricName;
  value: number;
  dimensions?: Record<string, string>;
}

/** How a launch failed: throttled by ECS, no Fargate capacity (or network interface), or otherwise. */
export const LAUNCH_FAILURE_KINDS = ['throttled', 'capacity', 'other'] as const;
export type LaunchFailureKind = (typeof LAUNCH_FAILURE_KINDS)[number];

export const launchFailureKind = (reason: string): LaunchFailureKind => {
  if (/throttl|rate exceeded/i.test(reason)) return 'throttled';
  if (/RESOURCE:|capacity/i.test(reason)) return 'capacity';
  return 'other';
};

const MICRO = 1_000_000;
/** The Model dimension of the tokens of models the price table does not list. */
export const OTHER_MODEL = 'other';

const millisBetween = (from: string, to: string): number => Date.parse(to) - Date.parse(from);

/** The statuses the write added to the run's history, each with the one it came from. */
const newHops = (before: Run | undefined, after: Run) => {
  const known = before?.history.length ?? 0;
  return after.history.slice(known).map((entry, i) => ({
    ...entry,
    previous: after.history[known + i - 1],
  }));
};

const totalTokens = (usage: Run['usage'][string]): number =>
  usage.inputTokens + usage.outputTokens + usage.cacheReadTokens + usage.cacheWriteTokens;

/**
 * The metrics of one write of the run item: `before` is the item as it was (undefined for its first
 * write). Each status the write added counts once; an end counts only from an active status, so a
 * COMPLETED run closed as DONE later is not a second end.
 */
export const runMetricsOf = (before: Run | undefined, after: Run, prices: PriceTable): RunMetric[] => {
  const metrics: RunMetric[] = [];
  for (const hop of newHops(before, after)) {
    const from: RunStatus | undefined = hop.previous?.status;
    if (hop.status === 'QUEUED') metrics.push({ name: 'RunsDispatched', value: 1 });
    if (hop.status === 'PROVISIONING') {
      metrics.push({ name: 'LaunchAttempts', value: 1 });
      if (from === 'QUEUED' && hop.previous) {
        metrics.push({ name: 'RunsStarted', value: 1 });
        metrics.push({ name: 'QueueWait', value: millisBetween(hop.previous.at, hop.at) });
      }
    }
    if (from === 'AWAITING_APPROVAL' && hop.previous) {
      metrics.push({ name: 'ApprovalWait', value: millisBetween(hop.previous.at, hop.at) });
    }
    if (isTerminal(hop.status) && from !== undefined && !isTerminal(from)) {
      metrics.push({
        name: 'RunsEnded',
        value: 1,
        dimensions: { Status: hop.status, ExitReason: after.exitReason ?? 'none' },
      });
      metrics.push({
        name: 'RunDuration',
        value: after.durationMs ?? millisBetween(after.createdAt, hop.at),
      });
    }
  }
  const spent = after.cost.totalUsd - (before?.cost.totalUsd ?? 0);
  if (spent > 0) metrics.push({ name: 'SpendUsd', value: spent / MICRO });
  if (costIsFinal(before, after)) {
    metrics.push({ name: 'RunCostUsd', value: after.cost.totalUsd / MICRO });
    const byModel = new Map<string, number>();
    for (const [model, usage] of Object.entries(after.usage)) {
      const label = listedModel(prices, model) ?? OTHER_MODEL;
      byModel.set(label, (byModel.get(label) ?? 0) + totalTokens(usage));
    }
    for (const [model, tokens] of byModel) {
      metrics.push({ name: 'TokensUsed', value: tokens, dimensions: { Model: model } });
    }
  }
  return metrics;
};

/** The sandbox's time, which only the settlement charges (token use and its fee accrue live). */
const sandboxPart = (cost: Run['cost']): number => cost.sandboxCpuUsd + cost.sandboxMemoryUsd;

/**
 * The write after which an ended run's cost no longer changes: its settlement (the sandbox's time and
 * its fees, added once, after the end) or, for a run that never had a sandbox to settle, its end.
 */
const costIsFinal = (before: Run | undefined, after: Run): boolean => {
  if (!isTerminal(after.status)) return false;
  const justEnded = before !== undefined && !isTerminal(before.status);
  if (justEnded) return after.taskArn === undefined;
  return before !== undefined && sandboxPart(before.cost) === 0 && sandboxPart(after.cost) > 0;
};
