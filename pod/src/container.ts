import { runPod } from './runtime.js';

export interface ContainerIo {
  /** the task's environment: RUN_ID, AGENT_API_URL and AGENT_TOKEN come from its overrides */
  env: Record<string, string | undefined>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** aborted when ECS asks the container to stop (SIGTERM) */
  terminate: AbortSignal;
}

/** The container's program, whatever hosts it; resolves to its exit code. */
export const runContainer = async ({ env, stdout, stderr, terminate }: ContainerIo): Promise<number> => {
  const { RUN_ID, AGENT_API_URL, AGENT_TOKEN } = env;
  if (!RUN_ID || !AGENT_API_URL || !AGENT_TOKEN) {
    stderr.write('pod: RUN_ID, AGENT_API_URL and AGENT_TOKEN must be set\n');
    return 1;
  }
  return runPod({ runId: RUN_ID, apiUrl: AGENT_API_URL, token: AGENT_TOKEN, stdout, stderr, terminate });
};
