import { readEnv } from '../shared/config.js';
import { header, MAX_BODY_BYTES, parseJsonBody, pathParam } from '../shared/http/request.js';
import { json } from '../shared/http/responses.js';
import { routeHandler } from '../shared/http/router.js';
import { systemClock } from '../shared/ports.js';
import { agentEventBatchSchema } from '../shared/schemas/agent-events.js';
import {
  type AgentDeps,
  type AgentSettings,
  authenticateAgent,
  controlFor,
  ingestEvents,
  podConfig,
} from '../shared/usecases/agent.js';
import { directoryRepository, runRepository, stepContentStore, taskSignals } from '../shared/wiring.js';

/** Batches carry step content; a step can be large, so the Agent API takes bigger bodies than v1. */
const MAX_EVENTS_BODY_BYTES = 16 * MAX_BODY_BYTES;

/** The Agent API: the pod's only way in, with its run-scoped token. Every answer carries control. */
export const makeHandler = (deps: AgentDeps, settings: AgentSettings) => {
  const authenticated = (event: Parameters<Parameters<typeof routeHandler>[0][string]>[0]) => {
    const runId = pathParam(event, 'runId');
    return authenticateAgent(deps.runs, runId, header(event, 'authorization'));
  };
  return routeHandler({
    'GET /agent/v1/runs/{runId}': async (event) =>
      json(200, await podConfig(deps.runs, await authenticated(event), settings)),
    'POST /agent/v1/runs/{runId}/events': async (event) => {
      const run = await authenticated(event);
      const batch = parseJsonBody(event, agentEventBatchSchema, MAX_EVENTS_BODY_BYTES);
      return json(200, await ingestEvents(deps, settings, run, batch.events));
    },
    'GET /agent/v1/runs/{runId}/control': async (event) =>
      json(200, controlFor(await authenticated(event), settings)),
  });
};

const env = readEnv(
  'TABLE_NAME',
  'POD_HEARTBEAT_SECONDS',
  'CONTROL_POLL_MS',
  'STEP_LOG_GROUP_NAME',
  'PRICE_TABLE',
  'POD_CPU_ARCHITECTURE',
);
export const handler = makeHandler(
  {
    runs: runRepository(env.TABLE_NAME),
    signals: taskSignals(),
    clock: systemClock,
    stepContent: stepContentStore(env.STEP_LOG_GROUP_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    pricing: { table: env.PRICE_TABLE, architecture: env.POD_CPU_ARCHITECTURE },
  },
  { heartbeatSeconds: env.POD_HEARTBEAT_SECONDS, controlPollMs: env.CONTROL_POLL_MS },
);
