import path from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalCloud } from '../../infra/local/cloud.js';

/**
 * The local cloud the fault suite runs against: the same as `npm start`'s, with waits short enough
 * that every fault plays out within a test's bound: launch back-offs of 3 s (long enough to stop a
 * run in one), a 30 s pod heartbeat, the sweeper every 3 s for runs queued over 5 s, and the open
 * pull requests read from GitHub every 3 s.
 */
const { values } = parseArgs({
  options: { 'base-port': { type: 'string', default: '0' }, 'state-dir': { type: 'string' } },
});

const cloud = await startLocalCloud({
  basePort: Number(values['base-port']),
  host: '127.0.0.1',
  stateDir: path.resolve(values['state-dir'] ?? '.local-faults'),
  persist: false,
  launchBackoffSeconds: '3,3',
  podHeartbeatSeconds: 30,
  controlPollMs: 1000,
  launchLimits: false,
  sweeper: { everySeconds: 3, staleAfterSeconds: 5 },
  pullRequestSweepSeconds: 3,
  log: (line) => console.error(line),
});
console.log('The local cloud is running.');

const stop = async () => {
  await cloud.stop();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
