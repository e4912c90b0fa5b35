import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

/** One logger per handler process (Powertools). */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'execution-runs' });

/**
 * The metrics emitter (Powertools, EMF) of a handler that publishes metrics, created once at its
 * module scope. A factory, so that the bundles of the handlers that publish none leave it out.
 */
export const createMetrics = () =>
  new Metrics({
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'ExecutionRuns',
    serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'execution-runs',
  });
