import { z } from 'zod';
import { CPU_ARCHITECTURES, loadPriceTable } from './domain/pricing.js';

/** Handler configuration comes from the environment; each handler reads only what it needs. */
const envSchema = z.object({
  TABLE_NAME: z.string().min(1),
  QUEUE_URL: z.string().min(1),
  STATE_MACHINE_ARN: z.string().min(1),
  CLUSTER_ARN: z.string().min(1),
  AGENT_API_URL: z.string().min(1),
  /** the pods' log group (stdout/stderr, a stream per task) */
  LOG_GROUP_NAME: z.string().min(1),
  /** where the whole text of steps too large for their record is kept */
  STEP_LOG_GROUP_NAME: z.string().min(1),
  /** JWT claim names: the tenant, and the caller's role in it */
  TENANT_CLAIM: z.string().default('custom:accountId'),
  ACCOUNT_ROLE_CLAIM: z.string().default('custom:accountRole'),
  /** seconds between launch attempts, comma-separated, one per retry */
  LAUNCH_BACKOFF_SECONDS: z.string().default('5,20'),
  POD_HEARTBEAT_SECONDS: z.coerce.number().int().positive().default(60),
  /** how often a paused pod asks for control */
  CONTROL_POLL_MS: z.coerce.number().int().positive().default(3000),
  /** the price table as JSON (shared/domain/pricing.ts); empty or unset: the built-in one */
  PRICE_TABLE: z
    .string()
    .default('')
    .transform((json, ctx) => {
      try {
        return loadPriceTable(json);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /** the CPU architecture of the pods' task definition, which Fargate prices differently */
  POD_CPU_ARCHITECTURE: z.enum(CPU_ARCHITECTURES).default('ARM64'),
});
export type Env = z.infer<typeof envSchema>;

/** Read the named variables, failing at cold start with a clear message when one is missing. */
export const readEnv = <K extends keyof Env>(...keys: K[]): Pick<Env, K> => {
  const mask = Object.fromEntries(keys.map((k) => [k, true])) as Record<keyof Env, true>;
  const parsed = envSchema.pick(mask).safeParse(process.env);
  if (!parsed.success) {
    throw new Error(
      `configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data as unknown as Pick<Env, K>;
};
