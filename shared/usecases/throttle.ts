import { TooManyRequestsError } from '../domain/errors.js';
import { apiRequestRate } from '../domain/tenancy.js';
import {
  API_REQUEST_WINDOW_SECONDS,
  requestWindow,
  retryAfterSeconds,
  TOKENLESS_REQUESTS_PER_SECOND,
  WindowCounts,
} from '../domain/throttle.js';
import type { Clock, DirectoryRepository, RequestCounter } from '../ports.js';

export interface AccountThrottleDeps {
  requests: RequestCounter;
  directory: Pick<DirectoryRepository, 'getAccount'>;
  clock: Clock;
}

/** Admits one request of an account, or throws TooManyRequestsError. */
export type AccountThrottle = (accountId: string) => Promise<void>;

/**
 * How long an instance keeps an account's rate: a busy account's requests then cost one write each,
 * not a write and a read, and a new rate applies within this long.
 */
export const RATE_KEPT_MS = 5_000;

/**
 * The public API's per-account limit, one per function instance. Each request is counted in the
 * account's window, shared by every instance, against the account's rate (read with the count when
 * this instance has not read it for RATE_KEPT_MS). Once that window is full, this instance refuses the
 * account until the window ends without counting again, so a flood costs the table one write past
 * the limit per instance and window, and other accounts' windows are untouched.
 */
export const accountThrottle = (deps: AccountThrottleDeps): AccountThrottle => {
  const rates = new Map<string, { rate: number; readAtMs: number }>();
  const full = new Map<string, { untilMs: number; rate: number }>();
  const rateOf = async (accountId: string, nowMs: number): Promise<number> => {
    const kept = rates.get(accountId);
    if (kept && nowMs - kept.readAtMs < RATE_KEPT_MS) return kept.rate;
    const rate = apiRequestRate((await deps.directory.getAccount(accountId))?.limits);
    rates.set(accountId, { rate, readAtMs: nowMs });
    return rate;
  };
  return async (accountId) => {
    const nowMs = deps.clock.now().getTime();
    const window = requestWindow(nowMs, API_REQUEST_WINDOW_SECONDS);
    const refusal = (rate: number) => {
      const wait = retryAfterSeconds(window, nowMs);
      return new TooManyRequestsError(
        `the account is over its ${rate} requests a second (over ${API_REQUEST_WINDOW_SECONDS} s); try again in ${wait} s`,
        wait,
      );
    };
    const known = full.get(accountId);
    if (known && known.untilMs > nowMs) throw refusal(known.rate);
    full.delete(accountId);
    // the count goes with the read of the rate, when there is one: one round trip
    const [rate, count] = await Promise.all([
      rateOf(accountId, nowMs),
      deps.requests.count(accountId, window),
    ]);
    if (count <= rate * API_REQUEST_WINDOW_SECONDS) return;
    full.set(accountId, { untilMs: window.endsAtMs, rate });
    throw refusal(rate);
  };
};

/**
 * The Agent API's answer to a request without a run-scoped token, given before any read: 401, or 429
 * once its source has sent TOKENLESS_REQUESTS_PER_SECOND of them this second (to this instance).
 */
export const tokenlessRefusals = (clock: Clock) => {
  const counts = new WindowCounts();
  return (source: string, unauthorized: Error): Error => {
    const nowMs = clock.now().getTime();
    const window = requestWindow(nowMs, 1);
    return counts.take(source, TOKENLESS_REQUESTS_PER_SECOND, window)
      ? unauthorized
      : new TooManyRequestsError(
          'too many requests without a run-scoped token; send the run’s token',
          retryAfterSeconds(window, nowMs),
        );
  };
};
