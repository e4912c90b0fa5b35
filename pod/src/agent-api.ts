import {
  type AgentEvent,
  agentTokenSchema,
  type Control,
  controlSchema,
  type EventsResponse,
  eventsResponseSchema,
  type GitCredential,
  gitCredentialSchema,
  type PodRunConfig,
  podRunConfigSchema,
} from '../../shared/schemas/agent-events.js';
import type * as z from '../../shared/zod.js';

/** The run is over or its token is gone (401/403/404): nothing the pod sends matters any more. */
export class RunGoneError extends Error {
  constructor(readonly status: number) {
    super(`the Agent API answered ${status}: the run is over or the token is no longer valid`);
  }
}

/** Worth trying again: the network failed, the server failed (5xx) or asked to slow down (429). */
export class RetryableError extends Error {}

/** The server refused the request itself (another 4xx); sending it again would not help. */
export class RequestRejectedError extends Error {
  /** the error code the answer names, such as `MissingRepoAccess` */
  readonly code: string | undefined;
  /** the error message the answer gives, or its body */
  readonly said: string;

  constructor(
    readonly status: number,
    body: string,
  ) {
    super(`the Agent API refused the request with ${status}: ${body.slice(0, 500)}`);
    let error: { code?: unknown; message?: unknown } | undefined;
    try {
      error = (JSON.parse(body) as { error?: typeof error }).error;
    } catch {
      // not the API's error shape
    }
    this.code = typeof error?.code === 'string' ? error.code : undefined;
    this.said = typeof error?.message === 'string' ? error.message : body.slice(0, 500);
  }
}

/** A 2xx whose body is not what the route promises. */
export class InvalidAnswerError extends Error {}

const GONE_STATUSES = new Set([401, 403, 404]);

/**
 * The pod's only connection to the backend: its run's routes, with the run-scoped bearer token it
 * gets by exchanging the one-time launch code (`exchange`).
 */
export class AgentApi {
  private readonly runUrl: string;

  constructor(
    baseUrl: string,
    runId: string,
    private token = '',
    private readonly requestTimeoutMs = 15_000,
  ) {
    this.runUrl = `${baseUrl.replace(/\/+$/, '')}/agent/v1/runs/${encodeURIComponent(runId)}`;
  }

  /** Spends the launch code, with the task the pod runs as, for the run-scoped token; returns it. */
  async exchange(code: string, taskArn: string, signal?: AbortSignal): Promise<string> {
    const body = JSON.stringify({ code, taskArn });
    const { token } = await this.request('POST', '/token', agentTokenSchema, body, signal);
    this.token = token;
    return token;
  }

  getConfig(signal?: AbortSignal): Promise<PodRunConfig> {
    return this.request('GET', '', podRunConfigSchema, undefined, signal);
  }

  postEvents(events: AgentEvent[], signal?: AbortSignal): Promise<EventsResponse> {
    return this.request('POST', '/events', eventsResponseSchema, JSON.stringify({ events }), signal);
  }

  /** A short-lived credential for the run's repositories. */
  getGitCredential(signal?: AbortSignal): Promise<GitCredential> {
    return this.request('POST', '/git-credentials', gitCredentialSchema, '{}', signal);
  }

  getControl(signal?: AbortSignal): Promise<Control> {
    return this.request('GET', '/control', controlSchema, undefined, signal);
  }

  private async request<T>(
    method: 'GET' | 'POST',
    path: string,
    schema: z.ZodMiniType<T>,
    body: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.runUrl}${path}`, {
        method,
        headers: {
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new RetryableError(`${method} ${path || '/'} failed: ${(err as Error).message}`, { cause: err });
    }
    const text = await response.text().catch(() => '');
    if (GONE_STATUSES.has(response.status)) throw new RunGoneError(response.status);
    // 501: the deployment lacks what was asked for; asking again will not help
    if (response.status === 429 || (response.status >= 500 && response.status !== 501)) {
      throw new RetryableError(`${method} ${path || '/'} answered ${response.status}`);
    }
    if (!response.ok) throw new RequestRejectedError(response.status, text);
    try {
      return schema.parse(JSON.parse(text));
    } catch (err) {
      throw new InvalidAnswerError(
        `${method} ${path || '/'} answered something unexpected: ${text.slice(0, 200)}`,
        {
          cause: err,
        },
      );
    }
  }
}

/** Capped exponential back-off with jitter: between half and all of min(cap, base * 2^attempt). */
export const backoffMs = (attempt: number, baseMs: number, capMs: number): number => {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
};

/** The task's ARN, from the task metadata endpoint ECS gives every container. */
export const ownTaskArn = async (metadataUri: string, signal?: AbortSignal): Promise<string> => {
  const response = await fetch(`${metadataUri}/task`, { signal: signal ?? AbortSignal.timeout(5000) });
  if (!response.ok) throw new RetryableError(`the task metadata endpoint answered ${response.status}`);
  const { TaskARN } = (await response.json()) as { TaskARN?: unknown };
  if (typeof TaskARN !== 'string') throw new Error('the task metadata has no TaskARN');
  return TaskARN;
};
