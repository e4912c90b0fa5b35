import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { sweepPullRequests } from '../shared/usecases/github.js';
import { directoryRepository, gitHubApp, runList, runStore } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** Schedule, daily: settles the runs whose pull request closed or merged without a webhook reaching us. */
export const makeHandler = (deps: Parameters<typeof sweepPullRequests>[0]) =>
  validatedHandler(z.unknown(), async () => {
    const swept = await sweepPullRequests(deps, (runId, err) =>
      logger.warn('a pull request could not be read', { runId, error: err as Error }),
    );
    if (swept.settled > 0) logger.warn('settled pull requests whose webhook never came', swept);
    return swept;
  });

const env = readEnv('TABLE_NAME', 'GITHUB_APP_ID', 'GITHUB_API_URL', 'GITHUB_WEB_URL');
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  list: runList(env.TABLE_NAME),
  directory: directoryRepository(env.TABLE_NAME),
  clock: systemClock,
  github: gitHubApp(env),
});
