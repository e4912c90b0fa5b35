import { pathToFileURL } from 'node:url';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { StatefulStack } from './stacks/stateful-stack.js';
import { StatelessStack } from './stacks/stateless-stack.js';

export interface ExecutionRunsApp {
  app: App;
  stateful: StatefulStack;
  stateless: StatelessStack;
}

const requiredContext = (app: App, key: string): string => {
  const value = app.node.tryGetContext(key);
  if (typeof value !== 'string' || value === '') {
    throw new Error(`context "${key}" is required (cdk.json or -c ${key}=...)`);
  }
  return value;
};

/**
 * The whole app, environment-agnostic (no lookups), so synth needs no AWS credentials. Every
 * AwsSolutions finding fails synthesis unless it is fixed or acknowledged with a reason.
 */
export const buildApp = (context: Record<string, unknown> = {}): ExecutionRunsApp => {
  const app = new App({ context });
  const alarmEmail = app.node.tryGetContext('alarmEmail');

  const stateful = new StatefulStack(app, 'ExecutionRuns-Stateful', {
    description: 'Execution runs: table, queues, pod logs, alarm topic',
    alarmEmail: typeof alarmEmail === 'string' && alarmEmail !== '' ? alarmEmail : undefined,
  });
  const stateless = new StatelessStack(app, 'ExecutionRuns-Stateless', {
    description: 'Execution runs: API, functions, state machine, pod cluster',
    table: stateful.table,
    queue: stateful.queue,
    deadLetterQueue: stateful.deadLetterQueue,
    podLogGroup: stateful.podLogGroup,
    stepContentLogGroup: stateful.stepContentLogGroup,
    alarmTopic: stateful.alarmTopic,
    jwtIssuer: requiredContext(app, 'jwtIssuer'),
    jwtAudience: requiredContext(app, 'jwtAudience'),
    cognitoDomain: requiredContext(app, 'cognitoDomain'),
  });

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stateful, stateless };
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildApp().app.synth();
}
