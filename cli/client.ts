import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, NetworkError, NOT_SIGNED_IN } from './errors.js';

export interface Settings {
  apiUrl: string;
  token: string;
}

export interface CallOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface Answer<T> {
  status: number;
  body: T;
  headers: Headers;
}

/** The part of the client a follower needs: reads. */
export interface ApiReader {
  get<T>(path: string, options?: CallOptions): Promise<T>;
}

const TIMEOUT_MS = 30_000;
/** Attempts of a request answered 429, and the longest wait between two (the account's window). */
const THROTTLED_ATTEMPTS = 3;
const MAX_THROTTLED_WAIT_MS = 10_000;

/** The HTTP API over `fetch`: JSON in and out, and every failure as one error with a clear message. */
export class ApiClient implements ApiReader {
  constructor(
    private readonly settings: Settings,
    private readonly fetchFn: typeof fetch = fetch,
    private readonly timeoutMs = TIMEOUT_MS,
    private readonly throttledAttempts = THROTTLED_ATTEMPTS,
  ) {}

  get apiUrl(): string {
    return this.settings.apiUrl;
  }

  async get<T>(path: string, options: CallOptions = {}): Promise<T> {
    return (await this.call<T>('GET', path, options)).body;
  }

  async post<T>(path: string, options: CallOptions = {}): Promise<T> {
    return (await this.call<T>('POST', path, options)).body;
  }

  /**
   * A 429 was refused before any work was done (by the account's request limit or by API Gateway), so
   * any request may be sent again: after what `Retry-After` says (a second when it says nothing), up
   * to `throttledAttempts` in all.
   */
  async call<T>(method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce<T>(method, path, options);
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 429 || attempt >= this.throttledAttempts) throw err;
        const waitMs = Math.min(err.retryAfterMs ?? 1000, MAX_THROTTLED_WAIT_MS);
        await sleep(waitMs, undefined, { signal: options.signal });
      }
    }
  }

  private async callOnce<T>(method: string, path: string, options: CallOptions): Promise<Answer<T>> {
    const where = `${this.settings.apiUrl}${path}`;
    const url = new URL(where);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = {
      accept: 'application/json',
      authorization: `Bearer ${this.settings.token}`,
      ...options.headers,
    };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
      });
      text = await res.text();
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (timeout.aborted) {
        throw new NetworkError(`no answer from ${where} within ${this.timeoutMs / 1000} s`);
      }
      throw new NetworkError(`could not reach ${where}: ${reasonOf(err)}`);
    }
    const body = parse(text);
    if (res.ok) return { status: res.status, body: body as T, headers: res.headers };
    throw errorOf(res.status, body, `${method} ${where}`, res.headers);
  }
}

const parse = (text: string): unknown => {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

/** The innermost cause's code or message: `ECONNREFUSED`, `getaddrinfo ENOTFOUND host`. */
const reasonOf = (err: unknown): string => {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
  if (cause instanceof AggregateError && cause.errors[0] instanceof Error) cause = cause.errors[0];
  if (!(cause instanceof Error)) return String(cause);
  const code = (cause as { code?: unknown }).code;
  return typeof code === 'string' && !cause.message.includes(code) ? code : cause.message;
};

/** `Retry-After` in seconds, as the API sends it (an HTTP date is not). */
const retryAfterMsOf = (headers: Headers): number | undefined => {
  const seconds = Number(headers.get('retry-after') ?? Number.NaN);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
};

const errorOf = (status: number, body: unknown, request: string, headers: Headers): ApiError => {
  if (status === 401) return new ApiError(NOT_SIGNED_IN, status, 'Unauthorized');
  const retryAfterMs = retryAfterMsOf(headers);
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)
    ?.error;
  if (error && typeof error.message === 'string') {
    return new ApiError(
      error.message,
      status,
      typeof error.code === 'string' ? error.code : undefined,
      error.details,
      retryAfterMs,
    );
  }
  const message = (body as { message?: unknown } | undefined)?.message;
  const said =
    typeof message === 'string'
      ? `${message} (HTTP ${status} from ${request})`
      : `HTTP ${status} from ${request}`;
  return new ApiError(said, status, undefined, undefined, retryAfterMs);
};
