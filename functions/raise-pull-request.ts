import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { systemClock } from '../shared/ports.js';
import {
  openPullRequests,
  type PullRequestDeps,
  type PullRequestSettings,
} from '../shared/usecases/github.js';
import { directoryRepository, GITHUB_APP_VARIABLES, gitHubApp, runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/**
 * State machine task, once the pod completed: the control plane (never the pod) opens a pull request
 * for each branch the pod pushed. Retried by the state machine; a retry finds what it opened.
 */
export const makeHandler = (deps: PullRequestDeps, settings: PullRequestSettings) =>
  validatedHandler(z.object({ runId: z.string() }), async ({ runId }) => ({
    pullRequests: (await openPullRequests(deps, settings, runId)).map((pr) => pr.url),
  }));

const env = readEnv('TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB_APP_VARIABLES);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    clock: systemClock,
    github: gitHubApp(env),
  },
  { publicApiUrl: env.PUBLIC_API_URL },
);
