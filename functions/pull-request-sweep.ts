import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { type PullRequestSettings, sweepPullRequests } from '../shared/usecases/github.js';
import { directoryRepository, GITHUB_APP_VARIABLES, gitHubApp, runList, runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** Schedule, daily: settles the runs whose pull request closed or merged without a webhook reaching us. */
export const makeHandler = (deps: Parameters<typeof sweepPullRequests>[0], settings: PullRequestSettings) =>
  validatedHandler(z.unknown(), async () => {
    const swept = await sweepPullRequests(deps, settings, (runId, err) =>
      logger.warn("a pull request could not be read, or its run's issue told", {
        runId,
        error: err as Error,
      }),
    );
    if (swept.settled > 0) logger.warn('settled pull requests whose webhook never came', swept);
    return swept;
  });

const env = readEnv('TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB_APP_VARIABLES);
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    list: runList(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    clock: systemClock,
    github: gitHubApp(env),
  },
  { publicApiUrl: env.PUBLIC_API_URL },
);
