/** An error the CLI reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const LOGIN_HINT = 'run "runs login --api URL --token TOKEN"';

export const NOT_SIGNED_IN = `not signed in or the token expired: ${LOGIN_HINT}`;

/** The API answered with an error (`{"error": {"code", "message"}}`, or API Gateway's `{"message"}`). */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    readonly details?: unknown,
    /** how long the API asked to wait before asking again (`Retry-After`, with a 429 or 503) */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** Worth asking again: the service or the gateway in front of it had a moment. */
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429;
  }
}

/** No answer: the API could not be reached, or did not answer in time. */
export class NetworkError extends CliError {
  readonly retryable = true;
  constructor(message: string) {
    super(message);
    this.name = 'NetworkError';
  }
}

/** The run's stream refused a message (`{"type": "error", "code", "message"}`), in the server's words. */
export class StreamError extends CliError {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'StreamError';
  }

  /**
   * Worth following again on a new connection: the server had a moment, no longer knows the
   * connection (a new ticket signs it in again), or stopped sending a long backlog part of the way.
   */
  get retryable(): boolean {
    return ['InternalError', 'ServiceUnavailable', 'Unauthorized', 'CatchUpUnfinished'].includes(this.code);
  }
}

/** The back-off, or longer where the API said how long to wait. */
export const retryDelayMs = (err: unknown, backoffMs: number): number =>
  Math.max(backoffMs, err instanceof ApiError ? (err.retryAfterMs ?? 0) : 0);

export const isRetryable = (err: unknown): boolean =>
  err instanceof NetworkError || ((err instanceof ApiError || err instanceof StreamError) && err.retryable);

/** Aborted by the user (Ctrl-C) or by the caller that owns the signal. */
export const isAbort = (err: unknown): boolean =>
  err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR');
