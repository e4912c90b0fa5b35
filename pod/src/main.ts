import { runContainer } from './container.js';

/** The container's entry. ECS stops a task with SIGTERM (then SIGKILL): deliver what is queued and leave with 0. */
const terminate = new AbortController();
process.once('SIGTERM', () => terminate.abort());
process.once('SIGINT', () => terminate.abort());

const exitCode = await runContainer({
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  terminate: terminate.signal,
});

// leave once the output has drained; idle keep-alive sockets must not hold a finished pod
process.stdout.write('', () => process.stderr.write('', () => process.exit(exitCode)));
