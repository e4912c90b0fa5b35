import { CHECKPOINTS } from '../domain/tenancy.js';
import * as z from '../zod.js';

/**
 * A pod's agent configuration, as `PUT /v1/pods/{podId}` takes it and as the pod receives it frozen
 * in its run's config: the agent, its hooks and checkpoints, and the variables it runs with.
 */

/** Secrets Manager secrets a pod may name live under this prefix: the sandbox may read no other. */
export const POD_SECRETS_PREFIX = 'execution-runs/pods/';

/**
 * Where an account's own secrets live: one execution role reads every pod's secrets, so a pod may
 * name only those under its account's prefix, never another tenant's.
 */
export const accountSecretsPrefix = (accountId: string): string => `${POD_SECRETS_PREFIX}${accountId}/`;

/** Variables the runtime sets itself or that steer the container: a pod may not replace them. */
const RESERVED_VARIABLE = /^(RUN_ID|AGENT_API_URL|AGENT_LAUNCH_CODE|PATH|HOME|ECS_.*|AWS_.*)$/;

const variableName = z.string().check(
  z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'a variable name: letters, digits and _ (at most 128)'),
  z.refine((name) => !RESERVED_VARIABLE.test(name), 'a variable the runtime sets itself'),
);

export const podAgentSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('claude-code'),
    model: z.string().check(z.minLength(1), z.maxLength(200)),
    maxTurns: z.optional(z.int().check(z.gte(1), z.lte(1000))),
    allowedTools: z.optional(
      z.array(z.string().check(z.minLength(1), z.maxLength(200))).check(z.maxLength(100)),
    ),
  }),
  z.strictObject({
    kind: z.literal('command'),
    command: z
      .array(z.string().check(z.minLength(1), z.maxLength(4096)))
      .check(z.minLength(1), z.maxLength(100)),
  }),
  z.strictObject({ kind: z.literal('demo') }),
]);

export const hookSchema = z.strictObject({
  /** run with `sh -c` */
  command: z.string().check(z.minLength(1), z.maxLength(10_000)),
  timeoutSeconds: z._default(z.int().check(z.gte(1), z.lte(3600)), 600),
});

export const podHooksSchema = z.strictObject({
  postStart: z.optional(hookSchema),
  postClone: z.optional(hookSchema),
});

export const checkpointsSchema = z
  .array(z.enum(CHECKPOINTS))
  .check(z.refine((names) => new Set(names).size === names.length, 'each checkpoint at most once'));

export const podEnvSchema = z
  .record(variableName, z.string().check(z.maxLength(4096)))
  .check(z.refine((env) => Object.keys(env).length <= 100, 'at most 100 variables'));

export const podSecretsSchema = z
  .record(
    variableName,
    z
      .string()
      .check(
        z.regex(/^[A-Za-z0-9/_+=.@-]{1,512}$/, 'a Secrets Manager secret name'),
        z.startsWith(POD_SECRETS_PREFIX, `a secret whose name begins with ${POD_SECRETS_PREFIX}`),
      ),
  )
  .check(z.refine((secrets) => Object.keys(secrets).length <= 50, 'at most 50 secrets'));
