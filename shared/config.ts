import { z } from 'zod';

/** Handler configuration comes from the environment; each handler reads only what it needs. */
const envSchema = z.object({
  TABLE_NAME: z.string().min(1),
  QUEUE_URL: z.string().min(1),
  STATE_MACHINE_ARN: z.string().min(1),
  CLUSTER_ARN: z.string().min(1),
  AGENT_API_URL: z.string().min(1),
  /** JWT claim names: the tenant, and the caller's role in it */
  TENANT_CLAIM: z.string().default('custom:accountId'),
  ACCOUNT_ROLE_CLAIM: z.string().default('custom:accountRole'),
  /** seconds between launch attempts, comma-separated, one per retry */
  LAUNCH_BACKOFF_SECONDS: z.string().default('5,20'),
  POD_HEARTBEAT_SECONDS: z.coerce.number().int().positive().default(60),
  /** how often a paused pod asks for control */
  CONTROL_POLL_MS: z.coerce.number().int().positive().default(3000),
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
