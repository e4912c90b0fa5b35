import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/client.js';
import { ApiError, isRetryable } from '../../cli/errors.js';

const answering = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  (async () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json', ...headers },
    })) as typeof fetch;

const client = (fetchFn: typeof fetch, throttledAttempts?: number) =>
  new ApiClient({ apiUrl: 'https://api.example.com', token: 't' }, fetchFn, undefined, throttledAttempts);

describe('ApiClient', () => {
  it('reads how long a 429 asks to wait, from the account limit and from API Gateway alike', async () => {
    const limited = await client(
      answering(
        429,
        { error: { code: 'TooManyRequests', message: 'the account is over its rate' } },
        { 'retry-after': '4' },
      ),
      1,
    )
      .get('/v1/pods')
      .catch((err: unknown) => err);
    expect(limited).toBeInstanceOf(ApiError);
    expect(limited).toMatchObject({ status: 429, code: 'TooManyRequests', retryAfterMs: 4000 });
    expect(isRetryable(limited)).toBe(true);

    const gateway = await client(answering(429, { message: 'Too Many Requests' }), 1)
      .get('/v1/pods')
      .catch((err: unknown) => err);
    expect(gateway).toMatchObject({ status: 429, retryAfterMs: undefined });
    expect((gateway as Error).message).toMatch(/^Too Many Requests \(HTTP 429 from GET /);
  });

  it('sends a request refused with 429 again after Retry-After, three times in all', async () => {
    let calls = 0;
    const flaky = (async () => {
      calls++;
      return calls < 3
        ? new Response(JSON.stringify({ message: 'Too Many Requests' }), {
            status: 429,
            headers: { 'retry-after': '0' },
          })
        : new Response(JSON.stringify({ items: [] }), { status: 200 });
    }) as typeof fetch;
    expect(await client(flaky).get('/v1/pods')).toEqual({ items: [] });
    expect(calls).toBe(3);

    calls = 0;
    const busy = answering(
      429,
      { error: { code: 'TooManyRequests', message: 'over' } },
      { 'retry-after': '0' },
    );
    const counted = (async (...args: Parameters<typeof fetch>) => {
      calls++;
      return busy(...args);
    }) as typeof fetch;
    await expect(client(counted).post('/v1/projects/p/runs', { body: {} })).rejects.toMatchObject({
      status: 429,
    });
    expect(calls).toBe(3);
  });
});
