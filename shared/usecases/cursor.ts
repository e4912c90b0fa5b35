import { createHash } from 'node:crypto';
import { ValidationError } from '../domain/errors.js';

/**
 * Opaque page cursors. A cursor holds the position (the last item of the page) and a fingerprint of
 * the query it belongs to, so it cannot be replayed against another list, filter or run.
 */
const fingerprint = (scope: unknown): string =>
  createHash('sha256').update(JSON.stringify(scope)).digest('base64url').slice(0, 12);

export const encodeCursor = (scope: unknown, position: string): string =>
  Buffer.from(JSON.stringify({ p: position, f: fingerprint(scope) })).toString('base64url');

export const decodeCursor = (scope: unknown, cursor: string): string => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('the cursor is not valid');
  }
  const { p, f } = (parsed ?? {}) as { p?: unknown; f?: unknown };
  if (typeof p !== 'string' || typeof f !== 'string') throw new ValidationError('the cursor is not valid');
  if (f !== fingerprint(scope)) throw new ValidationError('the cursor belongs to another query');
  return p;
};
