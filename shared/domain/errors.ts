import type { RunStatus } from './run.js';

/** Domain errors. One place (shared/http) maps them to HTTP answers. */
export class DomainError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ValidationError', message, details);
  }
}

export class NotFoundError extends DomainError {
  constructor(what: string, id: string) {
    super('NotFound', `${what} ${id} was not found`, { id });
  }
}

export class ForbiddenError extends DomainError {
  constructor(message: string) {
    super('Forbidden', message);
  }
}

export class UnauthorizedError extends DomainError {
  constructor(message = 'missing or invalid credentials') {
    super('Unauthorized', message);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('Conflict', message, details);
  }
}

/** A status change the lifecycle (or a concurrent writer) refused. */
export class TransitionRefusedError extends DomainError {
  constructor(
    readonly runId: string,
    readonly to: RunStatus,
    readonly current?: RunStatus,
  ) {
    super('TransitionRefused', `run ${runId} cannot move to ${to}${current ? ` from ${current}` : ''}`, {
      runId,
      to,
      current,
    });
  }
}

/** The run names repositories its git credential cannot be granted for. */
export class RepoAccessDeniedError extends DomainError {
  constructor(message: string, repos: string[]) {
    super('MissingRepoAccess', message, { repos });
  }
}

/** The deployment has nothing configured to do this: asking again will not help. */
export class NotConfiguredError extends DomainError {
  constructor(message: string) {
    super('NotConfigured', message);
  }
}

/** Over a request limit: the caller may try again after `retryAfterSeconds`. */
export class TooManyRequestsError extends DomainError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('TooManyRequests', message, { retryAfterSeconds });
  }
}

export class ServiceUnavailableError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ServiceUnavailable', message, details);
  }
}
