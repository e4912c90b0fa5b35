/**
 * Request limits per caller, counted in fixed windows: a window of `seconds` admits `limit` requests
 * and the next starts afresh. A fixed window is one counter (one write where it is shared),
 * at the price of letting up to twice the limit through around a window's edge.
 */

export interface RequestWindow {
  /** epoch seconds of the window's start: its counter's name */
  start: number;
  /** epoch milliseconds of the next window's start */
  endsAtMs: number;
}

export const requestWindow = (nowMs: number, seconds: number): RequestWindow => {
  const start = Math.floor(nowMs / 1000 / seconds) * seconds;
  return { start, endsAtMs: (start + seconds) * 1000 };
};

/** Whole seconds until the window ends, at least one: what `Retry-After` says. */
export const retryAfterSeconds = (window: RequestWindow, nowMs: number): number =>
  Math.max(1, Math.ceil((window.endsAtMs - nowMs) / 1000));

/** The public API's window per account; `apiRequestsPerSecond` times this many requests pass in each. */
export const API_REQUEST_WINDOW_SECONDS = 10;

/**
 * Requests without a run-scoped token that one source may send the Agent API per second, per function
 * instance, before the 401s become 429s. They are counted in memory: such a request is refused before
 * any read, so a flood of them costs no table capacity, and a pod (which always has its token) is
 * never counted.
 */
export const TOKENLESS_REQUESTS_PER_SECOND = 10;

/**
 * Counts requests per key in the current window of one process, forgetting earlier windows. For limits
 * that need no agreement between instances (each instance refuses its share of a flood).
 */
export class WindowCounts {
  private window = -1;
  private readonly counts = new Map<string, number>();

  /** Counts one request of `key`; false when the window had already admitted `limit`. */
  take(key: string, limit: number, window: RequestWindow): boolean {
    if (window.start !== this.window) {
      this.window = window.start;
      this.counts.clear();
    }
    const count = this.counts.get(key) ?? 0;
    if (count >= limit) return false;
    this.counts.set(key, count + 1);
    return true;
  }
}
