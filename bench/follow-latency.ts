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
 * DynamoDB front names the caller to the meter) on a metered run with one follower: run-feed's
 * cursor writes and its forgetting the follower are the follower's, the rest of its writes the
 * feed's; its reads are the feed's at the rate per write of a metered run nobody followed, the rest
 * the follower's. Lambda time comes from the local runtime's
 * per-function durations on unmetered runs: run-feed's per write of the run (a run of the same script
 * writes 80 to 140 times, as the pod's batches fall), on runs nobody followed and on runs one follower
 * followed, times the metered run's writes; the ticket's (`api`) and the follower's `stream`
 * invocations per run. Messages are counted by the follower.
 */

export const FOLLOW_RUN_DEMO: DemoScript = { steps: 100, stepDelayMs: 20, edit: false };
/** runs followed by one follower (their live steps together make the figure), and as many not followed */
export const SINGLE_FOLLOWER_RUNS = 3;
export const CROWD = 200;
/**
 * The crowd's run lasts longer: 200 follows take seconds to read their backlog on two cores, and only
 * the steps that come after a follower caught up measure the live path.
 */
export const CROWD_RUN_DEMO: DemoScript = { steps: 150, stepDelayMs: 100, edit: false };
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
  /** follows again from the last seq had, after an error (a follow that timed out) or a stall */
  refollows: number;
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
  /** a metered run of the same script nobody followed: its writes and run-feed's units, as a check */
  withoutFollower: { runWrites: number; readUnits: number; writeUnits: number };
  /** events the follower got, terminal status included */
  feedEvents: number;
  /** run-feed's milliseconds per write of the run, on runs nobody followed and on runs one follower followed */
  runFeedMsPerWrite: { unfollowed: number; followed: number };
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

/** A message as it came: the server's, or API Gateway's own when the integration failed (no `type`). */
type Incoming = ServerMessage | { type?: undefined; message: string };

interface Received {
  /** epoch ms */
  at: number;
  message: Incoming;
  bytes: number;
  /** came after the current follow's `caught-up`: sent by the fan-out, not read back from the feed */
  live: boolean;
  /** an event's seq not received before (a follow again may repeat what was on its way) */
  first: boolean;
}

interface Follower {
  received: Received[];
  /** bytes of each message the client sent */
  sent: number[];
  openedAt: number;
  closedAt?: number;
  /** follows again from the last seq it had, after an error or a stall */
  refollows: number;
  follow(runId: string): void;
  /** resolves once the run's terminal status event has come */
  ended(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** With nothing received for this long and no end yet, a follower follows again, as a client would. */
const STALL_MS = 10_000;
const MAX_REFOLLOWS = 5;

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

/**
 * A client following one run as the README tells clients to: from seq 0, and again from the last seq
 * it has (no gap) when its follow fails (an error message, or API Gateway's own when the function
 * failed) or nothing comes for a while before the end.
 */
const open = async (url: string): Promise<Follower> => {
  const socket = new WebSocket(url);
  const received: Received[] = [];
  const sent: number[] = [];
  const seqs = new Set<number>();
  const waiters = new Set<() => void>();
  let runId: string | undefined;
  let caughtUp = false;
  let contiguous = 0;
  let ended = false;
  let lastMessageAt = Date.now();

  const send = (message: Record<string, unknown>) => {
    const text = JSON.stringify(message);
    sent.push(Buffer.byteLength(text));
    socket.send(text);
  };
  const followFrom = (after: number) => {
    caughtUp = false;
    lastMessageAt = Date.now();
    send({ action: 'follow', runId, after });
  };
  const refollow = () => {
    if (ended || follower.refollows >= MAX_REFOLLOWS || socket.readyState !== WebSocket.OPEN) return;
    follower.refollows += 1;
    followFrom(contiguous);
  };

  socket.on('message', (data) => {
    const at = Date.now();
    lastMessageAt = at;
    const text = String(data);
    const message = JSON.parse(text) as Incoming;
    const isEvent = message.type === 'event' && message.runId === runId;
    const first = isEvent && !seqs.has(message.seq);
    received.push({ at, message, bytes: Buffer.byteLength(text), live: caughtUp, first });
    if (isEvent) {
      seqs.add(message.seq);
      while (seqs.has(contiguous + 1)) contiguous += 1;
      if (endsFeed(message)) ended = true;
    } else if (message.type === 'caught-up' && message.runId === runId) caughtUp = true;
    else if (message.type === undefined || message.type === 'error') refollow();
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
    refollows: 0,
    follow: (id) => {
      runId = id;
      followFrom(0);
    },
    ended: (timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const stop = () => {
          clearTimeout(timer);
          clearInterval(watchdog);
          waiters.delete(check);
        };
        const check = () => {
          if (!ended) return;
          stop();
          resolve();
        };
        const timer = setTimeout(() => {
          stop();
          reject(new Error(`a follower did not see run ${runId} end in ${timeoutMs} ms`));
        }, timeoutMs);
        const watchdog = setInterval(() => {
          if (Date.now() - lastMessageAt > STALL_MS) refollow();
        }, 1000);
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
const followedRun = async (
  bench: BenchCloud,
  count: number,
  demo: DemoScript = FOLLOW_RUN_DEMO,
): Promise<FollowedRun> => {
  await bench.settle();
  const start = await bench.counters();
  const followers = await openFollowers(bench, count);
  try {
    const connected = await bench.counters();
    const runId = await bench.dispatch({ repoless: true, demo });
    for (const follower of followers) follower.follow(runId);
    await Promise.all(followers.map((f) => f.ended(RUN_TIMEOUT_MS)));
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
  let refollows = 0;
  for (const { runId, followers } of runs) {
    const batches = bench.agent.batches(runId);
    for (const follower of followers) {
      refollows += follower.refollows;
      let measured = 0;
      for (const { at, message, live, first } of follower.received) {
        if (!first || message.type !== 'event' || message.kind !== 'step') continue;
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
    refollows,
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

const unitsOf = (delta: Counters, fn: FunctionName) => {
  const capacity = delta.dynamo.byFunction[fn];
  return { readUnits: capacity?.readUnits ?? 0, writeUnits: capacity?.writeUnits ?? 0 };
};

const writeUnitsOf = (delta: Counters, fn: FunctionName, operations: readonly string[]) => {
  const units = delta.dynamo.byFunction[fn]?.units ?? {};
  return operations.reduce((n, op) => n + (units[op] ?? 0), 0);
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

/**
 * run-feed's writes for a follower: moving its cursor (UpdateItem) and forgetting it at the end
 * (DeleteItem); the feed itself is put (its head and packs, in a transaction).
 */
const FOLLOWER_WRITES = ['UpdateItem', 'DeleteItem'] as const;

/** run-feed's invocations and time per write of the runs, which vary in their writes with the pod's batching. */
const runFeedPerWrite = (runs: FollowedRun[], writes: Map<string, number>): LambdaUse => {
  const total = runs.reduce((n, r) => n + (writes.get(r.runId) ?? 0), 0);
  const use = sumUse(...runs.map((r) => lambdaOf(r.run, 'runFeed')));
  return { invocations: use.invocations / total, ms: use.ms / total };
};

const costOf = async (
  bench: BenchCloud,
  plain: { followed: FollowedRun[]; unfollowed: FollowedRun[] },
  metered: { followed: FollowedRun; unfollowed: FollowedRun },
): Promise<FollowCost> => {
  const [follower] = metered.followed.followers;
  if (!follower) throw new Error('the metered run had no follower');
  const { setUp, run } = metered.followed;
  const writes = new Map<string, number>();
  for (const r of [...plain.followed, ...plain.unfollowed, metered.followed, metered.unfollowed])
    writes.set(r.runId, await bench.runWrites(r.runId));
  const runWrites = writes.get(metered.followed.runId) ?? 0;
  // run-feed's Lambda use per write, on the runs nobody followed and on those one follower followed,
  // for as many writes as the metered run had
  const unfollowedPerWrite = runFeedPerWrite(plain.unfollowed, writes);
  const followedPerWrite = runFeedPerWrite(plain.followed, writes);
  const feedLambda = {
    invocations: unfollowedPerWrite.invocations * runWrites,
    ms: unfollowedPerWrite.ms * runWrites,
  };
  // run-feed's writes for the follower are its own operations; its reads for the follower (the
  // followers it finds) are what it read beyond the run nobody followed, per write
  const runFeedUnits = unitsOf(run, 'runFeed');
  const followerWrites = writeUnitsOf(run, 'runFeed', FOLLOWER_WRITES);
  const unfollowedReads = unitsOf(metered.unfollowed.run, 'runFeed').readUnits;
  const feedReads = (unfollowedReads / (writes.get(metered.unfollowed.runId) ?? 1)) * runWrites;
  const feed = usage(
    { runFeed: feedLambda },
    [{ readUnits: feedReads, writeUnits: runFeedUnits.writeUnits - followerWrites }],
    { httpApiRequests: 0, webSocketMessages: 0, connectionMinutes: 0 },
  );

  const ticketLambda = meanUse(plain.followed.map((r) => lambdaOf(r.setUp, 'api')));
  const streamLambda = meanUse(
    plain.followed.map((r) => sumUse(lambdaOf(r.setUp, 'stream'), lambdaOf(r.run, 'stream'))),
  );
  // run-feed is invoked once per batch of the stream's records, followed or not: a follower adds to
  // its time only
  const runFeedExtra = { invocations: 0, ms: (followedPerWrite.ms - unfollowedPerWrite.ms) * runWrites };
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
      { readUnits: runFeedUnits.readUnits - feedReads, writeUnits: followerWrites },
    ],
    { httpApiRequests: 1, webSocketMessages: messages, connectionMinutes: minutes },
  );
  return {
    runWrites,
    withoutFollower: {
      runWrites: writes.get(metered.unfollowed.runId) ?? 0,
      ...unitsOf(metered.unfollowed.run, 'runFeed'),
    },
    feedEvents: follower.received.filter((r) => r.first).length,
    runFeedMsPerWrite: { unfollowed: unfollowedPerWrite.ms, followed: followedPerWrite.ms },
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
  const { withoutFollower: check } = cost;
  log(
    `  run-feed per write: ${cost.runFeedMsPerWrite.unfollowed.toFixed(1)} ms nobody following, ${cost.runFeedMsPerWrite.followed.toFixed(1)} ms one follower; cost of a run of ${cost.runWrites} writes: feed $${cost.feed.usd.toFixed(7)} (${cost.feed.readUnits} / ${cost.feed.writeUnits} units), one follower $${cost.follower.usd.toFixed(7)}; a run of ${check.runWrites} writes nobody followed: run-feed ${check.readUnits} / ${check.writeUnits} units`,
  );

  const crowdRun = await followedRun(bench, CROWD, CROWD_RUN_DEMO);
  const crowd = latencyOf(bench, [crowdRun]);
  log(`  ${CROWD} followers: ${crowd.events} steps live, p50 ${crowd.p50Ms} ms, p99 ${crowd.p99Ms} ms`);
  return { demo: FOLLOW_RUN_DEMO, single, crowd, cost };
};
