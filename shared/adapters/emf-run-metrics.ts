import type { Metrics } from '@aws-lambda-powertools/metrics';
import { RUN_METRICS, type RunMetric } from '../domain/run-metrics.js';
import type { RunMetricsPublisher } from '../ports.js';

/**
 * Run metrics as embedded metric format lines (Powertools Metrics), which CloudWatch Logs turns into
 * metrics. A line holds one dimension combination, so the metrics without dimensions go out together
 * and each one with dimensions on its own line; every line names the run and its account as
 * properties, which Logs Insights can group by and CloudWatch does not count as series.
 */
export class EmfRunMetrics implements RunMetricsPublisher {
  constructor(private readonly metrics: Metrics) {}

  publish(run: { runId: string; accountId?: string } | undefined, metrics: readonly RunMetric[]): void {
    const plain = metrics.filter((metric) => !metric.dimensions);
    const lines = [
      ...(plain.length > 0 ? [plain] : []),
      ...metrics.filter((m) => m.dimensions).map((m) => [m]),
    ];
    for (const line of lines) {
      if (run) this.metrics.addMetadata('runId', run.runId);
      if (run?.accountId) this.metrics.addMetadata('accountId', run.accountId);
      for (const metric of line) {
        for (const set of RUN_METRICS[metric.name].dimensions) {
          if (set.length === 0) continue;
          this.metrics.addDimensions(
            Object.fromEntries(set.map((name) => [name, metric.dimensions?.[name] ?? 'none'])),
          );
        }
        this.metrics.addMetric(metric.name, RUN_METRICS[metric.name].unit, metric.value);
      }
      this.metrics.publishStoredMetrics();
    }
  }
}
