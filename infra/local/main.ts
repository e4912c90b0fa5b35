import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Endpoints, MODEL_PROVIDERS, startLocalCloud } from './cloud.js';

/** `npm start`: the local cloud in the foreground until Ctrl-C. */

const { values } = parseArgs({
  options: {
    'base-port': { type: 'string', default: process.env.LOCAL_BASE_PORT ?? '4510' },
    host: { type: 'string', default: '127.0.0.1' },
    'state-dir': { type: 'string', default: '.local' },
    persist: { type: 'boolean', default: false },
    'no-launch-limits': { type: 'boolean', default: false },
    'shared-pod-host': { type: 'boolean', default: false },
    model: { type: 'string', default: 'local' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  console.log(`Usage: npm start -- [options]

  --base-port N     first of 15 consecutive ports: API N, DynamoDB N+1, SQS N+2, Step Functions N+3,
                    ECS N+4, CloudWatch Logs N+5, SES N+6, the functions' DynamoDB front N+7,
                    git N+8, the local model N+9, Secrets Manager N+10, GitHub N+11, EventBridge
                    Scheduler N+12, the WebSocket API N+13, the console N+14 (default 4510; 0 = any
                    free ports)
  --host H          address to listen on (default 127.0.0.1)
  --state-dir DIR   where endpoints.json, the pod bundle and persisted data go (default .local)
  --persist         keep tables, queues, logs, git repositories, task definitions, secrets, GitHub's
                    pull requests, issues and deliveries, schedules and the dev signing key between
                    starts
  --no-launch-limits  do not limit pod launches the way Fargate does (100 burst, 20 per second)
  --shared-pod-host   run pods in one shared process instead of a process each, so a small
                      machine can carry hundreds of runs at once
  --model M         where Claude Code pods reach a model: local (the scripted local model, the
                    default), anthropic (the Anthropic API, with ANTHROPIC_API_KEY set) or bedrock
                    (Amazon Bedrock, with AWS_REGION and AWS credentials set)

Logs (CloudWatch Logs at N+5, services.logs in endpoints.json), as on AWS:
  /aws/lambda/execution-runs-<function>     each function's output, a stream per sandbox: warnings and
                                            errors (POWERTOOLS_LOG_LEVEL=INFO npm start for all), and
                                            the run metrics' EMF lines in run-feed's
  /aws/vendedlogs/states/execution-runs-runs  every event of every execution, with its data
  /execution-runs/pods                      the pods' output, each line beginning with its run id

A run's whole story, oldest first: the saved Logs Insights query execution-runs/run-story's filter
(@message like "<runId>") as FilterLogEvents' pattern, in every log group:

  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  RUN=<runId>; LOGS=--endpoint-url=http://127.0.0.1:4515
  for group in $(aws logs describe-log-groups $LOGS --query 'logGroups[].logGroupName' --output text); do
    aws logs filter-log-events $LOGS --log-group-name "$group" --filter-pattern "\\"$RUN\\"" \\
      --query 'events[].[timestamp,message]' --output text
  done | sort -n`);
  process.exit(0);
}

const checkJava = () => {
  try {
    const out = execFileSync('java', ['-version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out;
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === 'ENOENT') {
      console.error('DynamoDB Local needs Java 17 or newer, and `java` was not found on the PATH.');
      console.error(
        'Install it (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless) and run npm start again.',
      );
      process.exit(1);
    }
    return e.stderr ?? '';
  }
};

const printWelcome = (e: Endpoints, stateDir: string) => {
  console.log(`
The local cloud is running.

  Console      ${e.consoleUrl}  (sign in as the demo project's admin, a member or an outsider)
  API          ${e.apiUrl}
  WebSocket    ${e.wsUrl}  (a ticket from POST /v1/stream/tickets; or: npx runs watch <runId>)
  Inbox (SES)  ${e.inboxUrl}
  Project      ${e.projectId}      Pod ${e.podId}
  Endpoints    ${path.join(stateDir, 'endpoints.json')}

  Services     dynamodb ${e.services.dynamodb} (front ${e.services.dynamodbFront})  sqs ${e.services.sqs}
               stepfunctions ${e.services.stepfunctions}  ecs ${e.services.ecs}
               logs ${e.services.logs}  sesv2 ${e.services.sesv2}  git ${e.services.git}
               model ${e.services.model} (ANTHROPIC_BASE_URL for a scripted Claude)
               secretsmanager ${e.services.secretsmanager}  scheduler ${e.services.scheduler}
  GitHub       ${e.services.github}  (${e.github.login}: github.userToken in endpoints.json)
  Demo repo    ${e.demoRepo}

A dev token for the demo project's admin, and a first run:

export TOKEN=${e.token}
curl -s -X POST ${e.apiUrl}/v1/projects/${e.projectId}/runs -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"itemId":"ITEM-1","podId":"${e.podId}","mode":"autopilot","prompt":"Add a health check endpoint"}'
curl -s ${e.apiUrl}/v1/runs -H "authorization: Bearer $TOKEN"

Ctrl-C stops everything.`);
};

const main = async () => {
  checkJava();
  const basePort = Number(values['base-port']);
  if (!Number.isInteger(basePort) || basePort < 0 || basePort > 65_521) {
    console.error(`--base-port must be a port number from 0 to 65521, not ${values['base-port']}`);
    process.exit(2);
  }
  const modelProvider = MODEL_PROVIDERS.find((provider) => provider === values.model);
  if (!modelProvider) {
    console.error(`--model must be ${MODEL_PROVIDERS.join(', ')}, not ${values.model}`);
    process.exit(2);
  }
  let cloud: Awaited<ReturnType<typeof startLocalCloud>>;
  try {
    cloud = await startLocalCloud({
      basePort,
      host: values.host as string,
      stateDir: path.resolve(values['state-dir'] as string),
      persist: values.persist as boolean,
      launchBackoffSeconds: '1,2',
      podHeartbeatSeconds: 30,
      controlPollMs: 2000,
      launchLimits: !values['no-launch-limits'],
      sharedPodHost: values['shared-pod-host'],
      model: modelProvider,
      log: (line) => console.error(line),
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { port?: number };
    if (e.code === 'EADDRINUSE' || /EADDRINUSE/.test(e.message)) {
      console.error(
        `A port the local cloud needs is already in use (${e.message}). Stop whatever holds it, or choose other ports: npm start -- --base-port 4610`,
      );
      process.exit(1);
    }
    throw err;
  }
  printWelcome(cloud.endpoints, path.resolve(values['state-dir'] as string));
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping the local cloud...');
    await cloud.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
};

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
