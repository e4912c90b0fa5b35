import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

/** One logger and one metrics emitter per handler process (Powertools, EMF). */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'execution-runs' });
export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'ExecutionRuns',
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'execution-runs',
});
