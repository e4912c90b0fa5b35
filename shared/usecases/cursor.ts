import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { ValidationError } from '../domain/errors.js';

/**
 * Opaque page cursors. A cursor holds the position (the last item of a page, or a CloudWatch Logs
 * token) and a fingerprint of the query it belongs to, signed with HMAC-SHA256 under the API's cursor
 * key: a client can neither make up a position (a key bound DynamoDB refuses, a token CloudWatch
 * refuses) nor replay a cursor against another list, filter or run.
 */

export interface CursorDeps {
  /** the key cursors are signed with (a secret of its own, read once per container) */
  cursorKey: () => Promise<string>;
}

const fingerprint = (scope: unknown): string =>
  createHash('sha256').update(JSON.stringify(scope)).digest('base64url').slice(0, 12);

const notValid = () =>
  new ValidationError('the cursor is not valid: pass a cursor exactly as a page of this API returned it');

export class PageCursors {
  constructor(private readonly key: string) {}

  encode(scope: unknown, position: string): string {
    const payload = Buffer.from(JSON.stringify({ p: position, f: fingerprint(scope) })).toString('base64url');
    return `${payload}.${this.sign(payload)}`;
  }

  decode(scope: unknown, cursor: string): string {
    const [payload = '', signature = '', ...rest] = cursor.split('.');
    if (rest.length > 0 || !this.verify(payload, signature)) throw notValid();
    // Signed by this key, so it is what encode wrote.
    const { p, f } = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      p: string;
      f: string;
    };
    if (f !== fingerprint(scope)) throw new ValidationError('the cursor belongs to another query');
    return p;
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url');
  }

  /** The signature's text exactly, compared in constant time (its length is no secret). */
  private verify(payload: string, signature: string): boolean {
    const given = Buffer.from(signature);
    const expected = Buffer.from(this.sign(payload));
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
