import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  DomainError,
  ForbiddenError,
  NotFoundError,
  ServiceUnavailableError,
  TransitionRefusedError,
  UnauthorizedError,
  ValidationError,
} from '../../shared/domain/errors.js';

/** The code, message and details are what an API client reads in an error answer. */
describe('domain errors', () => {
  it.each([
    [
      'ValidationError',
      () => new ValidationError('bad seq', { seq: 3 }),
      { code: 'ValidationError', message: 'bad seq', details: { seq: 3 } },
    ],
    [
      'NotFoundError',
      () => new NotFoundError('run', 'run_1'),
      { code: 'NotFound', message: 'run run_1 was not found', details: { id: 'run_1' } },
    ],
    [
      'ForbiddenError',
      () => new ForbiddenError('admins only'),
      { code: 'Forbidden', message: 'admins only', details: undefined },
    ],
    [
      'UnauthorizedError',
      () => new UnauthorizedError(),
      { code: 'Unauthorized', message: 'missing or invalid credentials', details: undefined },
    ],
    [
      'UnauthorizedError',
      () => new UnauthorizedError('token expired'),
      { code: 'Unauthorized', message: 'token expired', details: undefined },
    ],
    [
      'ConflictError',
      () => new ConflictError('decided already', { decision: 'approved' }),
      { code: 'Conflict', message: 'decided already', details: { decision: 'approved' } },
    ],
    [
      'TransitionRefusedError',
      () => new TransitionRefusedError('run_1', 'DONE', 'RUNNING'),
      {
        code: 'TransitionRefused',
        message: 'run run_1 cannot move to DONE from RUNNING',
        details: { runId: 'run_1', to: 'DONE', current: 'RUNNING' },
      },
    ],
    [
      'TransitionRefusedError',
      () => new TransitionRefusedError('run_1', 'DONE'),
      {
        code: 'TransitionRefused',
        message: 'run run_1 cannot move to DONE',
        details: { runId: 'run_1', to: 'DONE', current: undefined },
      },
    ],
    [
      'ServiceUnavailableError',
      () => new ServiceUnavailableError('logs are throttled', { retryAfterSeconds: 1 }),
      { code: 'ServiceUnavailable', message: 'logs are throttled', details: { retryAfterSeconds: 1 } },
    ],
  ])('%s carries its code, message and details (case %#)', (name, make, expected) => {
    const err = make();

    expect(err).toBeInstanceOf(DomainError);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe(name);
    expect({ code: err.code, message: err.message, details: err.details }).toStrictEqual(expected);
  });
});
