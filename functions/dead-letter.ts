import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { readEnv } from '../shared/config.js';
import { createMetrics, logger } from '../shared/observability.js';
import { type Clock, type RunStore, systemClock } from '../shared/ports.js';
import { runMessageHandler } from '../shared/sqs-batch.js';
import type { TellEnded } from '../shared/usecases/github-issues.js';
import { markDeadLetter } from '../shared/usecases/lifecycle.js';
import { GITHUB_APP_VARIABLES, issueTeller, runStore } from '../shared/wiring.js';

const metrics = createMetrics();

/** DLQ → DEAD_LETTER for runs still waiting, counted as a metric. */
export const makeHandler = (deps: { runs: RunStore; clock: Clock; tellEnded?: TellEnded }) =>
  runMessageHandler(async (runId, record) => {
    const marked = await markDeadLetter(deps, runId);
    logger.warn('run message dead-lettered', {
      runId,
      marked,
      receiveCount: record.attributes.ApproximateReceiveCount,
    });
    if (marked) {
      metrics.addMetric('RunsDeadLettered', MetricUnit.Count, 1);
      metrics.publishStoredMetrics();
    }
  });

const env = readEnv('TABLE_NAME', 'PUBLIC_API_URL', ...GITHUB_APP_VARIABLES);
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  clock: systemClock,
  // no execution ends a dead-lettered run: its GitHub issue is told here
  tellEnded: issueTeller(env),
});
