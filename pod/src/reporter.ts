import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentEvent, Control } from '../../shared/schemas/agent-events.js';
import {
  type AgentApi,
  backoffMs,
  InvalidAnswerError,
  RequestRejectedError,
  RunGoneError,
} from './agent-api.js';
import type { Masker } from './masking.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An event as the agent states it; the reporter adds `seq` and `at`. */
export type AgentEventInput = DistributiveOmit<AgentEvent, 'seq' | 'at'>;

export interface ReporterOptions {
  /** how long an event may wait for others to share its request */
  flushIntervalMs?: number;
  maxBatchEvents?: number;
  /** a batch stays under this many bytes of JSON unless one event alone is larger */
  maxBatchBytes?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** every answer carries the backend's control */
  onControl?: (control: Control) => void;
  /** the run is over or the token is gone; nothing more will be sent */
  onGone?: (error: RunGoneError) => void;
  warn?: (line: string) => void;
  /** hides secret values in every event before it leaves the pod */
  masker?: Masker;
}

/** Events that must reach the backend at once: a human or the state machine waits on them. */
const URGENT: ReadonlySet<AgentEvent['type']> = new Set(['checkpoint', 'result']);

/**
 * Numbers the agent's events with the run's sequence (from 1), batches them, and delivers each batch
 * until the backend has it: network failures, 5xx and 429 are retried with back-off, resending the
 * same seqs (the backend ignores a seq it has seen).
 */
export class Reporter {
  private seq = 0;
  private readonly queue: AgentEvent[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private gone = false;
  /** set by close(): retries stop at this time */
  private giveUpAt = Number.POSITIVE_INFINITY;
  private readonly closing = new AbortController();
  private readonly flushIntervalMs: number;
  private readonly maxBatchEvents: number;
  private readonly maxBatchBytes: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly warn: (line: string) => void;

  constructor(
    private readonly api: AgentApi,
    private readonly options: ReporterOptions = {},
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 250;
    this.maxBatchEvents = options.maxBatchEvents ?? 100;
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.retryMaxMs = options.retryMaxMs ?? 10_000;
    this.warn = options.warn ?? (() => {});
  }

  /** The last seq handed out. */
  get lastSeq(): number {
    return this.seq;
  }

  get isGone(): boolean {
    return this.gone;
  }

  emit(input: AgentEventInput): void {
    if (this.gone) return;
    this.seq += 1;
    const event = { ...input, seq: this.seq, at: new Date().toISOString() } as AgentEvent;
    this.queue.push(this.options.masker ? this.options.masker.deep(event) : event);
    if (URGENT.has(input.type) || this.queue.length >= this.maxBatchEvents) {
      void this.flush();
    } else {
      this.flushTimer ??= setTimeout(() => {
        this.flushTimer = undefined;
        void this.flush();
      }, this.flushIntervalMs);
    }
  }

  /** Resolves once everything emitted so far has been delivered (or can no longer be). */
  async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    // a send already under way may have checked the queue before the latest emit
    while (this.queue.length > 0 && !this.gone) {
      this.sending ??= this.sendQueued().finally(() => {
        this.sending = undefined;
      });
      await this.sending;
    }
  }

  startHeartbeats(intervalMs: number): void {
    this.stopHeartbeats();
    this.heartbeatTimer = setInterval(() => this.emit({ type: 'heartbeat' }), intervalMs);
  }

  stopHeartbeats(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** Delivers what is queued, trying for at most `deadlineMs`, then sends nothing more. */
  async close(deadlineMs: number): Promise<void> {
    this.stopHeartbeats();
    this.giveUpAt = Date.now() + deadlineMs;
    const deadline = setTimeout(() => this.closing.abort(), deadlineMs);
    try {
      await this.flush();
    } finally {
      clearTimeout(deadline);
      this.discard();
    }
  }

  /** Drops whatever is queued and stops all timers, as a crashing process would. */
  discard(): void {
    this.stopHeartbeats();
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.queue.length = 0;
    this.gone = true;
  }

  private async sendQueued(): Promise<void> {
    while (this.queue.length > 0 && !this.gone) {
      const batch = this.nextBatch();
      await this.deliver(batch);
      // the queue only grows at its end, so the batch is still at its front
      this.queue.splice(0, batch.length);
    }
  }

  private nextBatch(): AgentEvent[] {
    let bytes = 0;
    let count = 0;
    for (const event of this.queue) {
      const size = JSON.stringify(event).length;
      if (count === this.maxBatchEvents || (count > 0 && bytes + size > this.maxBatchBytes)) break;
      bytes += size;
      count += 1;
    }
    return this.queue.slice(0, count);
  }

  private async deliver(batch: AgentEvent[]): Promise<void> {
    const seqs = `${batch[0]?.seq}..${batch.at(-1)?.seq}`;
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await this.api.postEvents(batch, this.closing.signal);
        this.options.onControl?.(answer.control);
        return;
      } catch (err) {
        if (err instanceof RunGoneError) {
          this.discard();
          this.options.onGone?.(err);
          return;
        }
        if (err instanceof RequestRejectedError) {
          this.warn(`pod: events ${seqs} dropped: ${err.message}`);
          return;
        }
        if (err instanceof InvalidAnswerError) {
          // the backend took the batch (2xx); only its control is unreadable
          this.warn(`pod: events ${seqs}: ${err.message}`);
          return;
        }
        const wait = backoffMs(attempt, this.retryBaseMs, this.retryMaxMs);
        if (this.closing.signal.aborted || Date.now() + wait > this.giveUpAt) {
          this.warn(`pod: events ${seqs} not delivered before shutdown: ${(err as Error).message}`);
          return;
        }
        this.warn(
          `pod: sending events ${seqs} failed (${(err as Error).message}); retrying in ${Math.round(wait)} ms`,
        );
        await sleep(wait);
      }
    }
  }
}
