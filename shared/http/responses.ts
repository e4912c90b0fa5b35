import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { DomainError, TooManyRequestsError } from '../domain/errors.js';
import * as z from '../zod.js';

export type HttpResult = APIGatewayProxyResultV2 & { statusCode: number; body: string };

export const json = (
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): HttpResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

/** 204: done, nothing to show. */
export const noContent = (): HttpResult => ({ statusCode: 204, body: '' });

const STATUS_BY_CODE: Record<string, number> = {
  ValidationError: 400,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  TransitionRefused: 409,
  MissingRepoAccess: 409,
  PayloadTooLarge: 413,
  TooManyRequests: 429,
  NotConfigured: 501,
  ServiceUnavailable: 503,
};

export const errorBody = (code: string, message: string, details?: unknown) => ({
  error: details === undefined ? { code, message } : { code, message, details },
});

/** The one place domain errors become HTTP answers; anything unexpected is a 500 without internals. */
export const errorToResponse = (err: unknown): HttpResult => {
  if (err instanceof DomainError) {
    const headers: Record<string, string> =
      err instanceof TooManyRequestsError ? { 'retry-after': String(err.retryAfterSeconds) } : {};
    return json(STATUS_BY_CODE[err.code] ?? 400, errorBody(err.code, err.message, err.details), headers);
  }
  if (err instanceof z.ZodError) {
    return json(
      400,
      errorBody(
        'ValidationError',
        err.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; '),
        err.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      ),
    );
  }
  return json(500, errorBody('InternalError', 'an unexpected error occurred'));
};
