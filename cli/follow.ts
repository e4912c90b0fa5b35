import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminal, type Run, type RunStatus } from '../shared/domain/run.js';
import type { StepPage, StepView } from '../shared/schemas/wire.js';
import type { ApiReader } from './client.js';
import { isRetryable, retryDelayMs } from './errors.js';

/**
 * Following a run: what happens to it, as events, whatever carries them. Rendering (watch.ts) only
 * sees these events, so a follower over the WebSocket stream can replace polling without touching it.
 */

export type FollowEvent =
  /** the run as it now is: sent when it changed (its version moved), and once at the start */
  | { type: 'run'; run: Run }
  /** a step of its timeline, in seq order, each once */
  | { type: 'step'; step: StepView }
  /** a request failed; the follower asks again after `delayMs` */
  | { type: 'retrying'; message: string; delayMs: number };

export type FollowHandler = (event: FollowEvent) => void | Promise<void>;

export interface RunFollower {
  /** Sends the run's events until it ends; resolves with the status it ended in. Rejects when aborted. */
  follow(runId: string, onEvent: FollowHandler, signal?: AbortSignal): Promise<RunStatus>;
}

export interface PollingOptions {
  /** between polls */
  intervalMs?: number;
  /** the longest wait between attempts after failures */
  maxBackoffMs?: number;
  /** steps asked for per request */
  pageSize?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const defaultSleep = (ms: number, signal?: AbortSignal) => sleep(ms, undefined, { signal });

/** The delay before attempt `failures + 1`: doubling from the poll interval, up to the maximum. */
export const backoffMs = (failures: number, intervalMs: number, maxMs: number): number =>
  Math.min(maxMs, intervalMs * 2 ** Math.max(0, failures));

/**
 * Polls `GET /v1/runs/{id}` and `GET /v1/runs/{id}/steps?after=<last seq>` every half second. Steps
 * resume from the last seq sent, so none is sent twice; a failed request that may succeed later
 * (no answer, 5xx, 429) is retried with backoff, any other ends the follow with its error.
 */
export class PollingFollower implements RunFollower {
  private readonly intervalMs: number;
  private readonly maxBackoffMs: number;
  private readonly pageSize: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(
    private readonly api: ApiReader,
    options: PollingOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.pageSize = options.pageSize ?? 100;
    this.sleep = options.sleep ?? defaultSleep;
  }

  async follow(runId: string, onEvent: FollowHandler, signal?: AbortSignal): Promise<RunStatus> {
    let lastSeq = 0;
    let version: number | undefined;
    let failures = 0;
    const path = `/v1/runs/${encodeURIComponent(runId)}`;
    for (;;) {
      signal?.throwIfAborted();
      try {
        const run = await this.api.get<Run>(path, { signal });
        const changed = run.version !== version;
        const ended = isTerminal(run.status);
        // The run before the steps while the agent works (a status before the steps it brought);
        // after them once it waits at a checkpoint or has ended, since they came before that.
        const stepsFirst = ended || run.status === 'AWAITING_APPROVAL';
        if (changed && !stepsFirst) {
          version = run.version;
          await onEvent({ type: 'run', run });
        }
        for (;;) {
          const page = await this.api.get<StepPage>(`${path}/steps`, {
            query: { after: lastSeq, limit: this.pageSize },
            signal,
          });
          for (const step of page.items) {
            if (step.seq <= lastSeq) continue;
            lastSeq = step.seq;
            await onEvent({ type: 'step', step });
          }
          if (page.nextAfter === null || page.items.length === 0) break;
        }
        failures = 0;
        if (changed && stepsFirst) {
          version = run.version;
          await onEvent({ type: 'run', run });
        }
        if (ended) return run.status;
      } catch (err) {
        if (signal?.aborted || !isRetryable(err)) throw err;
        const delayMs = retryDelayMs(err, backoffMs(failures, this.intervalMs, this.maxBackoffMs));
        failures++;
        await onEvent({ type: 'retrying', message: (err as Error).message, delayMs });
        await this.sleep(delayMs, signal);
        continue;
      }
      await this.sleep(this.intervalMs, signal);
    }
  }
}
