import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/client.js';
import { ApiError, isRetryable } from '../../cli/errors.js';

const answering = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  (async () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json', ...headers },
    })) as typeof fetch;

const client = (fetchFn: typeof fetch) =>
  new ApiClient({ apiUrl: 'https://api.example.com', token: 't' }, fetchFn);

describe('ApiClient', () => {
  it('reads how long a 429 asks to wait, from the account limit and from API Gateway alike', async () => {
    const limited = await client(
      answering(
        429,
        { error: { code: 'TooManyRequests', message: 'the account is over its rate' } },
        {
          'retry-after': '4',
        },
      ),
    )
      .get('/v1/pods')
      .catch((err: unknown) => err);
    expect(limited).toBeInstanceOf(ApiError);
    expect(limited).toMatchObject({ status: 429, code: 'TooManyRequests', retryAfterMs: 4000 });
    expect(isRetryable(limited)).toBe(true);

    const gateway = await client(answering(429, { message: 'Too Many Requests' }))
      .get('/v1/pods')
      .catch((err: unknown) => err);
    expect(gateway).toMatchObject({ status: 429, retryAfterMs: undefined });
    expect((gateway as Error).message).toMatch(/^Too Many Requests \(HTTP 429 from GET /);
  });
});
