import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** What the operator replaces with the run's id in the saved query. */
export const RUN_ID_PLACEHOLDER = 'run_PUT_THE_RUN_ID_HERE';

/**
 * One run's story: every line that names the run, from its functions (their log lines carry `runId`,
 * their metric lines name it too), its state machine (the execution's name and input hold the run id)
 * and its pod (each line begins with it), oldest first. The filter is a plain search for the id, which
 * is also what FilterLogEvents' quoted-term pattern (runStoryFilterPattern) does, log group by log
 * group, on the local cloud.
 */
export const runStoryQueryString = (runId = RUN_ID_PLACEHOLDER) =>
  new logs.QueryString({
    fields: ['@timestamp', '@log', '@logStream', '@message'],
    filterStatements: [`@message like "${runId}"`],
    sort: '@timestamp asc',
    limit: 10_000,
  });

/** The saved query's filter as a FilterLogEvents pattern: the id, quoted, anywhere in the line. */
export const runStoryFilterPattern = (runId: string): string => `"${runId}"`;

export interface RunStoryQueryProps {
  /** the log groups a run writes to: each function's, the state machine's, the pods' */
  logGroups: logs.ILogGroup[];
}

/** The saved Logs Insights query (Logs Insights → Queries → execution-runs/run-story). */
export class RunStoryQuery extends Construct {
  public readonly queryDefinition: logs.QueryDefinition;

  constructor(scope: Construct, id: string, props: RunStoryQueryProps) {
    super(scope, id);
    this.queryDefinition = new logs.QueryDefinition(this, 'Query', {
      queryDefinitionName: 'execution-runs/run-story',
      queryString: runStoryQueryString(),
      logGroups: props.logGroups,
    });
  }
}
