import { describe, expect, it, vi } from 'vitest';
import { TooManyRequestsError, UnauthorizedError } from '../../shared/domain/errors.js';
import { DEFAULT_API_REQUESTS_PER_SECOND } from '../../shared/domain/tenancy.js';
import {
  requestWindow,
  retryAfterSeconds,
  TOKENLESS_REQUESTS_PER_SECOND,
  WindowCounts,
} from '../../shared/domain/throttle.js';
import { errorToResponse } from '../../shared/http/responses.js';
import type { DirectoryRepository, RequestCounter } from '../../shared/ports.js';
import { accountThrottle, RATE_KEPT_MS, tokenlessRefusals } from '../../shared/usecases/throttle.js';

/** Counts as the table does: per caller and window. */
class MemoryRequestCounter implements RequestCounter {
  readonly counts = new Map<string, number>();
  calls = 0;
  async count(callerKey: string, window: { start: number }): Promise<number> {
    this.calls += 1;
    const key = `${callerKey}@${window.start}`;
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return count;
  }
}

const at = (iso: string) => ({ now: () => new Date(iso) });

describe('request windows', () => {
  it('start on whole multiples of their length and say how long until the next', () => {
    const window = requestWindow(Date.parse('2026-12-06T10:00:03.200Z'), 10);
    expect(window).toEqual({
      start: Date.parse('2026-12-06T10:00:00Z') / 1000,
      endsAtMs: Date.parse('2026-12-06T10:00:10Z'),
    });
    expect(retryAfterSeconds(window, Date.parse('2026-12-06T10:00:03.200Z'))).toBe(7);
    expect(retryAfterSeconds(window, Date.parse('2026-12-06T10:00:09.990Z'))).toBe(1);
  });

  it('count per key in memory and forget the last window', () => {
    const counts = new WindowCounts();
    const first = requestWindow(0, 1);
    expect([1, 2, 3].map(() => counts.take('a', 2, first))).toEqual([true, true, false]);
    expect(counts.take('b', 2, first)).toBe(true);
    expect(counts.take('a', 2, requestWindow(1000, 1))).toBe(true);
  });
});

describe('the per-account limit', () => {
  const directory = (limits?: { apiRequestsPerSecond?: number }) =>
    ({
      getAccount: vi.fn(async () =>
        limits ? { limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0, ...limits } } : undefined,
      ),
    }) as unknown as DirectoryRepository & { getAccount: ReturnType<typeof vi.fn> };

  it('admits the default rate over the window, then refuses with the seconds left, without counting again', async () => {
    const requests = new MemoryRequestCounter();
    const clock = { now: vi.fn(() => new Date('2026-12-06T10:00:04Z')) };
    const admit = accountThrottle({ requests, directory: directory(), clock });
    const allowance = DEFAULT_API_REQUESTS_PER_SECOND * 10;
    for (let i = 0; i < allowance; i++) await admit('acct-1');

    const refused = await admit('acct-1').catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(TooManyRequestsError);
    expect(refused).toMatchObject({ retryAfterSeconds: 6 });
    expect(errorToResponse(refused)).toMatchObject({ statusCode: 429, headers: { 'retry-after': '6' } });
    const calls = requests.calls;
    await expect(admit('acct-1')).rejects.toBeInstanceOf(TooManyRequestsError);
    expect(requests.calls).toBe(calls);

    // another account has its own window; the next window admits again
    await expect(admit('acct-2')).resolves.toBeUndefined();
    clock.now.mockReturnValue(new Date('2026-12-06T10:00:10Z'));
    await expect(admit('acct-1')).resolves.toBeUndefined();
  });

  it('uses the account’s own rate, kept for a few seconds, so a new one applies within them', async () => {
    const requests = new MemoryRequestCounter();
    const clock = { now: vi.fn(() => new Date('2026-12-06T10:00:00Z')) };
    const accounts = directory({ apiRequestsPerSecond: 1 });
    const admit = accountThrottle({ requests, directory: accounts, clock });
    for (let i = 0; i < 10; i++) await admit('acct-1');
    await expect(admit('acct-1')).rejects.toThrow(/over its 1 requests a second/);
    expect(accounts.getAccount).toHaveBeenCalledTimes(1);

    clock.now.mockReturnValue(new Date(Date.parse('2026-12-06T10:00:10Z') + RATE_KEPT_MS));
    await admit('acct-1');
    expect(accounts.getAccount).toHaveBeenCalledTimes(2);
  });
});

describe('requests without a run-scoped token', () => {
  it('are refused 401, then 429 past the per-second count of their source; other sources are not counted with them', () => {
    const refuse = tokenlessRefusals(at('2026-12-06T10:00:00.400Z'));
    const unauthorized = new UnauthorizedError('no token');
    const answers = Array.from({ length: TOKENLESS_REQUESTS_PER_SECOND + 2 }, () =>
      refuse('203.0.113.9', unauthorized),
    );
    expect(answers.slice(0, TOKENLESS_REQUESTS_PER_SECOND).every((a) => a === unauthorized)).toBe(true);
    expect(answers.at(-1)).toMatchObject({ code: 'TooManyRequests', retryAfterSeconds: 1 });
    expect(refuse('198.51.100.1', unauthorized)).toBe(unauthorized);
  });
});
