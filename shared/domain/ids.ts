import { randomBytes } from 'node:crypto';
import { monotonicFactory } from 'ulid';

const nextUlid = monotonicFactory();

/** `run_` + ULID: unique, and sortable by creation time, which the list indexes rely on. */
export const newRunId = (now = Date.now()): string => `run_${nextUlid(now)}`;

export const RUN_ID_PATTERN = /^run_[0-9A-HJKMNP-TV-Z]{26}$/;

/** The smallest run id created at or after `ms`: a sort-key bound for time ranges. */
export const runIdLowerBound = (ms: number): string => `run_${encodeTime(ms)}${'0'.repeat(16)}`;

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const encodeTime = (ms: number): string => {
  let out = '';
  let rest = Math.max(0, Math.floor(ms));
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
};

/** An opaque random secret, URL-safe. */
export const randomToken = (bytes = 32): string => randomBytes(bytes).toString('base64url');
