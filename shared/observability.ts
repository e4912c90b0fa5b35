import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { MiddlewareObj } from '@middy/core';

const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? 'execution-runs';

/** One logger per handler process (Powertools). */
export const logger = new Logger({ serviceName });

/**
 * One tracer per handler process (Powertools, X-Ray). It traces only inside Lambda with active
 * tracing; elsewhere (tests, the local cloud, which sets POWERTOOLS_TRACE_ENABLED=false) it does
 * nothing and sends nothing.
 */
export const tracer = new Tracer({ serviceName });

/**
 * The metrics emitter (Powertools, EMF) of a handler that publishes metrics, created once at its
 * module scope. A factory, so that the bundles of the handlers that publish none leave it out.
 */
export const createMetrics = () =>
  new Metrics({
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'ExecutionRuns',
    serviceName,
  });

/** The run an invocation is about, and its account, as far as its event says. */
export interface RunKeys {
  runId?: string;
  accountId?: string;
}

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;
const field = (value: unknown, name: string): unknown =>
  typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
/** An execution's name is its run id, and `-r<n>` after it for a redrive (executionName). */
const runIdOfExecution = (name: unknown): string | undefined => text(name)?.replace(/-r\d+$/, '');
/** A Step Functions status change carries the execution's input as JSON text. */
const executionInput = (input: unknown): unknown => {
  try {
    return typeof input === 'string' ? JSON.parse(input) : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Where each kind of event names its run: a state machine task's input (`runId`, `accountId`), an HTTP
 * route's `{runId}`, an ECS task state change (`startedBy`, the run id the launch set), a Step
 * Functions status change (the execution's name, and its input). Batches of several runs (SQS, the
 * table's stream) name no single run: their handlers name the run on each line.
 */
export const runKeysOf = (event: unknown): RunKeys => {
  const detail = field(event, 'detail');
  const input = executionInput(field(detail, 'input'));
  const runId =
    text(field(event, 'runId')) ??
    text(field(field(event, 'pathParameters'), 'runId')) ??
    text(field(detail, 'startedBy')) ??
    runIdOfExecution(field(detail, 'name'));
  const accountId = text(field(event, 'accountId')) ?? text(field(input, 'accountId'));
  return { ...(runId ? { runId } : {}), ...(accountId ? { accountId } : {}) };
};

/** The run keys the current invocation's lines carry, as the logger does not give them back. */
let invocationKeys: RunKeys | undefined;
const endInvocation = () => {
  invocationKeys = undefined;
};

/**
 * The account of the invocation's caller or run, once read, on its lines from then on, where its
 * event did not say it: an HTTP request's account is a claim of its token, and a state machine task's
 * payload names only the run (executions already started keep the input they were started with).
 * Only the invocation's own run names its account (not one run of a batch), and only the first
 * account known (the caller's, not that of a run the caller asked for and may not read).
 */
export const appendAccountOf = (owner: { accountId: string; runId?: string }): void => {
  if (!invocationKeys || invocationKeys.accountId !== undefined) return;
  if (owner.runId !== undefined && owner.runId !== invocationKeys.runId) return;
  invocationKeys.accountId = owner.accountId;
  logger.appendKeys({ accountId: owner.accountId });
};

/**
 * An approval link's page names the approval, not its run: once the approval is read, the lines of
 * an invocation that named no run carry the approval's run and account.
 */
export const appendRunOfApproval = (approval: { runId: string; accountId: string }): void => {
  if (!invocationKeys || invocationKeys.runId !== undefined) return;
  invocationKeys.runId = approval.runId;
  logger.appendKeys({ runId: approval.runId });
  tracer.putAnnotation('runId', approval.runId);
  appendAccountOf(approval);
};

/** A run's GitHub issue could not be told how it ended: the run has ended all the same. */
export const warnIssueUntold = (failed: string): void =>
  logger.warn("the run's GitHub issue could not be told how it ended", { failed });

/**
 * What every handler starts with: the Lambda context and the run's keys on each log line (the account
 * also once appendAccountOf learns it; reset after each invocation), and the invocation traced with
 * the run id as an annotation, so X-Ray can find a run's traces.
 */
export const observed = (): MiddlewareObj[] => [
  injectLambdaContext(logger, { resetKeys: true }),
  {
    before: ({ event }) => {
      const keys = runKeysOf(event);
      invocationKeys = { ...keys };
      logger.appendKeys({ ...keys });
      if (keys.runId) tracer.putAnnotation('runId', keys.runId);
    },
    after: endInvocation,
    onError: endInvocation,
  },
  captureLambdaHandler(tracer, { captureResponse: false }),
];
