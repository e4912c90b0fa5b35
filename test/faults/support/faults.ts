import { ListTasksCommand } from '@aws-sdk/client-ecs';
import { expect } from 'vitest';
import { isTerminal, type Run } from '../../../shared/domain/run.js';
import { endpoints, getRun } from '../../integration/support/api.js';
import { ecs, executionsOf, ledgerItemsOf } from '../../integration/support/aws.js';

/**
 * Faults injected into the local cloud over its emulators' own control routes, and the promises every
 * run must keep whatever was injected: it ends, within a stated bound; its cost is settled once; no
 * pod process is left; nothing re-queues it forever.
 */

const post = async (url: string, rule: unknown) => {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(rule) });
  if (!res.ok) throw new Error(`fault refused by ${url}: ${res.status} ${await res.text()}`);
};
const clear = (url: string) => fetch(url, { method: 'DELETE' });

/** The local API Gateway: a request delivered again later, or its answer lost. */
export const gatewayFault = (rule: {
  routeKey: string;
  times: number;
  replayAfterMs?: number;
  loseAnswer?: boolean;
}) => post(`${endpoints().apiUrl}/_local/faults`, rule);

/** Step Functions: the next calls of an operation fail with an error (StartExecution by name prefix). */
export const stepFunctionsFault = (rule: {
  operation: string;
  error: string;
  times?: number;
  namePrefix?: string;
}) => post(`${endpoints().services.stepfunctions}/_local/faults`, rule);

/** ECS: the next launches fail with a 200 answer's failures, or throw. */
export const ecsFault = (rule: {
  failures?: { reason: string; times: number };
  throw?: { code: string; times: number };
}) => post(`${endpoints().services.ecs}/_local/faults`, rule);

/** A DynamoDB error for one function's requests (its table calls go through the local front). */
export const dynamoFault = (rule: { function: string; operation?: string; error: string; times: number }) =>
  post(`${endpoints().services.dynamodbFront}/_local/faults`, rule);

export const clearFaults = async () => {
  const e = endpoints();
  await Promise.all([
    clear(`${e.apiUrl}/_local/faults`),
    clear(`${e.services.stepfunctions}/_local/faults`),
    clear(`${e.services.dynamodbFront}/_local/faults`),
    post(`${e.services.ecs}/_local/faults`, {
      failures: { reason: 'none', times: 0 },
      throw: { code: 'none', times: 0 },
    }),
  ]);
};

const total = (items: Record<string, unknown>[], field: string) =>
  items.reduce((n, item) => n + Number(item[field] ?? 0), 0);

/** Polls until `done` holds, for at most `withinMs`, naming what it saw last when it gives up. */
export const within = async <T>(
  what: string,
  withinMs: number,
  probe: () => Promise<T>,
  done: (value: T) => boolean,
): Promise<T> => {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`${what} not within ${withinMs} ms; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const ranASandbox = (run: Run) => Boolean(run.startedAt || run.taskArn);

/**
 * The promises a run keeps, whatever was injected: it is terminal within `withinMs`; then its
 * executions are over, no task of it runs, it was re-queued at most the sweeper's bound, and a run
 * that had a sandbox is settled exactly once, with totals equal to its ledger.
 */
export const expectKeptItsPromises = async (runId: string, withinMs: number): Promise<Run> => {
  const ended = await within(
    `run ${runId} terminal`,
    withinMs,
    () => getRun(runId),
    (r) => isTerminal(r.status),
  );
  await within(
    `the executions of ${runId} over`,
    30_000,
    () => executionsOf(runId),
    (executions) => executions.every((e) => e.status !== 'RUNNING'),
  );
  await within(
    `no task of ${runId} running`,
    15_000,
    async () =>
      (
        await ecs().send(
          new ListTasksCommand({
            cluster: endpoints().clusterArn,
            startedBy: runId,
            desiredStatus: 'RUNNING',
          }),
        )
      ).taskArns ?? [],
    (tasks) => tasks.length === 0,
  );
  expect(ended.requeues ?? 0).toBeLessThanOrEqual(3);
  if (!ranASandbox(ended)) return ended;
  const ledger = await within(
    `the settlement of ${runId}`,
    15_000,
    () => ledgerItemsOf(runId),
    (items) => items.some((i) => i.sk === 'USAGE#SETTLEMENT'),
  );
  expect(ledger.filter((i) => i.sk === 'USAGE#SETTLEMENT')).toHaveLength(1);
  const run = await getRun(runId);
  expect(run.cost.totalUsd).toBe(total(ledger, 'totalMicroUsd'));
  expect(run.status).toBe(ended.status);
  return run;
};
