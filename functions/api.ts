import type { APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { admitAccount, callerFromEvent } from '../shared/http/auth.js';
import { header, parseJsonBody, pathParam } from '../shared/http/request.js';
import { json } from '../shared/http/responses.js';
import { type RouteHandler, routeHandler } from '../shared/http/router.js';
import { type GitHubApp, type SpendLedger, type StreamConnections, systemClock } from '../shared/ports.js';
import {
  accountLimitsSchema,
  dispatchRequestSchema,
  gitHubLinkSchema,
  idempotencyKeySchema,
  listQuerySchema,
  podRequestSchema,
  projectRequestSchema,
} from '../shared/schemas/api.js';
import { logsQuerySchema, stepsQuerySchema } from '../shared/schemas/timeline.js';
import type { PodDeps } from '../shared/usecases/directory.js';
import * as directoryCases from '../shared/usecases/directory.js';
import { type RunLogDeps, readRunLogs } from '../shared/usecases/logs.js';
import type { RunCommandDeps } from '../shared/usecases/runs.js';
import * as runCases from '../shared/usecases/runs.js';
import { getAccountSpend, spendQuerySchema } from '../shared/usecases/spend.js';
import { issueTicket } from '../shared/usecases/stream.js';
import { type AccountThrottleDeps, accountThrottle } from '../shared/usecases/throttle.js';
import { getStepContent, listSteps, type TimelineDeps } from '../shared/usecases/timeline.js';
import {
  directoryRepository,
  GITHUB_APP_VARIABLES,
  gitHubApp,
  issueTeller,
  logReader,
  podTaskDefinitions,
  requestCounter,
  runList,
  runQueue,
  runStore,
  sandbox,
  spendLedger,
  stepContentStore,
  streamConnections,
  taskSignals,
  timeline,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** HTTP API v1: runs, pods, projects, account. Parse → use case → answer. */
export const makeHandler = (
  deps: RunCommandDeps &
    PodDeps &
    TimelineDeps &
    RunLogDeps &
    AccountThrottleDeps & { ledger: SpendLedger; github?: GitHubApp; connections: StreamConnections },
  settings: { tenant: string; accountRole: string; webSocketUrl: string },
) => {
  const claims = { tenant: settings.tenant, accountRole: settings.accountRole };
  type Event = APIGatewayProxyEventV2WithJWTAuthorizer;
  const caller = (event: Event) => callerFromEvent(event, claims);
  const query = (event: Event) => listQuerySchema.parse(event.queryStringParameters ?? {});
  const runAction =
    (
      action: (d: RunCommandDeps, c: ReturnType<typeof caller>, runId: string) => Promise<unknown>,
      status = 200,
    ): RouteHandler =>
    async (event) =>
      json(status, await action(deps, caller(event), pathParam(event, 'runId')));

  return routeHandler(
    {
      'POST /v1/projects/{projectId}/runs': async (event) => {
        const c = caller(event);
        const projectId = pathParam(event, 'projectId');
        const request = parseJsonBody(event, dispatchRequestSchema);
        const key = z.optional(idempotencyKeySchema).parse(header(event, 'idempotency-key'));
        const { run, created } = await runCases.dispatchRun(deps, c, projectId, request, key);
        return json(202, run, created ? {} : { 'idempotent-replayed': 'true' });
      },
      'GET /v1/projects/{projectId}/runs': async (event) =>
        json(200, await runCases.listRuns(deps, caller(event), query(event), pathParam(event, 'projectId'))),
      'GET /v1/runs': async (event) => json(200, await runCases.listRuns(deps, caller(event), query(event))),
      'GET /v1/runs/{runId}': runAction(runCases.getRun),
      'GET /v1/runs/{runId}/config': runAction(runCases.getRunConfig),
      'GET /v1/runs/{runId}/steps': async (event) =>
        json(
          200,
          await listSteps(
            deps,
            caller(event),
            pathParam(event, 'runId'),
            stepsQuerySchema.parse(event.queryStringParameters ?? {}),
          ),
        ),
      'GET /v1/runs/{runId}/steps/{seq}/content': async (event) => ({
        statusCode: 200,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        body: await getStepContent(deps, caller(event), pathParam(event, 'runId'), pathParam(event, 'seq')),
      }),
      'GET /v1/runs/{runId}/logs': async (event) =>
        json(
          200,
          await readRunLogs(
            deps,
            caller(event),
            pathParam(event, 'runId'),
            logsQuerySchema.parse(event.queryStringParameters ?? {}),
          ),
        ),
      'POST /v1/runs/{runId}/stop': runAction(runCases.stopRun),
      'POST /v1/runs/{runId}/done': runAction(runCases.closeRun),
      'POST /v1/runs/{runId}/replay': runAction(runCases.replayRun, 202),
      'POST /v1/runs/{runId}/redrive': runAction(runCases.redriveRun, 202),
      'GET /v1/pods': async (event) =>
        json(200, { items: await directoryCases.listPods(deps, caller(event)) }),
      'GET /v1/pods/{podId}': async (event) =>
        json(200, await directoryCases.getPod(deps, caller(event), pathParam(event, 'podId'))),
      'PUT /v1/pods/{podId}': async (event) =>
        json(
          200,
          await directoryCases.putPod(
            deps,
            caller(event),
            pathParam(event, 'podId'),
            parseJsonBody(event, podRequestSchema),
          ),
        ),
      'GET /v1/projects': async (event) =>
        json(200, { items: await directoryCases.listProjects(deps, caller(event)) }),
      'GET /v1/projects/{projectId}': async (event) =>
        json(200, await directoryCases.getProject(deps, caller(event), pathParam(event, 'projectId'))),
      'PUT /v1/projects/{projectId}': async (event) =>
        json(
          200,
          await directoryCases.putProject(
            deps,
            caller(event),
            pathParam(event, 'projectId'),
            parseJsonBody(event, projectRequestSchema),
          ),
        ),
      'GET /v1/account': async (event) => json(200, await directoryCases.getAccount(deps, caller(event))),
      'PUT /v1/account/limits': async (event) =>
        json(
          200,
          await directoryCases.setAccountLimits(
            deps,
            caller(event),
            parseJsonBody(event, accountLimitsSchema),
          ),
        ),
      'POST /v1/stream/tickets': async (event) =>
        json(201, await issueTicket(deps, caller(event), { webSocketUrl: settings.webSocketUrl })),
      'PUT /v1/account/github': async (event) =>
        json(
          200,
          await directoryCases.linkGitHub(
            deps,
            caller(event),
            parseJsonBody(event, gitHubLinkSchema).installationId,
          ),
        ),
      'GET /v1/account/spend': async (event) =>
        json(
          200,
          await getAccountSpend(
            deps,
            caller(event),
            spendQuerySchema.parse(event.queryStringParameters ?? {}).window,
          ),
        ),
    },
    { admit: admitAccount(accountThrottle(deps), claims) },
  );
};

const env = readEnv(
  'TABLE_NAME',
  'QUEUE_URL',
  'CLUSTER_ARN',
  'TENANT_CLAIM',
  'ACCOUNT_ROLE_CLAIM',
  'LOG_GROUP_NAME',
  'STEP_LOG_GROUP_NAME',
  'POD_TASK_DEFINITION_ARN',
  'POD_TASK_FAMILY_PREFIX',
  'POD_MODELS',
  'WEBSOCKET_URL',
  'PUBLIC_API_URL',
  ...GITHUB_APP_VARIABLES,
);

export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    list: runList(env.TABLE_NAME),
    timeline: timeline(env.TABLE_NAME),
    ledger: spendLedger(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    queue: runQueue(env.QUEUE_URL),
    signals: taskSignals(),
    sandbox: sandbox(env.CLUSTER_ARN),
    taskDefinitions: podTaskDefinitions({
      baseTaskDefinitionArn: env.POD_TASK_DEFINITION_ARN,
      familyPrefix: env.POD_TASK_FAMILY_PREFIX,
    }),
    podModels: env.POD_MODELS,
    github: gitHubApp(env),
    tellEnded: issueTeller(env),
    clock: systemClock,
    logs: logReader(env.LOG_GROUP_NAME),
    stepContent: stepContentStore(env.STEP_LOG_GROUP_NAME),
    cursorKey: signingSecret('cursor'),
    connections: streamConnections(env.TABLE_NAME),
    requests: requestCounter(env.TABLE_NAME),
  },
  { tenant: env.TENANT_CLAIM, accountRole: env.ACCOUNT_ROLE_CLAIM, webSocketUrl: env.WEBSOCKET_URL },
);
