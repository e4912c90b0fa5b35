import { ValidationError } from '../domain/errors.js';
import { isTerminal, type Run } from '../domain/run.js';
import type { Caller } from '../domain/tenancy.js';
import type { DirectoryRepository, LogEvent, LogReader, RunStore } from '../ports.js';
import { podLogText } from '../schemas/pod-log.js';
import type { LogsQuery } from '../schemas/timeline.js';
import { type CursorDeps, PageCursors } from './cursor.js';
import { getRun } from './runs.js';

/**
 * The run's sandbox log (its pod's stdout/stderr in CloudWatch Logs), newest page first. `nextCursor`
 * pages back through older lines; `afterCursor` follows the lines written since. Lines within a page
 * are oldest first, as a terminal shows them.
 *
 * CloudWatch's paging facts this relies on: a page may be empty while more lines lie beyond it, and at
 * either end of a stream the answer repeats the token it was given. So a page is filled from several
 * calls when they come back short, and the end is the repeated token, never an empty page.
 */

export interface RunLogDeps extends CursorDeps {
  runs: RunStore;
  directory: DirectoryRepository;
  logs: LogReader;
}

/** Why a page is empty: the sandbox has not written (or never did), or its stream is gone. */
export type LogPageReason = 'not_started' | 'expired';

export interface RunLogPage {
  items: LogEvent[];
  /** older lines; null when there are none */
  nextCursor: string | null;
  /** newer lines, for following; null when no more can come */
  afterCursor: string | null;
  reason?: LogPageReason;
}

/** GetLogEvents calls one page may take, and how long, before it answers with what it has. */
const MAX_CALLS_PER_PAGE = 10;
const PAGE_TIME_BUDGET_MS = 4000;
/** CloudWatch answers at most 1 MB a call; a page stops filling past that. */
const MAX_PAGE_BYTES = 1_048_576;

/** A position in a run's log: the stream (null before the run had one) and a CloudWatch token. */
interface Position {
  s: string | null;
  t: string | null;
}

type Direction = 'older' | 'newer';

/** The run's cursors in one direction: signed, and bound to the run and the direction (any other is a 400). */
class LogCursors {
  constructor(
    private readonly cursors: PageCursors,
    private readonly runId: string,
  ) {}

  encode(direction: Direction, position: Position): string {
    return this.cursors.encode({ logs: this.runId, direction }, JSON.stringify(position));
  }

  decode(direction: Direction, cursor: string): Position {
    return JSON.parse(this.cursors.decode({ logs: this.runId, direction }, cursor)) as Position;
  }
}

const pageBytes = (events: LogEvent[]) => events.reduce((sum, e) => sum + Buffer.byteLength(e.message), 0);

export const readRunLogs = async (
  deps: RunLogDeps,
  caller: Caller,
  runId: string,
  query: LogsQuery,
): Promise<RunLogPage> => readLogsOf(deps, await getRun(deps, caller, runId), query);

/** What reading a run's log takes once the run is read (and the caller's right to it checked). */
export type LogReadDeps = Omit<RunLogDeps, 'runs' | 'directory'>;

/** A page of the run's log, as `GET /v1/runs/{runId}/logs` answers it. */
export const readLogsOf = async (deps: LogReadDeps, run: Run, query: LogsQuery): Promise<RunLogPage> => {
  const cursors = await logCursors(deps, run);
  // Decoded before anything else, so a cursor of another run is refused whatever state this one is in.
  const older = query.cursor === undefined ? undefined : cursors.decode('older', query.cursor);
  const newer = query.after === undefined ? undefined : cursors.decode('newer', query.after);
  const stream = run.logStream;
  if (!stream) {
    return {
      items: [],
      nextCursor: null,
      // a follower starts at the first line once the sandbox writes
      afterCursor: isTerminal(run.status) ? null : cursors.encode('newer', FIRST_LINE),
      reason: 'not_started',
    };
  }
  if (newer) return follow(deps, cursors, run, stream, newer, query.limit);
  if (older && older.s !== stream) {
    throw new ValidationError('the cursor belongs to an earlier sandbox of this run');
  }
  return pageBack(deps, cursors, run, stream, older?.t ?? undefined, query.limit);
};

/**
 * Where a follow of the run's log starts: `after` (an `afterCursor` of this run, checked), or the
 * first line the run writes.
 */
export const followStart = async (
  deps: LogReadDeps,
  run: Run,
  after: string | undefined,
): Promise<string> => {
  const cursors = await logCursors(deps, run);
  if (after === undefined) return cursors.encode('newer', FIRST_LINE);
  cursors.decode('newer', after);
  return after;
};

const logCursors = async (deps: LogReadDeps, run: Run) =>
  new LogCursors(new PageCursors(await deps.cursorKey()), run.runId);

/** Before the run's first line: a follow from here gets every line of its (latest) sandbox. */
const FIRST_LINE: Position = { s: null, t: null };

/** The `limit` lines before `token` (the newest without one), oldest first. */
const pageBack = async (
  deps: LogReadDeps,
  cursors: LogCursors,
  run: Run,
  stream: string,
  token: string | undefined,
  limit: number,
): Promise<RunLogPage> => {
  const deadline = Date.now() + PAGE_TIME_BUDGET_MS;
  const chunks: LogEvent[][] = [];
  let count = 0;
  let bytes = 0;
  let position = token;
  let afterToken: string | undefined;
  let atStart = false;
  for (let calls = 1; ; calls++) {
    const page = await deps.logs.getEvents({
      logStream: stream,
      forward: false,
      token: position,
      limit: limit - count,
    });
    if (!page) return missingStream(cursors, run, stream);
    if (token === undefined && calls === 1) afterToken = page.nextForwardToken;
    chunks.unshift(page.events);
    count += page.events.length;
    bytes += pageBytes(page.events);
    if (isEnd(position, page.nextBackwardToken)) {
      atStart = true;
      break;
    }
    position = page.nextBackwardToken;
    if (count >= limit || bytes >= MAX_PAGE_BYTES) {
      // A full page cannot tell whether older lines exist; one line's worth of asking can.
      const probe = await deps.logs.getEvents({
        logStream: stream,
        forward: false,
        token: position,
        limit: 1,
      });
      if (!probe || (probe.events.length === 0 && isEnd(position, probe.nextBackwardToken))) atStart = true;
      // an empty answer with a new token skipped an empty stretch: the next page starts after it
      else if (probe.events.length === 0) position = probe.nextBackwardToken;
      break;
    }
    if (calls >= MAX_CALLS_PER_PAGE || Date.now() > deadline) break;
  }
  const items = chunks.flat().map((event) => asShown(run, event));
  return {
    items,
    nextCursor: atStart ? null : cursors.encode('older', { s: stream, t: position ?? null }),
    afterCursor: afterToken === undefined ? null : cursors.encode('newer', { s: stream, t: afterToken }),
    ...(items.length === 0 && token === undefined && atStart && isTerminal(run.status) && run.startedAt
      ? { reason: 'expired' as const }
      : {}),
  };
};

/** Lines written after the position, oldest first; the new afterCursor continues from the last. */
const follow = async (
  deps: LogReadDeps,
  cursors: LogCursors,
  run: Run,
  stream: string,
  from: Position,
  limit: number,
): Promise<RunLogPage> => {
  // A cursor taken before the run had a stream, or in an earlier sandbox of it, follows this one from its start.
  let position = from.s === stream ? (from.t ?? undefined) : undefined;
  const deadline = Date.now() + PAGE_TIME_BUDGET_MS;
  let items: LogEvent[] = [];
  for (let calls = 1; ; calls++) {
    const page = await deps.logs.getEvents({
      logStream: stream,
      forward: true,
      token: position,
      limit,
    });
    if (!page) return missingStream(cursors, run, stream, position);
    items = page.events.map((event) => asShown(run, event));
    const caughtUp = isEnd(position, page.nextForwardToken);
    if (!caughtUp) position = page.nextForwardToken;
    // new lines, or none yet: either way the follower asks again from the new position
    if (items.length > 0 || caughtUp || calls >= MAX_CALLS_PER_PAGE || Date.now() > deadline) break;
  }
  return {
    items,
    nextCursor: null,
    afterCursor: cursors.encode('newer', { s: stream, t: position ?? null }),
  };
};

/** A line as the run's log shows it: without the run prefix the pod writes for searches across logs. */
const asShown = (run: Run, event: LogEvent): LogEvent => ({
  ...event,
  message: podLogText(run.runId, event.message),
});

/** CloudWatch marks either end of a stream by answering with the token it was given (or none). */
const isEnd = (given: string | undefined, answered: string | undefined): boolean =>
  answered === undefined || (given !== undefined && answered === given);

/** The stream does not exist: not created yet (a follower waits at `token`), or deleted after the run. */
const missingStream = (cursors: LogCursors, run: Run, stream: string, token?: string): RunLogPage => {
  const reason: LogPageReason =
    isTerminal(run.status) && run.startedAt !== undefined ? 'expired' : 'not_started';
  return {
    items: [],
    nextCursor: null,
    afterCursor: reason === 'expired' ? null : cursors.encode('newer', { s: stream, t: token ?? null }),
    reason,
  };
};
