import { POD_LIMITS } from '../domain/policy.js';
import { DISPATCH_SOURCES, RUN_MODES, RUN_SOURCES, RUN_STATUSES } from '../domain/run.js';
import {
  CHECKPOINTS,
  MAX_ACTIVE_RUNS_LIMIT,
  MAX_API_REQUESTS_PER_SECOND,
  PROJECT_ROLES,
} from '../domain/tenancy.js';
import * as z from '../zod.js';
import { demoScriptSchema } from './demo.js';
import { idSchema as id } from './ids.js';
import { checkpointsSchema, podAgentSchema, podEnvSchema, podHooksSchema, podSecretsSchema } from './pod.js';

/**
 * A repository is named by its clone URL, which the pod clones with the run's git credential: http(s)
 * only, and without a user or password of its own (the credential is the run's, and never stored).
 */
const repo = z.string().check(
  z.maxLength(300, 'at most 300 characters'),
  z.refine((value) => {
    try {
      const url = new URL(value);
      return /^https?:$/.test(url.protocol) && !url.username && !url.password && url.pathname.length > 1;
    } catch {
      return false;
    }
  }, 'a repository clone URL: http(s), without a user or password, e.g. https://github.com/org/app.git'),
);

export const idempotencyKeySchema = z
  .string()
  .check(z.regex(/^[\x21-\x7e]{1,200}$/, 'Idempotency-Key: 1 to 200 printable characters without spaces'));

export const promptSchema = z.string().check(z.minLength(1), z.maxLength(200_000));

/** the branch, tag or commit each repository is checked out at; absent: its default branch */
export const gitRefSchema = z
  .string()
  .check(
    z.regex(
      /^(?![-/.])(?!.*(?:\.\.|\/\/|@\{|\.lock$|[/.]$))[A-Za-z0-9._/@+-]{1,255}$/,
      'a git branch, tag or commit (letters, digits and . _ / @ + -; no "..")',
    ),
  );

export const dispatchRequestSchema = z.strictObject({
  itemId: id,
  podId: id,
  mode: z.enum(RUN_MODES),
  prompt: promptSchema,
  repos: z.optional(z.array(repo).check(z.maxLength(20))),
  ref: z.optional(gitRefSchema),
  source: z._default(z.enum(DISPATCH_SOURCES), 'api'),
  attribution: z.optional(z.string().check(z.maxLength(200))),
  config: z.optional(z.strictObject({ demo: z.optional(demoScriptSchema) })),
});
export type DispatchRequest = z.infer<typeof dispatchRequestSchema>;

const csv = <T extends string>(values: readonly [T, ...T[]]) =>
  z.pipe(
    z.pipe(
      z.string(),
      z.transform((s) =>
        s
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
      ),
    ),
    z.array(z.enum(values)).check(z.minLength(1), z.maxLength(values.length)),
  );

export const listQuerySchema = z.strictObject({
  status: z.optional(csv(RUN_STATUSES)),
  source: z.optional(z.enum(RUN_SOURCES)),
  podId: z.optional(id),
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 25),
  cursor: z.optional(z.string().check(z.maxLength(500))),
});
export type ListQuery = z.infer<typeof listQuerySchema>;

/** The task sizes Fargate runs (AWS's table for Linux): each CPU (units) with the memory (MiB) it allows. */
const inSteps = (from: number, to: number) => ({
  memoryMiB: Array.from({ length: (to - from) / 1024 + 1 }, (_, i) => from + i * 1024),
  says: `${from} to ${to} MiB in steps of 1024`,
});
const FARGATE_SIZES = {
  256: { memoryMiB: [512, 1024, 2048], says: '512, 1024 or 2048 MiB' },
  512: inSteps(1024, 4096),
  1024: inSteps(2048, 8192),
  2048: inSteps(4096, 16_384),
  4096: inSteps(8192, 30_720),
} as const;

export const podRequestSchema = z
  .strictObject({
    name: z.string().check(z.minLength(1), z.maxLength(200)),
    /**
     * a container image reference, in the characters and length ECS takes in a task definition (so a
     * reference it would refuse is a 400 here, not a failed registration); absent: the stack's own pod image
     */
    image: z.optional(
      z
        .string()
        .check(
          z.regex(
            /^[A-Za-z0-9][A-Za-z0-9._/:@#-]{0,254}$/,
            'an image reference: up to 255 letters, digits and . _ / : @ # - (registry/repository:tag or @digest)',
          ),
        ),
    ),
    cpu: z.union([z.literal(256), z.literal(512), z.literal(1024), z.literal(2048), z.literal(4096)], {
      error: '256, 512, 1024, 2048 or 4096 (CPU units; 1024 is one vCPU)',
    }),
    memoryMiB: z.int().check(z.gte(512), z.lte(30_720)),
    agent: podAgentSchema,
    hooks: z._default(podHooksSchema, {}),
    checkpoints: z._default(checkpointsSchema, [...CHECKPOINTS]),
    draftPullRequests: z._default(z.boolean(), false),
    env: z._default(podEnvSchema, {}),
    secrets: z._default(podSecretsSchema, {}),
    enabled: z._default(z.boolean(), true),
    maxDurationSeconds: z._default(z.int().check(z.gte(60), z.lte(POD_LIMITS.maxDurationSeconds)), 3600),
    // From 5 s, so tests and demos can watch a window expire; real windows are hours. Step Functions
    // enforces it as RequestApproval's timeout, whatever its length.
    approvalWindowSeconds: z._default(
      z.int().check(z.gte(5), z.lte(POD_LIMITS.maxApprovalWindowSeconds)),
      86_400,
    ),
    runBudgetMicroUsd: z._default(z.int().check(z.nonnegative()), 0),
  })
  // A size Fargate does not run would only fail at launch, run after run.
  .check(
    z.superRefine((pod, ctx) => {
      const size = FARGATE_SIZES[pod.cpu];
      if (!(size.memoryMiB as readonly number[]).includes(pod.memoryMiB)) {
        ctx.addIssue({
          code: 'custom',
          path: ['memoryMiB'],
          message: `a pod with cpu ${pod.cpu} runs with ${size.says} (the task sizes Fargate offers)`,
          input: pod.memoryMiB,
        });
      }
      for (const name of Object.keys(pod.secrets)) {
        if (name in pod.env) {
          ctx.addIssue({
            code: 'custom',
            path: ['secrets', name],
            message: `${name} is in env too: a variable is plain or secret, not both`,
            input: name,
          });
        }
      }
    }),
  );

/** GitHub's rule for logins: letters, digits and single inner hyphens, at most 39 characters. */
export const GITHUB_LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;

const gitHubLoginSchema = z
  .string()
  .check(z.regex(GITHUB_LOGIN, 'a GitHub login: letters, digits and single inner hyphens, at most 39'));

export const projectRequestSchema = z.strictObject({
  name: z.string().check(z.minLength(1), z.maxLength(200)),
  repos: z._default(z.array(repo).check(z.maxLength(50)), []),
  members: z._default(
    z
      .array(
        z.strictObject({
          userId: z.string().check(z.minLength(1), z.maxLength(200)),
          role: z.enum(PROJECT_ROLES),
          email: z.optional(z.email()),
          githubLogin: z.optional(gitHubLoginSchema),
        }),
      )
      .check(z.maxLength(500)),
    [],
  ),
});

/** The account's installation of the deployment's GitHub App (its id, from the App's settings or its webhook). */
export const gitHubLinkSchema = z.strictObject({ installationId: z.int().check(z.positive()) });

export const accountLimitsSchema = z.strictObject({
  dailyCapMicroUsd: z.int().check(z.nonnegative()),
  monthlyCapMicroUsd: z.int().check(z.nonnegative()),
  maxActiveRuns: z.optional(z.int().check(z.nonnegative(), z.lte(MAX_ACTIVE_RUNS_LIMIT))),
  apiRequestsPerSecond: z.optional(z.int().check(z.positive(), z.lte(MAX_API_REQUESTS_PER_SECOND))),
});
