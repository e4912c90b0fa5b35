import { CHECKPOINTS } from './tenancy.js';

/**
 * The lifecycle's policy: how often and how long the system tries before it gives a run up. Pure
 * numbers, read by the use cases and handed to the deployment (CDK) and the local cloud alike.
 */

export const LAUNCH = {
  /** sandbox launches a run may spend before it ends FAILED */
  maxAttempts: 3,
  /** seconds between launch attempts, one per retry */
  backoffSeconds: [5, 20],
  heartbeatSeconds: 60,
  /**
   * How often a pod paused for approval asks whether to go on: a person's decision reaches it within
   * this long, and each hour paused costs 3,600,000 / this many Agent API requests.
   */
  controlPollMs: 10_000,
  /**
   * How often a paused run's control polls also check its account's caps (its own budget is checked on
   * every poll): the caps take four reads, which on every poll would double what an hour paused costs.
   */
  pausedCapCheckMs: 60_000,
} as const;

export const SWEEPER = {
  rateMinutes: 5,
  /** a QUEUED run older than this without an execution is re-enqueued */
  staleAfterSeconds: 120,
  /**
   * Re-enqueues a QUEUED run gets from the sweeper before it is dead-lettered with the reason: a run
   * whose message keeps getting lost, or whose execution cannot start, must not go round forever.
   */
  maxRequeues: 3,
} as const;

/** The most a pod may work, and the longest a checkpoint may wait for its decision (a pod's bounds). */
export const POD_LIMITS = { maxDurationSeconds: 86_400, maxApprovalWindowSeconds: 7 * 86_400 } as const;

/**
 * The longest a run may go on while all is well: its pod's longest work, the longest wait at each
 * checkpoint, and an hour for the queue, the launches and the end. A run not ended after this was lost
 * by the lifecycle, which the oldest-run alarm says.
 */
export const LONGEST_RUN_SECONDS =
  POD_LIMITS.maxDurationSeconds + CHECKPOINTS.length * POD_LIMITS.maxApprovalWindowSeconds + 3600;
