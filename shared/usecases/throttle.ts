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

/** How long an instance keeps an account's limit before reading it again: a new limit applies within this. */
export const LIMIT_KEPT_MS = 60_000;

/** Admits one request of an account, or throws TooManyRequestsError. */
export type AccountThrottle = (accountId: string) => Promise<void>;

/**
 * The public API's per-account limit, one per function instance. Each request is counted in the
 * account's window, shared by every instance. Once that window is full, this instance refuses the
 * account until the window ends without counting again, so a flood costs the table one refused write
 * per instance and window, and other accounts' windows are untouched.
 */
export const accountThrottle = (deps: AccountThrottleDeps): AccountThrottle => {
  const rates = new Map<string, { rate: number; readAtMs: number }>();
  const fullUntil = new Map<string, number>();

  const rateOf = async (accountId: string, nowMs: number): Promise<number> => {
    const kept = rates.get(accountId);
    if (kept && nowMs - kept.readAtMs < LIMIT_KEPT_MS) return kept.rate;
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
    const full = fullUntil.get(accountId);
    if (full !== undefined) {
      if (full > nowMs) throw refusal(await rateOf(accountId, nowMs));
      fullUntil.delete(accountId);
    }
    const rate = await rateOf(accountId, nowMs);
    if (await deps.requests.take(accountId, rate * API_REQUEST_WINDOW_SECONDS, window)) return;
    fullUntil.set(accountId, window.endsAtMs);
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
