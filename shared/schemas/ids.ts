import { APPROVAL_ID_PATTERN } from '../domain/approval.js';
import { RUN_ID_PATTERN } from '../domain/ids.js';
import * as z from '../zod.js';

/**
 * What every id the API takes looks like, in one place: ids callers choose (projects, pods, items, schedules),
 * the ids the backend makes (runs, approvals), and step sequence numbers. Anything else is refused
 * at the edge with a 400, before it can reach a key (DynamoDB refuses keys over 2 KB with an error).
 */

export const idSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, _ . - (at most 128)'));

export const runIdSchema = z
  .string()
  .check(z.regex(RUN_ID_PATTERN, 'run_ followed by a 26-character ULID (0-9, A-Z without I, L, O, U)'));

export const approvalIdSchema = z
  .string()
  .check(z.regex(APPROVAL_ID_PATTERN, '16 to 64 letters, digits, _ or -'));

/** Steps and events are keyed with their seq in 10 digits, so nothing above this fits. */
export const MAX_SEQ = 9_999_999_999;

export const seqSchema = z.int().check(z.nonnegative(), z.lte(MAX_SEQ, `at most ${MAX_SEQ}`));

/** A seq as text (a path segment or a query value): digits only, so `1e3`, `0x10` or ` 7` are refused. */
export const seqTextSchema = z.pipe(
  z.string().check(z.regex(/^\d{1,10}$/, `an integer from 0 to ${MAX_SEQ}`)),
  z.transform(Number),
);

/** Each path parameter of the routes (shared/manifest.ts) and what it must look like. */
export const PATH_PARAMETERS = {
  runId: runIdSchema,
  projectId: idSchema,
  podId: idSchema,
  scheduleId: idSchema,
  approvalId: approvalIdSchema,
  seq: seqTextSchema,
} as const;
export type PathParameter = keyof typeof PATH_PARAMETERS;
