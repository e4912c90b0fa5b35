import { z } from 'zod';
import { RUN_MODES, RUN_SOURCES, RUN_STATUSES } from '../domain/run.js';
import { PROJECT_ROLES } from '../domain/tenancy.js';
import { demoScriptSchema } from './demo.js';

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, _ . - (at most 128)');
const repo = z.string().min(1).max(300);

export const idempotencyKeySchema = z
  .string()
  .regex(/^[\x21-\x7e]{1,200}$/, 'Idempotency-Key: 1 to 200 printable characters without spaces');

export const dispatchRequestSchema = z
  .object({
    itemId: id,
    podId: id,
    mode: z.enum(RUN_MODES),
    prompt: z.string().min(1).max(200_000),
    repos: z.array(repo).max(20).optional(),
    source: z.enum(RUN_SOURCES).exclude(['replay']).default('api'),
    attribution: z.string().max(200).optional(),
    config: z
      .object({
        demo: demoScriptSchema.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type DispatchRequest = z.infer<typeof dispatchRequestSchema>;

const csv = <T extends string>(values: readonly [T, ...T[]]) =>
  z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.enum(values)).min(1).max(values.length));

export const listQuerySchema = z
  .object({
    status: csv(RUN_STATUSES).optional(),
    source: z.enum(RUN_SOURCES).optional(),
    podId: id.optional(),
    limit: z.coerce.number().int().min(1).max(100).default(25),
    cursor: z.string().max(500).optional(),
  })
  .strict();
export type ListQuery = z.infer<typeof listQuerySchema>;

export const podRequestSchema = z
  .object({
    name: z.string().min(1).max(200),
    image: z.string().min(1).max(500).default('default'),
    cpu: z.union([z.literal(256), z.literal(512), z.literal(1024), z.literal(2048), z.literal(4096)]),
    memoryMiB: z.number().int().min(512).max(30_720),
    model: z.string().min(1).max(200),
    enabled: z.boolean().default(true),
    maxDurationSeconds: z.number().int().min(60).max(86_400).default(3600),
    // From 5 s, so tests and demos can watch a window expire; real windows are hours. Step Functions
    // enforces it as RequestApproval's timeout, whatever its length.
    approvalWindowSeconds: z
      .number()
      .int()
      .min(5)
      .max(7 * 86_400)
      .default(86_400),
    runBudgetMicroUsd: z.number().int().nonnegative().default(0),
  })
  .strict();

export const projectRequestSchema = z
  .object({
    name: z.string().min(1).max(200),
    repos: z.array(repo).max(50).default([]),
    members: z
      .array(
        z
          .object({
            userId: z.string().min(1).max(200),
            role: z.enum(PROJECT_ROLES),
            email: z.email().optional(),
          })
          .strict(),
      )
      .max(500)
      .default([]),
  })
  .strict();

export const accountLimitsSchema = z
  .object({
    dailyCapMicroUsd: z.number().int().nonnegative(),
    monthlyCapMicroUsd: z.number().int().nonnegative(),
  })
  .strict();
