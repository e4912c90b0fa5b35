import WebSocket from 'ws';
import { endsFeed } from '../shared/domain/feed.js';
import type { Run } from '../shared/domain/run.js';
import { FUNCTIONS, type FunctionName } from '../shared/manifest.js';
import type { ServerMessage } from '../shared/schemas/stream.js';
import type { AnsweredBatch } from './support/agent-meter.js';
import { type BenchCloud, type Counters, type DemoScript, terminal } from './support/cloud.js';
import { priceOf, webSocketMessageUnits } from './support/prices.js';
import { mean, percentile } from './support/stats.js';
import { between } from './support/usage.js';

/**
 * (9) Following a run live over the WebSocket API, as a client does it (`POST /v1/stream/tickets`,
 * connect, `{"action":"follow","runId","after":0}`): how long a step takes from the pod that made
 * it to a follower's socket, with one follower and with 200 following one run, and what following
 * adds to a run's control-plane cost.
 *
 * Latency. The followers connect, the scripted run is dispatched (to a project without repositories)
 * and each follows it from seq 0 at once; every `step` event a follower receives after its
 * `caught-up` (live, not from the stored feed) counts: its arrival less the step's `at`, the time
 * the pod made it, on the same machine's clock. The time splits at the Agent API's answer to the
 * pod's batch that carried the step (the step stored): before it, the pod's reporter and the Agent
 * API; after it, the table's stream, run-feed (one batch of a run's records at a time, in order) and
 * the WebSocket API. The followers run in the benchmark's process, beside the local cloud, on the
 * same cores.
 *
 * Cost. Every run pays for its feed whether anyone follows it or not (run-feed turns each write of
 * the run into events and stores them); a follower adds the ticket (`api`), its connection and
 * follow (`stream`), run-feed's sends to it (moving its cursor and posting), the WebSocket messages
 * and the connection's minutes. DynamoDB units are counted per calling function (the functions'
 * DynamoDB front names the caller to the meter) on a metered run with one follower and one without;
 * Lambda time from the local runtime's per-function durations on unmetered runs, run-feed's extra as
 * the difference between runs with a follower and runs without. Messages are counted by the follower.
 */

export const FOLLOW_RUN_DEMO: DemoScript = { steps: 100, stepDelayMs: 20, edit: false };
/** runs followed by one follower (their live steps together make the figure), and as many not followed */
export const SINGLE_FOLLOWER_RUNS = 3;
export const CROWD = 200;
/** tickets and connections opened at once */
const OPENING_CONCURRENCY = 25;
const RUN_TIMEOUT_MS = 120_000;

export interface FollowLatency {
  followers: number;
  runs: number;
  /** step events received live (after caught-up), all followers together */
  events: number;
  /** step events received, live or while catching up */
  stepsReceived: number;
  /** followers that caught up only after the run's last step, so measured none */
  followersWithoutLiveSteps: number;
  p50Ms: number;
  p99Ms: number;
  /** from the Agent API's answer to the pod's batch that carried the step */
  fromStoredP50Ms: number;
  fromStoredP99Ms: number;
}

/** What a part of following uses per run, and its price. */
export interface FollowUsage {
  lambda: {
    invocations: number;
    gbSeconds: number;
    /** invocations and milliseconds per function */
    byFunction: Partial<Record<FunctionName, { invocations: number; ms: number }>>;
  };
  readUnits: number;
  writeUnits: number;
  httpApiRequests: number;
  /** in 32 KB increments, either way */
  webSocketMessages: number;
  /** each connection's minutes, rounded up */
  connectionMinutes: number;
  usd: number;
}

export interface FollowCost {
  /** stream records of the run item and its step packs: the writes run-feed turned into events */
  runWrites: number;
  /** the same, of the metered run nobody followed */
  runWritesUnfollowed: number;
  /** events the follower got, terminal status included */
  feedEvents: number;
  /** run-feed for a run nobody follows: every run pays it */
  feed: FollowUsage;
  /** what one follower adds */
  follower: FollowUsage;
  totalUsd: number;
}

export interface FollowLatencyResult {
  demo: DemoScript;
  single: FollowLatency;
  crowd: FollowLatency;
  cost: FollowCost;
}

interface Received {
  /** epoch ms */
  at: number;
  message: ServerMessage;
  bytes: number;
}

interface Follower {
  received: Received[];
  /** bytes of each message the client sent */
  sent: number[];
  openedAt: number;
  closedAt?: number;
  follow(runId: string): void;
  /** resolves once the run's terminal status event has come */
  ended(runId: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const isEnd = (runId: string) => (r: Received) =>
  r.message.type === 'event' && r.message.runId === runId && endsFeed(r.message);

const ticket = async (bench: BenchCloud): Promise<string> => {
  const response = await fetch(`${bench.cloud.endpoints.apiUrl}/v1/stream/tickets`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bench.cloud.endpoints.token}`, 'content-type': 'application/json' },
    body: '{}',
  });
  const body = (await response.json()) as { url?: string };
  if (response.status !== 201 || !body.url)
    throw new Error(`POST /v1/stream/tickets answered ${response.status}`);
  return body.url;
};

const open = async (url: string): Promise<Follower> => {
  const socket = new WebSocket(url);
  const received: Received[] = [];
  const sent: number[] = [];
  const waiters = new Set<() => void>();
  socket.on('message', (data) => {
    const at = Date.now();
    const text = String(data);
    received.push({ at, message: JSON.parse(text) as ServerMessage, bytes: Buffer.byteLength(text) });
    for (const wake of waiters) wake();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
    socket.once('error', reject);
  });
  const follower: Follower = {
    received,
    sent,
    openedAt: Date.now(),
    follow: (runId) => {
      const text = JSON.stringify({ action: 'follow', runId, after: 0 });
      sent.push(Buffer.byteLength(text));
      socket.send(text);
    },
    ended: (runId, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!received.some(isEnd(runId))) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`a follower did not see run ${runId} end in ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          follower.closedAt ??= Date.now();
          resolve();
        };
        if (socket.readyState === WebSocket.CLOSED) return done();
        const drop = setTimeout(() => socket.terminate(), 2000);
        socket.once('close', () => {
          clearTimeout(drop);
          done();
        });
        socket.close();
      }),
  };
  return follower;
};

/** Runs `each` over `items`, `size` at a time; every one settles before the first failure is thrown. */
const inBatches = async <T, R>(items: readonly T[], size: number, each: (item: T) => Promise<R>) => {
  const results: PromiseSettledResult<R>[] = [];
  for (let i = 0; i < items.length; i += size)
    results.push(...(await Promise.allSettled(items.slice(i, i + size).map(each))));
  return results;
};

const openFollowers = async (bench: BenchCloud, count: number): Promise<Follower[]> => {
  const results = await inBatches(
    Array.from({ length: count }, (_, i) => i),
    OPENING_CONCURRENCY,
    async () => open(await ticket(bench)),
  );
  const opened = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await closeAll(opened);
    throw new Error(`${count - opened.length} of ${count} followers could not connect: ${failed.reason}`);
  }
  return opened;
};

const closeAll = async (followers: Follower[]) => {
  await inBatches(followers, 50, (f) => f.close());
};

/** Waits until the run has ended and its sandbox's STOPPED event has been handled, then for quiet. */
const finished = async (bench: BenchCloud, runId: string): Promise<Run> => {
  const run = await bench.waitForRun(runId, terminal, RUN_TIMEOUT_MS);
  if (run.status !== 'COMPLETED') throw new Error(`run ${runId} ended ${run.status}: ${run.message}`);
  await bench.waitForRun(runId, (r) => r.stopCode !== undefined, 15_000).catch(() => undefined);
  await bench.settle();
  return run;
};

interface FollowedRun {
  runId: string;
  followers: Follower[];
  /** tickets and connections */
  setUp: Counters;
  /** the run, from its dispatch to the quiet after it, the followers' follows and closes included */
  run: Counters;
}

/** One scripted run followed by `count` followers, connected first, following from seq 0 as it is dispatched. */
const followedRun = async (bench: BenchCloud, count: number): Promise<FollowedRun> => {
  await bench.settle();
  const start = await bench.counters();
  const followers = await openFollowers(bench, count);
  try {
    const connected = await bench.counters();
    const runId = await bench.dispatch({ repoless: true, demo: FOLLOW_RUN_DEMO });
    for (const follower of followers) follower.follow(runId);
    await Promise.all(followers.map((f) => f.ended(runId, RUN_TIMEOUT_MS)));
    await closeAll(followers);
    await finished(bench, runId);
    return {
      runId,
      followers,
      setUp: between(start, connected),
      run: between(connected, await bench.counters()),
    };
  } finally {
    await closeAll(followers);
  }
};

/** The batch that carried the step with this seq: the first answered of those that did. */
const storedAt = (batches: AnsweredBatch[], seq: number) =>
  batches.find((b) => b.firstSeq <= seq && seq <= b.lastSeq)?.answeredAt;

const latencyOf = (bench: BenchCloud, runs: FollowedRun[]): FollowLatency => {
  const total: number[] = [];
  const fromStored: number[] = [];
  let withoutLiveSteps = 0;
  let stepsReceived = 0;
  for (const { runId, followers } of runs) {
    const batches = bench.agent.batches(runId);
    for (const follower of followers) {
      let live = false;
      let measured = 0;
      for (const { at, message } of follower.received) {
        if (message.type === 'caught-up' && message.runId === runId) live = true;
        if (message.type !== 'event' || message.runId !== runId || message.kind !== 'step') continue;
        stepsReceived += 1;
        if (!live) continue;
        total.push(at - Date.parse(String(message.data.at)));
        const stored = storedAt(batches, Number(message.data.seq));
        if (stored !== undefined) fromStored.push(at - stored);
        measured += 1;
      }
      if (measured === 0) withoutLiveSteps += 1;
    }
  }
  return {
    followers: runs[0]?.followers.length ?? 0,
    runs: runs.length,
    events: total.length,
    stepsReceived,
    followersWithoutLiveSteps: withoutLiveSteps,
    p50Ms: percentile(total, 50),
    p99Ms: percentile(total, 99),
    fromStoredP50Ms: percentile(fromStored, 50),
    fromStoredP99Ms: percentile(fromStored, 99),
  };
};

type LambdaUse = { invocations: number; ms: number };
const lambdaOf = (delta: Counters, fn: FunctionName): LambdaUse => ({
  invocations: delta.lambda[fn].invocations,
  ms: delta.lambda[fn].totalMs,
});
const sumUse = (...uses: LambdaUse[]): LambdaUse => ({
  invocations: uses.reduce((n, u) => n + u.invocations, 0),
  ms: uses.reduce((n, u) => n + u.ms, 0),
});
const meanUse = (uses: LambdaUse[]): LambdaUse => ({
  invocations: mean(uses.map((u) => u.invocations)),
  ms: mean(uses.map((u) => u.ms)),
});

const unitsOf = (delta: Counters, fn: FunctionName, operations?: string[]) => {
  const capacity = delta.dynamo.byFunction[fn];
  if (!capacity) return { readUnits: 0, writeUnits: 0 };
  if (!operations) return { readUnits: capacity.readUnits, writeUnits: capacity.writeUnits };
  // only write operations are asked for by name
  const writeUnits = operations.reduce((n, op) => n + (capacity.units[op] ?? 0), 0);
  return { readUnits: 0, writeUnits };
};

const usage = (
  lambda: Partial<Record<FunctionName, LambdaUse>>,
  units: { readUnits: number; writeUnits: number }[],
  api: { httpApiRequests: number; webSocketMessages: number; connectionMinutes: number },
): FollowUsage => {
  const uses = Object.entries(lambda) as [FunctionName, LambdaUse][];
  const invocations = uses.reduce((n, [, u]) => n + u.invocations, 0);
  const gbSeconds = uses.reduce((n, [fn, u]) => n + (u.ms / 1000) * (FUNCTIONS[fn].memoryMiB / 1024), 0);
  const readUnits = units.reduce((n, u) => n + u.readUnits, 0);
  const writeUnits = units.reduce((n, u) => n + u.writeUnits, 0);
  const cost = priceOf({
    transitions: 0,
    lambdaRequests: invocations,
    lambdaGbSeconds: gbSeconds,
    readUnits,
    writeUnits,
    sqsRequests: 0,
    apiRequests: api.httpApiRequests,
    emails: 0,
    logBytes: 0,
    webSocketMessages: api.webSocketMessages,
    connectionMinutes: api.connectionMinutes,
  });
  return {
    lambda: { invocations, gbSeconds, byFunction: lambda },
    readUnits,
    writeUnits,
    ...api,
    usd: cost.total,
  };
};

/** run-feed's writes for a follower: moving its cursor (UpdateItem) and forgetting it at the end (DeleteItem). */
const FOLLOWER_WRITES = ['UpdateItem', 'DeleteItem'];

const costOf = async (
  bench: BenchCloud,
  plain: { followed: FollowedRun[]; unfollowed: FollowedRun[] },
  metered: { followed: FollowedRun; unfollowed: FollowedRun },
): Promise<FollowCost> => {
  const [follower] = metered.followed.followers;
  if (!follower) throw new Error('the metered run had no follower');
  const feedLambda = meanUse(plain.unfollowed.map((r) => lambdaOf(r.run, 'runFeed')));
  const feedUnits = unitsOf(metered.unfollowed.run, 'runFeed');
  const feed = usage({ runFeed: feedLambda }, [feedUnits], {
    httpApiRequests: 0,
    webSocketMessages: 0,
    connectionMinutes: 0,
  });

  const ticketLambda = meanUse(plain.followed.map((r) => lambdaOf(r.setUp, 'api')));
  const streamLambda = meanUse(
    plain.followed.map((r) => sumUse(lambdaOf(r.setUp, 'stream'), lambdaOf(r.run, 'stream'))),
  );
  // run-feed is invoked once per batch of the stream's records, followed or not: a follower adds to
  // its time only (its invocations vary from run to run with how the records fall into batches)
  const runFeedFollowed = meanUse(plain.followed.map((r) => lambdaOf(r.run, 'runFeed')));
  const runFeedExtra = { invocations: 0, ms: runFeedFollowed.ms - feedLambda.ms };
  const { setUp, run } = metered.followed;
  const messages = [
    ...follower.sent.map(webSocketMessageUnits),
    ...follower.received.map((r) => webSocketMessageUnits(r.bytes)),
  ].reduce((a, b) => a + b, 0);
  const minutes = Math.ceil(((follower.closedAt ?? Date.now()) - follower.openedAt) / 60_000);
  const one = usage(
    { api: ticketLambda, stream: streamLambda, runFeed: runFeedExtra },
    [
      unitsOf(setUp, 'api'),
      unitsOf(setUp, 'stream'),
      unitsOf(run, 'stream'),
      unitsOf(run, 'runFeed', FOLLOWER_WRITES),
    ],
    { httpApiRequests: 1, webSocketMessages: messages, connectionMinutes: minutes },
  );
  const runId = metered.followed.runId;
  return {
    runWrites: await bench.runWrites(runId),
    runWritesUnfollowed: await bench.runWrites(metered.unfollowed.runId),
    feedEvents: follower.received.filter((r) => r.message.type === 'event' && r.message.runId === runId)
      .length,
    feed,
    follower: one,
    totalUsd: feed.usd + one.usd,
  };
};

export const measureFollowLatency = async (
  bench: BenchCloud,
  log: (line: string) => void,
): Promise<FollowLatencyResult> => {
  // loads api, stream and run-feed, so the measured runs see warm functions
  await followedRun(bench, 1);
  const followed: FollowedRun[] = [];
  const unfollowed: FollowedRun[] = [];
  for (let i = 0; i < SINGLE_FOLLOWER_RUNS; i++) {
    followed.push(await followedRun(bench, 1));
    unfollowed.push(await followedRun(bench, 0));
  }
  const single = latencyOf(bench, followed);
  log(`  1 follower: ${single.events} steps live, p50 ${single.p50Ms} ms, p99 ${single.p99Ms} ms`);

  bench.dynamo.setMetering(true);
  const metered = await (async () => {
    try {
      return { followed: await followedRun(bench, 1), unfollowed: await followedRun(bench, 0) };
    } finally {
      bench.dynamo.setMetering(false);
    }
  })();
  const cost = await costOf(bench, { followed, unfollowed }, metered);
  log(`  cost: feed $${cost.feed.usd.toFixed(7)}, one follower $${cost.follower.usd.toFixed(7)} per run`);

  const crowdRun = await followedRun(bench, CROWD);
  const crowd = latencyOf(bench, [crowdRun]);
  log(`  ${CROWD} followers: ${crowd.events} steps live, p50 ${crowd.p50Ms} ms, p99 ${crowd.p99Ms} ms`);
  return { demo: FOLLOW_RUN_DEMO, single, crowd, cost };
};
