import { pathToFileURL } from 'node:url';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { StatefulStack } from './stacks/stateful-stack.js';
import { type IdentityProvider, StatelessStack } from './stacks/stateless-stack.js';

export interface ExecutionRunsApp {
  app: App;
  stateful: StatefulStack;
  stateless: StatelessStack;
}

const IDENTITY_CONTEXT = ['jwtIssuer', 'jwtAudience', 'cognitoDomain'] as const;

/**
 * The deployer's own identity provider, when the context names one (all three of `jwtIssuer`,
 * `jwtAudience` and `cognitoDomain`); without it the stack makes a user pool of its own.
 */
const identityProviderOf = (app: App): IdentityProvider | undefined => {
  const given = IDENTITY_CONTEXT.map((key) => [key, app.node.tryGetContext(key)] as const).filter(
    ([, value]) => value !== undefined && value !== '',
  );
  if (given.length === 0) return undefined;
  const missing = IDENTITY_CONTEXT.filter((key) => !given.some(([name]) => name === key));
  if (missing.length > 0 || given.some(([, value]) => typeof value !== 'string')) {
    throw new Error(
      `an identity provider of your own takes all of ${IDENTITY_CONTEXT.map((k) => `-c ${k}=...`).join(' ')} (missing: ${missing.join(', ') || 'none'}); name none of them for the stack's own user pool`,
    );
  }
  return Object.fromEntries(given) as unknown as IdentityProvider;
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
    identityProvider: identityProviderOf(app),
  });

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stateful, stateless };
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildApp().app.synth();
}
