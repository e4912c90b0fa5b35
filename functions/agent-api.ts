import { readEnv } from '../shared/config.js';
import { LAUNCH } from '../shared/domain/policy.js';
import { header, MAX_BODY_BYTES, parseJsonBody, pathParam } from '../shared/http/request.js';
import { json } from '../shared/http/responses.js';
import { type RouteHandler, routeHandler } from '../shared/http/router.js';
import { systemClock } from '../shared/ports.js';
import { agentEventBatchSchema, launchCodeExchangeSchema } from '../shared/schemas/agent-events.js';
import {
  type AgentDeps,
  type AgentSettings,
  authenticateAgent,
  controlOf,
  exchangeLaunchCode,
  gitCredentialFor,
  ingestEvents,
  podConfig,
} from '../shared/usecases/agent.js';
import { tokenlessRefusals } from '../shared/usecases/throttle.js';
import {
  activeRuns,
  directoryRepository,
  GITHUB_APP_VARIABLES,
  gitHubApp,
  runStore,
  spendLedger,
  stepContentStore,
  taskSignals,
} from '../shared/wiring.js';

/** Batches carry step content; a step can be large, so the Agent API takes bigger bodies than v1. */
const MAX_EVENTS_BODY_BYTES = 16 * MAX_BODY_BYTES;

/** The Agent API: the pod's only way in, with its run-scoped token. Every answer carries control. */
export const makeHandler = (deps: AgentDeps, settings: AgentSettings) => {
  const refuseTokenless = tokenlessRefusals(deps.clock);
  const authenticated = (event: Parameters<RouteHandler>[0]) =>
    authenticateAgent(deps.runs, pathParam(event, 'runId'), header(event, 'authorization'), (unauthorized) =>
      refuseTokenless(event.requestContext.http.sourceIp, unauthorized),
    );
  return routeHandler({
    'POST /agent/v1/runs/{runId}/token': async (event) =>
      json(
        200,
        await exchangeLaunchCode(
          deps.runs,
          pathParam(event, 'runId'),
          parseJsonBody(event, launchCodeExchangeSchema),
        ),
      ),
    'GET /agent/v1/runs/{runId}': async (event) =>
      json(200, await podConfig(deps.runs, (await authenticated(event)).run, settings)),
    'POST /agent/v1/runs/{runId}/events': async (event) => {
      const read = await authenticated(event);
      const batch = parseJsonBody(event, agentEventBatchSchema, MAX_EVENTS_BODY_BYTES);
      return json(200, await ingestEvents(deps, settings, read, batch.events));
    },
    'GET /agent/v1/runs/{runId}/control': async (event) =>
      json(200, await controlOf(deps, settings, (await authenticated(event)).run)),
    // A credential is not to be kept by anything between the pod and the API.
    'POST /agent/v1/runs/{runId}/git-credentials': async (event) =>
      json(200, await gitCredentialFor(deps, (await authenticated(event)).run), {
        'cache-control': 'no-store',
      }),
  });
};

const env = readEnv(
  'TABLE_NAME',
  'POD_HEARTBEAT_SECONDS',
  'CONTROL_POLL_MS',
  'STEP_LOG_GROUP_NAME',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
  ...GITHUB_APP_VARIABLES,
);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    ledger: spendLedger(env.TABLE_NAME),
    signals: taskSignals(),
    clock: systemClock,
    stepContent: stepContentStore(env.STEP_LOG_GROUP_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
    slots: activeRuns(env.TABLE_NAME),
    // installation tokens of the deployment's GitHub App; without one, none (the Agent API says so)
    gitCredentials: gitHubApp(env),
  },
  {
    heartbeatSeconds: env.POD_HEARTBEAT_SECONDS,
    controlPollMs: env.CONTROL_POLL_MS,
    pausedCapCheckMs: LAUNCH.pausedCapCheckMs,
  },
);
