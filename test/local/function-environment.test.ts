import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLambdaRuntime, type LambdaRuntime } from '../../infra/local/lambda-runtime.js';
import { ENV_NAMES, type EnvName } from '../../shared/config.js';
import { FUNCTIONS, type FunctionName } from '../../shared/manifest.js';

/**
 * Each handler, bundled as it deploys and run in the local Lambda runtime with only its declared
 * environment (and Lambda's own variables), reads no project variable that its function does not
 * declare in shared/manifest.ts, and starts with what it declares. Reads are recorded by a proxy on
 * `process.env` that each bundle installs before the handler's modules run (fixtures/env-probe.ts),
 * through its import and one invocation with an event it refuses.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROBE = fileURLToPath(new URL('./fixtures/env-probe.ts', import.meta.url));
/** the event that asks a probed handler what it has read */
const VARIABLES_READ = 'variables-read';
/** Nothing listens there: a handler that calls AWS fails at once. */
const NOWHERE = 'http://127.0.0.1:9';

/** A value for every variable, as a local deployment has (the signing secrets in their local form). */
const VALUES = {
  TABLE_NAME: 'execution-runs',
  QUEUE_URL: `${NOWHERE}/000000000000/execution-runs`,
  STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:000000000000:stateMachine:execution-runs',
  CLUSTER_ARN: 'arn:aws:ecs:us-east-1:000000000000:cluster/execution-runs',
  AGENT_API_URL: NOWHERE,
  LOG_GROUP_NAME: '/execution-runs/pods',
  STEP_LOG_GROUP_NAME: '/execution-runs/steps',
  POD_TASK_DEFINITION_ARN: 'arn:aws:ecs:us-east-1:000000000000:task-definition/execution-runs-pod:1',
  POD_TASK_FAMILY_PREFIX: 'execution-runs-pod-',
  POD_MODELS: 'claude-sonnet-4-5,claude-haiku-4-5',
  TENANT_CLAIM: 'custom:accountId',
  ACCOUNT_ROLE_CLAIM: 'custom:accountRole',
  LAUNCH_BACKOFF_SECONDS: '5,20',
  POD_HEARTBEAT_SECONDS: '60',
  CONTROL_POLL_MS: '10000',
  PRICE_TABLE: '',
  POD_CPU_ARCHITECTURE: 'ARM64',
  PUBLIC_API_URL: NOWHERE,
  APPROVAL_SENDER: 'approvals@example.com',
  APPROVAL_SIGNING_SECRET: 'a-local-signing-secret-of-32-characters',
  CURSOR_SIGNING_SECRET: 'a-local-cursor-secret-of-32-characters',
  SWEEPER_STALE_AFTER_SECONDS: '120',
  GITHUB_APP_ID: '1',
  GITHUB_API_URL: NOWHERE,
  GITHUB_WEB_URL: NOWHERE,
  GITHUB_APP_SECRET: JSON.stringify({ privateKey: 'a-local-key', webhookSecret: 'a-local-webhook-secret' }),
  SCHEDULE_GROUP_NAME: 'execution-runs',
  SCHEDULE_TARGET_ARN: 'arn:aws:lambda:us-east-1:000000000000:function:execution-runs-scheduledDispatch',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::000000000000:role/execution-runs-scheduler',
  SCHEDULE_DEAD_LETTER_QUEUE_ARN: 'arn:aws:sqs:us-east-1:000000000000:execution-runs-schedules-dlq',
  WEBSOCKET_URL: 'ws://127.0.0.1:9/',
  WEBSOCKET_CALLBACK_URL: NOWHERE,
} satisfies Record<
  Exclude<EnvName, 'APPROVAL_SECRET_ARN' | 'CURSOR_SECRET_ARN' | 'GITHUB_APP_SECRET_ARN'>,
  string
>;

/** The project's variables: any a handler may read, and any a function declares. */
const PROJECT_VARIABLES = new Set<string>([
  ...ENV_NAMES,
  ...Object.values(FUNCTIONS).flatMap((definition) => definition.environment),
]);

/** The function's handler behind the probe, answering VARIABLES_READ with what it has read. */
const probed = (entry: string) => `import { variablesRead } from ${JSON.stringify(PROBE)};
import { handler as deployed } from ${JSON.stringify(path.join(ROOT, 'functions', `${entry}.ts`))};
export const handler = async (event, context, callback) =>
  event === ${JSON.stringify(VARIABLES_READ)} ? [...variablesRead] : deployed(event, context, callback);
`;

describe("each function's declared environment", () => {
  let dir: string;
  let runtime: LambdaRuntime;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'function-environment-'));
    await Promise.all(
      Object.values(FUNCTIONS).map(({ entry }) => writeFile(path.join(dir, `${entry}.ts`), probed(entry))),
    );
    runtime = createLambdaRuntime({
      functionsDir: dir,
      bundleDir: path.join(dir, 'bundles'),
      functions: FUNCTIONS,
      logLevel: 'SILENT',
    });
    runtime.configure({
      values: VALUES,
      endpoints: () =>
        Object.fromEntries(
          ['DYNAMODB', 'SQS', 'SFN', 'ECS', 'CLOUDWATCH_LOGS', 'SESV2'].map((service) => [
            `AWS_ENDPOINT_URL_${service}`,
            NOWHERE,
          ]),
        ),
    });
  });

  afterAll(async () => {
    await runtime.close();
    await rm(dir, { recursive: true, force: true });
  });

  it.each(Object.keys(FUNCTIONS) as FunctionName[])(
    '%s starts with the variables it declares and reads no other of the project’s',
    async (fn) => {
      const started = await runtime.invoke(fn, VARIABLES_READ).then(
        () => 'started',
        (err: Error) => `${fn} does not start with its declared environment: ${err.message}`,
      );
      expect(started).toBe('started');

      await runtime.invoke(fn, {}).catch(() => undefined);
      const read = (await runtime.invoke(fn, VARIABLES_READ)) as string[];

      const declared = new Set<string>(FUNCTIONS[fn].environment);
      const undeclared = read.filter((name) => PROJECT_VARIABLES.has(name) && !declared.has(name));
      expect(
        undeclared,
        `${fn} reads ${undeclared.join(', ')}, which shared/manifest.ts does not declare for it`,
      ).toEqual([]);
    },
  );
});
