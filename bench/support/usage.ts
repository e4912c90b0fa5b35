import { FUNCTIONS, type FunctionName } from '../../shared/manifest.js';
import type { AgentTraffic } from './agent-meter.js';
import type { Counters, MeteredService } from './cloud.js';
import type { FunctionCapacity } from './dynamo-meter.js';
import { type ControlPlaneCost, type ControlPlaneUsage, priceOf } from './prices.js';

/** What a run (or an hour paused) used of each service, and what it costs at list prices. */
export interface ControlPlaneReport {
  stateTransitions: number;
  lambda: { invocations: number; gbSeconds: number; byFunction: Partial<Record<FunctionName, number>> };
  dynamodb: {
    readUnits: number;
    writeUnits: number;
    indexWriteUnits: number;
    refusedWrites: number;
    requests: Record<string, number>;
    /** read or write units by operation */
    units: Record<string, number>;
    /** read and write units by calling function */
    byFunction: Record<string, FunctionCapacity>;
  };
  sqsRequests: number;
  sesMessages: number;
  logs: { calls: number; bytes: number };
  agentApi: Omit<AgentTraffic, 'firstEventsAt' | 'lastEventsAt' | 'eventsBusyMs'>;
  /** HTTP API requests: the client's and the pod's */
  apiRequests: number;
  cost: ControlPlaneCost;
}

/** The schedule's own invocations are a fixed cost, not a run's. */
const SCHEDULED: ReadonlySet<FunctionName> = new Set(['sweeper']);

const calls = (stats: Counters['services'][MeteredService], name?: string) =>
  Object.entries(stats)
    .filter(([operation]) => name === undefined || operation === name)
    .reduce((n, [, s]) => n + s.calls, 0);

/**
 * The SQS requests runs cause: each message's send, the receive that delivers it, its delete. The
 * event source's empty long polls (one per poller every 20 s, whatever happens) are the mapping's
 * fixed cost and are left out.
 */
const sqsRequestsOf = (stats: Counters['services']['sqs']) => {
  const sent = calls(stats, 'SendMessage') + calls(stats, 'SendMessageBatch');
  return calls(stats) - calls(stats, 'ReceiveMessage') + Math.min(sent, calls(stats, 'ReceiveMessage'));
};

const bytes = (stats: Counters['services'][MeteredService], name: string) => stats[name]?.bytesIn ?? 0;

const minus = <T extends Record<string, { calls: number; errors: number; bytesIn: number }>>(b: T, a: T): T =>
  Object.fromEntries(
    Object.entries(b).map(([op, s]) => [
      op,
      {
        calls: s.calls - (a[op]?.calls ?? 0),
        errors: s.errors - (a[op]?.errors ?? 0),
        bytesIn: s.bytesIn - (a[op]?.bytesIn ?? 0),
      },
    ]),
  ) as T;

const counts = (b: Record<string, number>, a: Record<string, number> = {}) =>
  Object.fromEntries(Object.entries(b).map(([key, n]) => [key, n - (a[key] ?? 0)]));

const capacityBetween = (a: FunctionCapacity | undefined, b: FunctionCapacity): FunctionCapacity => ({
  readUnits: b.readUnits - (a?.readUnits ?? 0),
  writeUnits: b.writeUnits - (a?.writeUnits ?? 0),
  units: counts(b.units, a?.units),
});

/** What happened between two snapshots; also `whole - part` as `between(part, whole)`. */
export const between = (a: Counters, b: Counters): Counters => ({
  lambda: Object.fromEntries(
    Object.entries(b.lambda).map(([fn, s]) => {
      const before = a.lambda[fn as FunctionName];
      return [
        fn,
        {
          invocations: s.invocations - before.invocations,
          errors: s.errors - before.errors,
          totalMs: s.totalMs - before.totalMs,
        },
      ];
    }),
  ) as Counters['lambda'],
  services: Object.fromEntries(
    Object.entries(b.services).map(([name, ops]) => [name, minus(ops, a.services[name as MeteredService])]),
  ) as Counters['services'],
  dynamo: {
    readUnits: b.dynamo.readUnits - a.dynamo.readUnits,
    writeUnits: b.dynamo.writeUnits - a.dynamo.writeUnits,
    indexWriteUnits: b.dynamo.indexWriteUnits - a.dynamo.indexWriteUnits,
    refusedWrites: b.dynamo.refusedWrites - a.dynamo.refusedWrites,
    requests: counts(b.dynamo.requests, a.dynamo.requests),
    units: counts(b.dynamo.units, a.dynamo.units),
    byFunction: Object.fromEntries(
      Object.entries(b.dynamo.byFunction).map(([fn, c]) => [fn, capacityBetween(a.dynamo.byFunction[fn], c)]),
    ),
  },
  agent: {
    config: b.agent.config - a.agent.config,
    eventBatches: b.agent.eventBatches - a.agent.eventBatches,
    heartbeatBatches: b.agent.heartbeatBatches - a.agent.heartbeatBatches,
    control: b.agent.control - a.agent.control,
    events: b.agent.events - a.agent.events,
  },
  emails: b.emails - a.emails,
});

/**
 * The report for a counted interval. `transitions` come from the executions' histories;
 * `clientRequests` are the HTTP API calls the benchmark made as the user (dispatch, approve).
 */
export const reportOf = (
  delta: Counters,
  transitions: number,
  clientRequests: number,
): ControlPlaneReport => {
  const byFunction: Partial<Record<FunctionName, number>> = {};
  let invocations = 0;
  let gbSeconds = 0;
  for (const [fn, s] of Object.entries(delta.lambda) as [FunctionName, Counters['lambda'][FunctionName]][]) {
    if (SCHEDULED.has(fn) || s.invocations === 0) continue;
    byFunction[fn] = s.invocations;
    invocations += s.invocations;
    gbSeconds += (s.totalMs / 1000) * (FUNCTIONS[fn].memoryMiB / 1024);
  }
  const { config, eventBatches, heartbeatBatches, control, events } = delta.agent;
  const apiRequests = clientRequests + config + eventBatches + heartbeatBatches + control;
  const usage: ControlPlaneUsage = {
    transitions,
    lambdaRequests: invocations,
    lambdaGbSeconds: gbSeconds,
    readUnits: delta.dynamo.readUnits,
    writeUnits: delta.dynamo.writeUnits,
    sqsRequests: sqsRequestsOf(delta.services.sqs),
    apiRequests,
    emails: delta.emails,
    logBytes: bytes(delta.services.logs, 'PutLogEvents'),
  };
  return {
    stateTransitions: transitions,
    lambda: { invocations, gbSeconds, byFunction },
    dynamodb: delta.dynamo,
    sqsRequests: usage.sqsRequests,
    sesMessages: delta.emails,
    logs: { calls: calls(delta.services.logs), bytes: usage.logBytes },
    agentApi: { config, eventBatches, heartbeatBatches, control, events },
    apiRequests,
    cost: priceOf(usage),
  };
};

type Numeric = number | { [key: string]: Numeric };

/** The mean of several reports, field by field (a field missing in one counts as 0 there). */
export const meanReport = <T>(reports: T[]): T => {
  const mean = (values: Numeric[]): Numeric => {
    if (values.every((v) => typeof v === 'number')) {
      return (values as number[]).reduce((a, b) => a + b, 0) / reports.length;
    }
    const objects = values.filter((v): v is { [key: string]: Numeric } => typeof v === 'object');
    const keys = new Set(objects.flatMap((o) => Object.keys(o)));
    return Object.fromEntries([...keys].map((k) => [k, mean(objects.map((o) => o[k] ?? 0))]));
  };
  return mean(reports as Numeric[]) as T;
};

/** A report scaled, e.g. from a measured pause to an hour of it. */
export const scaleReport = <T>(report: T, factor: number): T => {
  const scale = (value: Numeric): Numeric =>
    typeof value === 'number'
      ? value * factor
      : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scale(v)]));
  return scale(report as Numeric) as T;
};
