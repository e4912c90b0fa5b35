import { rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { isTerminal, type RunStatus } from '../shared/domain/run.js';
import type { ConsolePageResult } from './console-page.js';
import type { DispatchApiResult } from './dispatch-api.js';
import type { LatencyResult } from './dispatch-latency.js';
import type { FollowLatency, FollowLatencyResult, FollowUsage } from './follow-latency.js';
import type { HandlerResult } from './handlers.js';
import type { IngestionResult } from './ingestion.js';
import type { BurstResult, LaunchBurstResult } from './launch-burst.js';
import type { ListScaleResult } from './list-scale.js';
import type { RealPodResult } from './real-pod.js';
import type { RunCostResult } from './run-cost.js';
import { PRICE_NOTES, PRICES } from './support/prices.js';
import type { ControlPlaneReport } from './support/usage.js';

/** The table `npm run bench` prints (Markdown, so the README can show it as is) and bench/results.json. */

export interface Results {
  handlers?: HandlerResult[];
  runCost?: RunCostResult;
  ingestion?: IngestionResult;
  dispatchLatency?: LatencyResult;
  launchBurst?: LaunchBurstResult;
  listScale?: ListScaleResult;
  dispatchApi?: DispatchApiResult;
  realPod?: RealPodResult;
  followLatency?: FollowLatencyResult;
  consolePage?: ConsolePageResult;
  /** phases that could not be measured, and why */
  errors: Record<string, string>;
}

export interface Row {
  id: string;
  figure: string;
  target: string;
  measured: string;
  /** undefined: no target */
  met?: boolean;
}

export type Machine = ReturnType<typeof machine>;

/** `loadBefore`: the 1-minute load average when the benchmark started; other work on the machine skews every figure. */
export const machine = (loadBefore: number) => ({
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
  memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  loadAverageBefore: Math.round(loadBefore * 100) / 100,
});

const usd = (n: number) => (n === 0 ? '$0' : `$${n < 0.001 ? n.toFixed(7) : n.toFixed(4)}`);
const ms = (n: number) => `${Math.round(n)} ms`;
const num = (n: number, digits = 1) => (Number.isInteger(n) ? String(n) : n.toFixed(digits));
const kb = (bytes: number) => `${Math.round(bytes / 1024)} KB`;
const unavailable = (x: object): x is { unavailable: string } => 'unavailable' in x;

/** A step that failed; one left out (`--only`) has no row. */
const missing = (results: Results, phase: string, id: string, figure: string, target = '—'): Row[] => {
  const error = results.errors[phase];
  return error === undefined ? [] : [{ id, figure, target, measured: `not measured: ${error}`, met: false }];
};

const costRows = (
  id: string,
  name: string,
  r: ControlPlaneReport,
  targets?: { transitions: number; usd: number },
) => [
  {
    id,
    figure: `${name}: state transitions`,
    target: targets ? `≤ ${targets.transitions}` : '—',
    measured: num(r.stateTransitions),
    met: targets ? r.stateTransitions <= targets.transitions : undefined,
  },
  {
    id,
    figure: `${name}: control-plane cost`,
    target: targets ? `≤ ${usd(targets.usd)}` : '—',
    measured: usd(r.cost.total),
    met: targets ? r.cost.total <= targets.usd : undefined,
  },
];

const sumTerminal = (burst: BurstResult) =>
  Object.entries(burst.byStatus)
    .filter(([status]) => isTerminal(status as RunStatus))
    .reduce((n, [, count]) => n + count, 0);

const burstRows = (name: string, burst: BurstResult): Row[] => {
  const ok = burst.allTerminal && burst.deadLettered === 0 && burst.dispatchFailures === 0;
  const notCompleted = burst.runs - (burst.byStatus.COMPLETED ?? 0);
  const limits = `launch limits ${burst.limits.burst} + ${burst.limits.perSecond}/s`;
  return [
    {
      id: '5',
      figure: `${name} (${limits}): every run terminal, none dead-lettered`,
      target: 'yes',
      measured: `${ok ? 'yes' : 'no'}: ${Object.entries(burst.byStatus)
        .map(([status, n]) => `${n} ${status}`)
        .join(', ')}${burst.dispatchFailures ? `; ${burst.dispatchFailures} dispatches failed` : ''}`,
      met: ok,
    },
    {
      id: '5',
      figure: `${name}: runs that did not complete (of which never launched)`,
      target: '—',
      measured: `${notCompleted} (${burst.neverLaunched})`,
    },
    {
      id: '5',
      figure: `${name}: time to drain`,
      target: '—',
      measured: burst.allTerminal
        ? `${num(burst.drainSeconds)} s`
        : `not drained after ${num(burst.drainSeconds)} s (${burst.runs - sumTerminal(burst)} runs still in flight)`,
    },
    {
      id: '5',
      figure: `${name}: peak / mean launch rate, throttled launch calls`,
      target: '—',
      measured: `${num(burst.peakLaunchesPerSecond)} / ${num(burst.meanLaunchesPerSecond)} per s, ${burst.throttledLaunchCalls}`,
    },
  ];
};

const followRow = (name: string, latency: FollowLatency): Row => ({
  id: '9',
  figure: `Step → follower p50 / p99, ${name} (${latency.events.toLocaleString('en-US')} of ${latency.stepsReceived.toLocaleString('en-US')} steps received live${latency.refollows > 0 ? `; ${latency.refollows} follows again after a failed follow or a stall` : ''})`,
  target: '—',
  measured: `${ms(latency.p50Ms)} / ${ms(latency.p99Ms)} (from the stored batch: ${ms(latency.fromStoredP50Ms)} / ${ms(latency.fromStoredP99Ms)})`,
});

export const targetRows = (results: Results): Row[] => {
  const rows: Row[] = [];
  const {
    runCost,
    listScale,
    dispatchLatency,
    dispatchApi,
    launchBurst,
    handlers,
    ingestion,
    realPod,
    followLatency,
    consolePage,
  } = results;
  if (runCost) {
    // the cost target is what an autopilot run cost before the event path was made leaner (2026-11-25)
    rows.push(...costRows('1', 'Autopilot run', runCost.autopilot, { transitions: 10, usd: 0.0002462 }));
    if (unavailable(runCost.supervised)) {
      rows.push({
        id: '1',
        figure: 'Supervised run, one approval',
        target: '—',
        measured: `n/a: ${runCost.supervised.unavailable}`,
      });
    } else rows.push(...costRows('1', 'Supervised run, one approval', runCost.supervised));
    rows.push({
      id: '1',
      figure: 'One hour paused awaiting approval',
      target: '—',
      measured: unavailable(runCost.pausedHour)
        ? `n/a: ${runCost.pausedHour.unavailable}`
        : usd(runCost.pausedHour.cost.total),
    });
  } else rows.push(...missing(results, 'runCost', '1', 'Control-plane cost per run'));
  if (listScale) {
    for (const [size, pages] of Object.entries(listScale.pages)) {
      const page = pages.status;
      if (!page) continue;
      rows.push({
        id: '2',
        figure: `List page (status filter), ${Number(size).toLocaleString('en-US')} runs: p50 / p99`,
        target: '—',
        measured: `${num(page.p50Ms)} / ${num(page.p99Ms)} ms`,
      });
    }
    rows.push({
      id: '2',
      figure: 'List page p50, 100,000 runs / 1,000 runs',
      target: '≤ 1.3',
      measured: num(listScale.p50Ratio, 2),
      met: listScale.p50Ratio <= 1.3,
    });
  } else rows.push(...missing(results, 'listScale', '2', 'List page p50, 100k / 1k', '≤ 1.3'));
  if (dispatchLatency) {
    rows.push(
      {
        id: '3',
        figure: `Dispatch → RUNNING p50 (${dispatchLatency.runs} runs)`,
        target: '≤ 1,000 ms',
        measured: ms(dispatchLatency.p50Ms),
        met: dispatchLatency.p50Ms <= 1000,
      },
      { id: '3', figure: 'Dispatch → RUNNING p99', target: '—', measured: ms(dispatchLatency.p99Ms) },
    );
  } else rows.push(...missing(results, 'dispatchLatency', '3', 'Dispatch → RUNNING p50', '≤ 1,000 ms'));
  if (dispatchApi) {
    rows.push(
      {
        id: '4',
        figure: `Dispatch API at ${dispatchApi.targetRate} req/s offered: throughput`,
        target: '—',
        measured: `${num(dispatchApi.throughput)} req/s`,
      },
      { id: '4', figure: 'Dispatch API p50', target: '—', measured: ms(dispatchApi.p50Ms) },
      {
        id: '4',
        figure: 'Dispatch API: CPU per dispatch, local cloud / DynamoDB Local',
        target: '—',
        measured: `${num(dispatchApi.cpuMsPerRequest, 2)} / ${
          dispatchApi.dynamoDbCpuMsPerRequest === undefined
            ? 'n/a'
            : num(dispatchApi.dynamoDbCpuMsPerRequest, 2)
        } ms`,
      },
      {
        id: '4',
        figure: 'Dispatch API p99',
        target: '≤ 50 ms',
        measured: ms(dispatchApi.p99Ms),
        met: dispatchApi.p99Ms <= 50,
      },
    );
  } else rows.push(...missing(results, 'dispatchApi', '4', 'Dispatch API p99', '≤ 50 ms'));
  if (launchBurst) {
    rows.push(
      ...burstRows(`Burst of ${launchBurst.fargate.runs.toLocaleString('en-US')}`, launchBurst.fargate),
    );
    rows.push(
      ...burstRows(`Burst of ${launchBurst.scaled.runs} at a tenth of the scale`, launchBurst.scaled),
    );
  } else rows.push(...missing(results, 'launchBurst', '5', 'Burst of 1,000 runs'));
  if (handlers) {
    for (const h of handlers) {
      rows.push({
        id: '6',
        figure: `Handler ${h.entry}: bundle / cold import`,
        target: '≤ 400 KB / ≤ 60 ms',
        measured: `${kb(h.bundleBytes)} / ${ms(h.importMs)}`,
        met: h.bundleBytes <= 400 * 1024 && h.importMs <= 60,
      });
    }
  } else rows.push(...missing(results, 'handlers', '6', 'Handler bundles', '≤ 400 KB / ≤ 60 ms'));
  if (ingestion) {
    rows.push(
      {
        id: '7',
        figure: 'Agent events into one run',
        target: '≥ 1,000 events/s',
        measured: `${num(ingestion.eventsPerSecond, 0)} events/s`,
        met: ingestion.eventsPerSecond >= 1000,
      },
      {
        id: '7',
        figure: 'DynamoDB round trips per event batch',
        target: '≤ 6',
        measured: num(ingestion.dynamoRequestsPerBatch, 1),
        met: ingestion.dynamoRequestsPerBatch <= 6,
      },
      {
        id: '7',
        figure: 'Write units per step',
        target: '≤ 2',
        measured: num(ingestion.writeUnitsPerStep, 2),
        met: ingestion.writeUnitsPerStep <= 2,
      },
    );
  } else rows.push(...missing(results, 'ingestion', '7', 'Agent events into one run', '≥ 1,000 events/s'));
  if (realPod) {
    rows.push(
      {
        id: '8',
        figure: `Real pod (Claude Code, local model): dispatch → first agent step p50 / max (${realPod.runs} runs)`,
        target: '—',
        measured: `${ms(realPod.firstStepP50Ms)} / ${ms(realPod.firstStepMaxMs)}`,
      },
      {
        id: '8',
        figure: 'Real pod: dispatch → run completed p50',
        target: '—',
        measured: ms(realPod.runP50Ms),
      },
      {
        id: '8',
        figure: 'Real pod: peak resident memory of its process tree, p50 / max',
        target: '—',
        measured: `${Math.round(realPod.peakResidentMiB.p50)} / ${Math.round(realPod.peakResidentMiB.max)} MiB`,
      },
    );
  } else rows.push(...missing(results, 'realPod', '8', 'Real pod: dispatch → first agent step'));
  if (followLatency) {
    const { single, crowd, cost } = followLatency;
    rows.push(
      followRow(`1 follower, ${single.runs} runs`, single),
      followRow(`${crowd.followers} followers of one run`, crowd),
      {
        id: '9',
        figure: `Following a run of ${cost.runWrites} writes: its feed + one follower, per run`,
        target: '—',
        measured: `${usd(cost.feed.usd)} + ${usd(cost.follower.usd)} = ${usd(cost.totalUsd)}`,
      },
    );
  } else rows.push(...missing(results, 'followLatency', '9', 'Step → follower p50 / p99'));
  if (consolePage) {
    rows.push({
      id: '10',
      figure: `Console runs page of ${consolePage.runs.toLocaleString('en-US')} runs, first page drawn: p50 / p95`,
      target: '≤ 1,000 ms',
      measured: `${ms(consolePage.p50Ms)} / ${ms(consolePage.p95Ms)}`,
      met: consolePage.p95Ms <= 1000,
    });
  } else
    rows.push(...missing(results, 'consolePage', '10', 'Console runs page, first page drawn', '≤ 1,000 ms'));
  return rows;
};

const table = (header: string[], rows: string[][]) =>
  [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`),
  ].join('\n');

/** Where a run's control-plane money goes, per service. */
const costTable = (runCost: RunCostResult) => {
  const columns: [string, ControlPlaneReport][] = [['Autopilot run', runCost.autopilot]];
  if (!unavailable(runCost.supervised)) columns.push(['Supervised run', runCost.supervised]);
  if (!unavailable(runCost.pausedHour)) columns.push(['Hour paused', runCost.pausedHour]);
  const line = (name: string, value: (r: ControlPlaneReport) => string) => [
    name,
    ...columns.map(([, r]) => value(r)),
  ];
  return table(
    ['Per run', ...columns.map(([name]) => name)],
    [
      line('State transitions', (r) => num(r.stateTransitions)),
      line('Lambda invocations', (r) => num(r.lambda.invocations)),
      line('Lambda GB-seconds', (r) => r.lambda.gbSeconds.toFixed(3)),
      line('DynamoDB read units', (r) => num(r.dynamodb.readUnits)),
      line(
        'DynamoDB write units (of which index)',
        (r) => `${num(r.dynamodb.writeUnits)} (${num(r.dynamodb.indexWriteUnits)})`,
      ),
      line('SQS requests', (r) => num(r.sqsRequests)),
      line('SES messages', (r) => num(r.sesMessages)),
      line('CloudWatch Logs calls (bytes)', (r) => `${num(r.logs.calls)} (${Math.round(r.logs.bytes)})`),
      line('Agent API: config / event batches / heartbeats / control', (r) =>
        [r.agentApi.config, r.agentApi.eventBatches, r.agentApi.heartbeatBatches, r.agentApi.control]
          .map((n) => num(n))
          .join(' / '),
      ),
      line('HTTP API requests', (r) => num(r.apiRequests)),
      line('Step Functions', (r) => usd(r.cost.stepFunctions)),
      line('Lambda', (r) => usd(r.cost.lambda)),
      line('DynamoDB', (r) => usd(r.cost.dynamodb)),
      line('SQS', (r) => usd(r.cost.sqs)),
      line('API Gateway', (r) => usd(r.cost.apiGateway)),
      line('SES', (r) => usd(r.cost.ses)),
      line('CloudWatch Logs', (r) => usd(r.cost.logs)),
      line('Total', (r) => usd(r.cost.total)),
    ],
  );
};

/** What following one run costs: its feed, which every run pays, and one follower. */
const followTable = ({ cost }: FollowLatencyResult) => {
  const columns: [string, FollowUsage][] = [
    ['Its feed (every run)', cost.feed],
    ['One follower', cost.follower],
  ];
  const line = (name: string, value: (u: FollowUsage) => string) => [
    name,
    ...columns.map(([, u]) => value(u)),
  ];
  const byFunction = (u: FollowUsage) =>
    Object.entries(u.lambda.byFunction)
      .map(([fn, use]) => `${fn} ${num(use?.invocations ?? 0)} (${Math.round(use?.ms ?? 0)} ms)`)
      .join(', ');
  return table(
    [`Following a run of ${cost.runWrites} writes`, ...columns.map(([name]) => name)],
    [
      line('Lambda invocations (time)', byFunction),
      line('Lambda GB-seconds', (u) => u.lambda.gbSeconds.toFixed(4)),
      line('DynamoDB read / write units', (u) => `${num(u.readUnits)} / ${num(u.writeUnits)}`),
      line('HTTP API requests', (u) => num(u.httpApiRequests)),
      line('WebSocket messages', (u) => num(u.webSocketMessages)),
      line('WebSocket connection-minutes', (u) => num(u.connectionMinutes)),
      line('Total', (u) => usd(u.usd)),
    ],
  );
};

export const render = (results: Results, rows: Row[], seconds: number, m: Machine): string => {
  const parts = [
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}; load average ${m.loadAverageBefore} before the run. Took ${Math.round(seconds)} s.`,
    '',
    table(
      ['#', 'Figure', 'Target', 'Measured', 'Met?'],
      rows.map((r) => [
        r.id,
        r.figure,
        r.target,
        r.measured,
        r.met === undefined ? '' : r.met ? 'yes' : 'NO',
      ]),
    ),
  ];
  if (results.runCost || results.followLatency) {
    parts.push('', `Prices: ${PRICE_NOTES.join('; ')}. Fargate and model tokens excluded.`);
  }
  if (results.runCost) parts.push('', costTable(results.runCost));
  if (results.followLatency) parts.push('', followTable(results.followLatency));
  return parts.join('\n');
};

/** Figures keep six significant digits: more would only be noise. */
const rounded = (_key: string, value: unknown) =>
  typeof value === 'number' && !Number.isInteger(value) ? Number(value.toPrecision(6)) : value;

export const writeResults = async (
  file: string,
  results: Results,
  rows: Row[],
  seconds: number,
  m: Machine,
) => {
  const document = {
    generatedAt: new Date().toISOString(),
    machine: m,
    durationSeconds: seconds,
    prices: { perUnitUsd: PRICES, notes: PRICE_NOTES },
    targets: rows,
    ...results,
  };
  const temporary = file.replace(/\.json$/, '.tmp.json');
  await writeFile(temporary, `${JSON.stringify(document, rounded, 2)}\n`);
  await rename(temporary, file);
};
