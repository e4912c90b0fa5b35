import { setTimeout as sleep } from 'node:timers/promises';
import { AgentApi, backoffMs, ownTaskArn, RetryableError } from './agent-api.js';
import { runLines } from './run-lines.js';
import { runPod } from './runtime.js';

export interface ContainerIo {
  /**
   * The task's environment: RUN_ID, AGENT_API_URL and AGENT_LAUNCH_CODE come from its overrides,
   * ECS_CONTAINER_METADATA_URI_V4 from ECS.
   */
  env: Record<string, string | undefined>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** aborted when ECS asks the container to stop (SIGTERM) */
  terminate: AbortSignal;
}

/** How long the pod keeps trying to exchange its launch code before it gives up. */
const EXCHANGE_DEADLINE_MS = 120_000;
/**
 * The first retries come quickly: a pod that starts before the state machine has recorded its task
 * (at once in the local cloud's shared pod host; never on Fargate) is let in a moment later.
 */
const EXCHANGE_RETRY_BASE_MS = 50;

/**
 * The one-time launch code (readable to anyone who can read the run's execution history) is spent
 * at once for the run-scoped token, which never leaves the pod. Network failures and "not yet"
 * answers are tried again; a refusal is final.
 */
const exchangeLaunchCode = async (
  api: AgentApi,
  code: string,
  metadataUri: string,
  terminate: AbortSignal,
  warn: (line: string) => void,
): Promise<void> => {
  const deadline = Date.now() + EXCHANGE_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      await api.exchange(code, await ownTaskArn(metadataUri, terminate), terminate);
      return;
    } catch (err) {
      if (!(err instanceof RetryableError) || Date.now() > deadline) throw err;
      const wait = backoffMs(attempt, EXCHANGE_RETRY_BASE_MS, 5000);
      warn(`pod: exchanging the launch code failed (${err.message}); retrying in ${Math.round(wait)} ms`);
      await sleep(wait, undefined, { signal: terminate });
    }
  }
};

/** The container's program, whatever hosts it; resolves to its exit code. */
export const runContainer = async (io: ContainerIo): Promise<number> => {
  const { env, terminate } = io;
  const { RUN_ID, AGENT_API_URL, AGENT_LAUNCH_CODE, ECS_CONTAINER_METADATA_URI_V4 } = env;
  const stdout = RUN_ID ? runLines(io.stdout, RUN_ID) : io.stdout;
  const stderr = RUN_ID ? runLines(io.stderr, RUN_ID) : io.stderr;
  const warn = (line: string) => void stderr.write(`${line}\n`);
  if (!RUN_ID || !AGENT_API_URL || !AGENT_LAUNCH_CODE || !ECS_CONTAINER_METADATA_URI_V4) {
    warn('pod: RUN_ID, AGENT_API_URL, AGENT_LAUNCH_CODE and ECS_CONTAINER_METADATA_URI_V4 must be set');
    return 1;
  }
  const api = new AgentApi(AGENT_API_URL, RUN_ID);
  try {
    await exchangeLaunchCode(api, AGENT_LAUNCH_CODE, ECS_CONTAINER_METADATA_URI_V4, terminate, warn);
  } catch (err) {
    if (terminate.aborted) return 0;
    warn(`pod: no run-scoped token: ${(err as Error).message}`);
    return 1;
  }
  return runPod({ runId: RUN_ID, api, stdout, stderr, env, terminate });
};
