import { setTimeout as sleep } from 'node:timers/promises';
import type { Run } from '../domain/run.js';
import type { Caller } from '../domain/tenancy.js';
import type {
  Clock,
  ConnectionSender,
  DirectoryRepository,
  LogFollower,
  LogStreamOwners,
  RunStore,
  StreamConnections,
} from '../ports.js';
import type { LogLine, ServerMessage } from '../schemas/stream.js';
import {
  CATCH_UP_MS,
  CONNECTION_TTL_SECONDS,
  catchUpUnfinished,
  FAN_OUT_CONCURRENCY,
  inBatches,
  later,
} from './followers.js';
import { followStart, type LogReadDeps, readLogsOf } from './logs.js';
import { getRun } from './runs.js';

/**
 * Following a run's log over the WebSocket API. The lines are read where they are kept, the pods' log
 * group, through the logs API's `afterCursor`; the log group's subscription only says when a stream has
 * new lines. Each follower's cursor is moved only from where it stands, by whoever then sends those
 * lines (as for the run's events), so a line is sent once to each follower, whether by the follow's
 * catch-up or by any of the deliveries that may run at the same time. Every `log` message names the
 * cursor it continues (`from`), so a client puts two that crossed in flight back in order.
 */

export interface LogStreamDeps extends LogReadDeps {
  directory: DirectoryRepository;
  connections: StreamConnections;
  sender: ConnectionSender;
  runs: RunStore;
  clock: Clock;
  /** waits between reads of lines a delivery announced that the logs API does not show yet */
  pause?: (ms: number) => Promise<unknown>;
}

/** Lines read at a time, fewer when they would not fit one message. */
const LOG_PAGE_LINES = 500;
/** API Gateway's limit on one WebSocket message, less room for the envelope (run id and two cursors). */
const MAX_LINES_BYTES = 128 * 1024 - 6 * 1024;
/** Reads again, this many times this far apart, when a delivery's lines are not readable yet. */
const UNSEEN_WAITS = 8;
const UNSEEN_WAIT_MS = 250;

/** `followLogs`: the lines after `after` (from the first without), then the lines as they are written. */
export const followLogs = async (
  deps: LogStreamDeps,
  caller: Caller,
  connectionId: string,
  runId: string,
  after: string | undefined,
): Promise<void> => {
  const run = await getRun(deps, caller, runId);
  const cursor = await followStart(deps, run, after);
  // said before the follow is stored, so no line reaches the client ahead of it
  await deps.sender.send(connectionId, { type: 'following-logs', runId, cursor } satisfies ServerMessage);
  await deps.connections.followLogs(
    runId,
    connectionId,
    cursor,
    later(deps.clock.now(), CONNECTION_TTL_SECONDS),
  );
  const deadline = deps.clock.now().getTime() + CATCH_UP_MS;
  const outcome = await sendNewLines(deps, run, { connectionId, cursor, lastAt: 0 }, { deadline });
  if (outcome.state === 'caught-up') {
    await deps.sender.send(connectionId, {
      type: 'logs-caught-up',
      runId,
      cursor: outcome.cursor,
    } satisfies ServerMessage);
  } else if (outcome.state === 'unfinished') {
    await deps.sender.send(connectionId, catchUpUnfinished(runId, 'the cursor of the last log message'));
  }
};

/**
 * A delivery of the pods' log group's subscription: `logStream` has lines up to `newestAt` (epoch ms).
 * Each follower of the stream's run is sent what it has not been sent yet.
 */
export const publishLogs = async (
  deps: Omit<LogStreamDeps, 'directory'> & { logStreams: LogStreamOwners },
  delivery: { logStream: string; newestAt: number },
): Promise<number> => {
  const runId = await deps.logStreams.runOfLogStream(delivery.logStream);
  if (runId === undefined) return 0;
  const followers = await deps.connections.logFollowers(runId);
  if (followers.length === 0) return 0;
  const run = await deps.runs.get(runId);
  if (!run) return 0;
  await inBatches(followers, FAN_OUT_CONCURRENCY, (follower) =>
    sendNewLines(deps, run, follower, { coverUntil: delivery.newestAt }),
  );
  return followers.length;
};

type SendOutcome =
  | { state: 'caught-up'; cursor: string }
  | { state: 'unfinished'; cursor: string }
  | { state: 'gone' | 'unfollowed' };

/**
 * Sends the follower the lines after its cursor until a read finds none, moving the cursor first each
 * time. `coverUntil`: a line of that time was delivered, so an empty read before the follower has been
 * sent it means the logs API does not show it yet, and is tried again a little later.
 */
const sendNewLines = async (
  deps: Omit<LogStreamDeps, 'directory'>,
  run: Run,
  follower: LogFollower,
  limits: { coverUntil?: number; deadline?: number },
): Promise<SendOutcome> => {
  const { connectionId } = follower;
  const { runId } = run;
  let { cursor, lastAt } = follower;
  let waits = 0;
  for (;;) {
    if (limits.deadline !== undefined && deps.clock.now().getTime() > limits.deadline) {
      return { state: 'unfinished', cursor };
    }
    const page = await readFitting(deps, run, cursor);
    if (page.lines.length === 0) {
      const unseen = page.next !== null && lastAt < (limits.coverUntil ?? 0);
      if (!unseen || waits >= UNSEEN_WAITS) return { state: 'caught-up', cursor };
      waits += 1;
      await (deps.pause ?? sleep)(UNSEEN_WAIT_MS);
      continue;
    }
    const to = {
      cursor: page.next ?? cursor,
      lastAt: Math.max(lastAt, ...page.lines.map((line) => line.timestamp)),
    };
    if (!(await deps.connections.advanceLogs(runId, connectionId, cursor, to))) {
      // someone else sent these lines (or the follow went): go on from where the cursor is now
      const moved = await deps.connections.logFollower(runId, connectionId);
      if (!moved) return { state: 'unfollowed' };
      ({ cursor, lastAt } = moved);
      continue;
    }
    const message: ServerMessage = { type: 'log', runId, from: cursor, cursor: to.cursor, lines: page.lines };
    if ((await deps.sender.send(connectionId, message)) === 'gone') {
      await Promise.all([
        deps.connections.unfollowLogs(runId, connectionId),
        deps.connections.removeConnection(connectionId),
      ]);
      return { state: 'gone' };
    }
    ({ cursor, lastAt } = to);
  }
};

const linesBytes = (lines: readonly LogLine[]) => Buffer.byteLength(JSON.stringify(lines));

/**
 * The lines after `cursor` that fit one message: fewer are read again when they do not, and a single
 * line longer than a message is cut. `next`: the cursor after them (null: no more can come).
 */
const readFitting = async (
  deps: LogReadDeps,
  run: Run,
  cursor: string,
): Promise<{ lines: LogLine[]; next: string | null }> => {
  let limit = LOG_PAGE_LINES;
  for (;;) {
    const page = await readLogsOf(deps, run, { after: cursor, limit });
    const lines: LogLine[] = page.items.map(({ timestamp, message }) => ({ timestamp, message }));
    if (linesBytes(lines) <= MAX_LINES_BYTES) return { lines, next: page.afterCursor };
    const [only] = lines;
    if (lines.length === 1 && only) return { lines: [cutToFit(only)], next: page.afterCursor };
    limit = Math.ceil(lines.length / 2);
  }
};

/** The line with its message cut to the most whole characters one message can carry. */
const cutToFit = (line: LogLine): LogLine => {
  const chars = [...line.message];
  const cut = (n: number): LogLine => ({ ...line, message: chars.slice(0, n).join(''), truncated: true });
  let low = 0;
  let high = chars.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (linesBytes([cut(mid)]) <= MAX_LINES_BYTES) low = mid;
    else high = mid - 1;
  }
  return cut(low);
};
