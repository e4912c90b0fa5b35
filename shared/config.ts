import { LAUNCH, SWEEPER } from './domain/policy.js';
import { CPU_ARCHITECTURES, loadPriceTable } from './domain/pricing.js';
import * as z from './zod.js';

/** The JWT claims the caller's tenant and role are read from unless TENANT_CLAIM and ACCOUNT_ROLE_CLAIM say. */
export const DEFAULT_CLAIMS = { tenant: 'custom:accountId', accountRole: 'custom:accountRole' } as const;

/** Handler configuration comes from the environment; each handler reads only what it needs. */
const envSchema = z.object({
  TABLE_NAME: z.string().check(z.minLength(1)),
  QUEUE_URL: z.string().check(z.minLength(1)),
  STATE_MACHINE_ARN: z.string().check(z.minLength(1)),
  CLUSTER_ARN: z.string().check(z.minLength(1)),
  AGENT_API_URL: z.string().check(z.minLength(1)),
  /** the stack's pod task definition: launched for pods that need none of their own, copied for those that do */
  POD_TASK_DEFINITION_ARN: z.string().check(z.minLength(1)),
  /** every pod's own task definition is of a family beginning with it: IAM scopes their use to it */
  POD_TASK_FAMILY_PREFIX: z.string().check(z.minLength(1)),
  /** the pods' log group (stdout/stderr, a stream per task) */
  LOG_GROUP_NAME: z.string().check(z.minLength(1)),
  /** where the whole text of steps too large for their record is kept */
  STEP_LOG_GROUP_NAME: z.string().check(z.minLength(1)),
  /** JWT claim names: the tenant, and the caller's role in it */
  TENANT_CLAIM: z._default(z.string(), DEFAULT_CLAIMS.tenant),
  ACCOUNT_ROLE_CLAIM: z._default(z.string(), DEFAULT_CLAIMS.accountRole),
  /** seconds between launch attempts, comma-separated, one per retry */
  LAUNCH_BACKOFF_SECONDS: z._default(z.string(), '5,20'),
  POD_HEARTBEAT_SECONDS: z._default(z.coerce.number().check(z.int(), z.positive()), LAUNCH.heartbeatSeconds),
  /** how long a run may stay QUEUED before the sweeper re-queues it (shorter in fault tests) */
  SWEEPER_STALE_AFTER_SECONDS: z._default(
    z.coerce.number().check(z.int(), z.positive()),
    SWEEPER.staleAfterSeconds,
  ),
  /** how often a paused pod asks for control */
  CONTROL_POLL_MS: z._default(z.coerce.number().check(z.int(), z.positive()), LAUNCH.controlPollMs),
  /** the price table as JSON (shared/domain/pricing.ts); empty or unset: the built-in one */
  PRICE_TABLE: z.pipe(
    z._default(z.string(), ''),
    z.transform((json, ctx) => {
      try {
        return loadPriceTable(json);
      } catch (err) {
        ctx.issues.push({ code: 'custom', message: (err as Error).message, input: json });
        return z.NEVER;
      }
    }),
  ),
  /** the CPU architecture of the pods' task definition, which Fargate prices differently */
  POD_CPU_ARCHITECTURE: z._default(z.enum(CPU_ARCHITECTURES), 'ARM64'),
  /** the API's public base URL, which the approval links point at */
  PUBLIC_API_URL: z.url(),
  /** the WebSocket API's URL, handed out with stream tickets (wss://...) */
  WEBSOCKET_URL: z.url(),
  /** the WebSocket API's @connections endpoint, where messages to connections are posted */
  WEBSOCKET_CALLBACK_URL: z.url(),
  /** the verified SES identity approval mail comes from */
  APPROVAL_SENDER: z.email(),
  /**
   * The approval links' signing key: on AWS the Secrets Manager secret's ARN, read through the
   * Parameters and Secrets extension; locally the key itself. Each deployment sets one of the two.
   */
  APPROVAL_SECRET_ARN: z.optional(z.string()),
  APPROVAL_SIGNING_SECRET: z.optional(z.string()),
  /** The page cursors' signing key (the API's own), given the same two ways. */
  CURSOR_SECRET_ARN: z.optional(z.string()),
  CURSOR_SIGNING_SECRET: z.optional(z.string()),
  /**
   * The models a Claude Code pod may name, comma-separated: on AWS the Bedrock models the pods' task
   * role may invoke. Unset (locally): any.
   */
  POD_MODELS: z.optional(
    z.pipe(
      z.string(),
      z.transform((list) =>
        list
          .split(',')
          .map((model) => model.trim())
          .filter(Boolean),
      ),
    ),
  ),
  /**
   * The deployment's GitHub App: its id, its REST API (https://api.github.com, or a GitHub Enterprise
   * Server's /api/v3) and where its repositories are cloned from. Unset: no GitHub.
   */
  GITHUB_APP_ID: z.optional(z.coerce.number().check(z.int(), z.positive())),
  GITHUB_API_URL: z.optional(z.url()),
  GITHUB_WEB_URL: z.optional(z.url()),
  /** its private key and webhook secret, as JSON: the secret's ARN on AWS, the JSON itself locally */
  GITHUB_APP_SECRET_ARN: z.optional(z.string()),
  GITHUB_APP_SECRET: z.optional(z.string()),
  /** EventBridge Scheduler: the group the schedules' copies are in, ... */
  SCHEDULE_GROUP_NAME: z.string().check(z.minLength(1)),
  /** ... the function their ticks invoke (scheduled-dispatch), ... */
  SCHEDULE_TARGET_ARN: z.string().check(z.minLength(1)),
  /** ... the role Scheduler invokes it with, ... */
  SCHEDULER_ROLE_ARN: z.string().check(z.minLength(1)),
  /** ... and the queue a tick goes to once its retries are spent */
  SCHEDULE_DEAD_LETTER_QUEUE_ARN: z.string().check(z.minLength(1)),
});
export type Env = z.infer<typeof envSchema>;
/** The variables a handler may read; the manifest declares which ones each function gets. */
export type EnvName = keyof Env;
export const ENV_NAMES = Object.keys(envSchema.shape) as EnvName[];

/** A variable a function cannot start without: it has no default and may not be absent. */
export const isRequiredEnv = (name: EnvName): boolean => !envSchema.shape[name].safeParse(undefined).success;

/** Read the named variables, failing at cold start with a clear message when one is missing. */
export const readEnv = <K extends keyof Env>(...keys: K[]): Pick<Env, K> => {
  const mask = Object.fromEntries(keys.map((k) => [k, true])) as Record<keyof Env, true>;
  const parsed = z.pick(envSchema, mask).safeParse(process.env);
  if (!parsed.success) {
    throw new Error(
      `configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data as unknown as Pick<Env, K>;
};
