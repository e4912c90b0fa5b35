import { runPod } from './runtime.js';

/** The container's entry: RUN_ID, AGENT_API_URL and AGENT_TOKEN come from the task's overrides. */
const { RUN_ID, AGENT_API_URL, AGENT_TOKEN } = process.env;
if (!RUN_ID || !AGENT_API_URL || !AGENT_TOKEN) {
  process.stderr.write('pod: RUN_ID, AGENT_API_URL and AGENT_TOKEN must be set\n');
  process.exit(1);
}

// ECS stops a task with SIGTERM (then SIGKILL): deliver what is queued and leave with 0
const terminate = new AbortController();
process.once('SIGTERM', () => terminate.abort());
process.once('SIGINT', () => terminate.abort());

const exitCode = await runPod({
  runId: RUN_ID,
  apiUrl: AGENT_API_URL,
  token: AGENT_TOKEN,
  stdout: process.stdout,
  stderr: process.stderr,
  terminate: terminate.signal,
});

// leave once the output has drained; idle keep-alive sockets must not hold a finished pod
process.stdout.write('', () => process.stderr.write('', () => process.exit(exitCode)));
