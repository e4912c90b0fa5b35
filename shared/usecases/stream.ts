import { DomainError, UnauthorizedError } from '../domain/errors.js';
import {
  endsFeed,
  type FeedEvent,
  feedEventsOf,
  headAfter,
  type NewFeedEvent,
  type RunChange,
} from '../domain/feed.js';
import { randomToken } from '../domain/ids.js';
import type { Caller } from '../domain/tenancy.js';
import type { FeedStore } from '../ports.js';
import { type ClientMessage, clientMessageSchema, type ServerMessage } from '../schemas/stream.js';
import {
  CATCH_UP_MS,
  CONNECTION_TTL_SECONDS,
  catchUpUnfinished,
  FAN_OUT_CONCURRENCY,
  inBatches,
  later,
} from './followers.js';
import { hashSecret } from './lifecycle.js';
import { getRun, viewableProject, viewableProjectIds } from './runs.js';
import { followLogs, type LogStreamDeps } from './stream-logs.js';

/**
 * Following runs live over the WebSocket API. A run's feed (its events numbered 1, 2, 3, ...) is
 * appended from the table's stream of run writes and sent to the connections that follow the run;
 * a follow reads what it missed from the feed first. Each follower has a cursor (the last seq it was
 * sent), moved only from where it is: whoever moves it sends those events, so at the seam between
 * the stored backlog and the live events nothing is sent twice and nothing is skipped.
 */

export interface StreamDeps extends LogStreamDeps {
  feed: FeedStore;
}

/** A ticket is redeemed within a minute of its issue, once. */
export const TICKET_TTL_SECONDS = 60;
/** Events sent per read of the feed while catching up. */
const CATCH_UP_PAGE = 100;

/** A single-use ticket for the WebSocket API, so no long-lived token travels in a URL. */
export const issueTicket = async (
  deps: Pick<StreamDeps, 'connections' | 'clock'>,
  caller: Caller,
  settings: { webSocketUrl: string },
): Promise<{ ticket: string; url: string; expiresAt: string }> => {
  const ticket = randomToken(32);
  const expiresAt = later(deps.clock.now(), TICKET_TTL_SECONDS);
  await deps.connections.saveTicket(hashSecret(ticket), caller, expiresAt);
  const url = new URL(settings.webSocketUrl);
  url.searchParams.set('ticket', ticket);
  return { ticket, url: url.toString(), expiresAt: expiresAt.toISOString() };
};

/** `$connect`: the ticket is spent and the connection stands for its caller; anything else is refused. */
export const connect = async (
  deps: Pick<StreamDeps, 'connections' | 'clock'>,
  connectionId: string,
  ticket: string | undefined,
): Promise<void> => {
  const now = deps.clock.now();
  const caller = ticket
    ? await deps.connections.redeemTicket(hashSecret(ticket), connectionId, now)
    : undefined;
  if (!caller)
    throw new UnauthorizedError('a ticket from POST /v1/stream/tickets, unused and under a minute old');
  await deps.connections.saveConnection(connectionId, caller, later(now, CONNECTION_TTL_SECONDS));
};

export const disconnect = (deps: Pick<StreamDeps, 'connections'>, connectionId: string) =>
  deps.connections.removeConnection(connectionId);

const errorMessage = (err: unknown, runId?: string): ServerMessage => ({
  type: 'error',
  code: err instanceof DomainError ? err.code : 'InternalError',
  message: err instanceof DomainError ? err.message : 'the request could not be carried out; try again',
  ...(runId === undefined ? {} : { runId }),
});

/** A client's message: answered on the connection, a refusal included (`type: error`). */
export const receive = async (
  deps: StreamDeps,
  connectionId: string,
  body: string | undefined,
): Promise<void> => {
  const caller = await deps.connections.getConnection(connectionId);
  if (!caller) {
    await deps.sender.send(
      connectionId,
      errorMessage(new UnauthorizedError('this connection is not signed in')),
    );
    return;
  }
  let message: ClientMessage;
  try {
    message = clientMessageSchema.parse(JSON.parse(body ?? ''));
  } catch {
    await deps.sender.send(connectionId, {
      type: 'error',
      code: 'ValidationError',
      message:
        'a message is JSON with an action: {"action":"follow","runId":"...","after":0}, {"action":"followLogs","runId":"...","after":"<cursor>"?}, {"action":"followRuns","projectId":"..."?} or {"action":"ping"}',
    } satisfies ServerMessage);
    return;
  }
  switch (message.action) {
    case 'ping':
      await deps.sender.send(connectionId, { type: 'pong' } satisfies ServerMessage);
      return;
    case 'followRuns':
      try {
        await followRuns(deps, caller, connectionId, message.projectId);
      } catch (err) {
        await deps.sender.send(connectionId, errorMessage(err));
      }
      return;
    case 'follow':
    case 'followLogs':
      try {
        if (message.action === 'follow')
          await follow(deps, caller, connectionId, message.runId, message.after);
        else await followLogs(deps, caller, connectionId, message.runId, message.after);
      } catch (err) {
        await deps.sender.send(connectionId, errorMessage(err, message.runId));
      }
  }
};

/**
 * Follows the status changes of the account's runs, or of one project's: those of the projects the
 * caller may read (every one for an account admin), as they stand when the follow starts.
 */
const followRuns = async (
  deps: StreamDeps,
  caller: Caller,
  connectionId: string,
  projectId: string | undefined,
): Promise<void> => {
  if (projectId !== undefined) await viewableProject(deps, caller, projectId);
  const projectIds = projectId === undefined ? await viewableProjectIds(deps, caller) : undefined;
  await deps.connections.followRuns(
    caller.accountId,
    {
      connectionId,
      ...(projectId === undefined ? {} : { projectId }),
      ...(projectIds === undefined ? {} : { projectIds }),
    },
    later(deps.clock.now(), CONNECTION_TTL_SECONDS),
  );
  await deps.sender.send(connectionId, {
    type: 'following-runs',
    projectId: projectId ?? null,
  } satisfies ServerMessage);
};

/** Sends the events from `from + 1` through the last of `events` once the follower's cursor is moved there. */
const sendOnce = async (
  deps: Pick<StreamDeps, 'connections' | 'sender'>,
  runId: string,
  connectionId: string,
  from: number,
  events: FeedEvent[],
): Promise<'sent' | 'moved' | 'gone'> => {
  const last = events.at(-1);
  if (!last) return 'sent';
  if (!(await deps.connections.advance(runId, connectionId, from, last.seq))) return 'moved';
  for (const event of events) {
    const sent = await deps.sender.send(connectionId, {
      type: 'event',
      runId,
      ...event,
    } satisfies ServerMessage);
    if (sent === 'gone') {
      await Promise.all([
        deps.connections.unfollow(runId, connectionId),
        deps.connections.removeConnection(connectionId),
      ]);
      return 'gone';
    }
  }
  if (events.some(endsFeed)) await deps.connections.unfollow(runId, connectionId);
  return 'sent';
};

/**
 * Follows a run from `after`: the stored events after it, then whatever the feed gains while they are
 * sent, until a read of the feed finds nothing past the cursor; from then on the fan-out sends.
 */
const follow = async (
  deps: StreamDeps,
  caller: Caller,
  connectionId: string,
  runId: string,
  after: number,
): Promise<void> => {
  await getRun(deps, caller, runId);
  await deps.connections.follow(runId, connectionId, after, later(deps.clock.now(), CONNECTION_TTL_SECONDS));
  let cursor = after;
  const deadline = deps.clock.now().getTime() + CATCH_UP_MS;
  for (;;) {
    if (deps.clock.now().getTime() > deadline) {
      await deps.sender.send(connectionId, catchUpUnfinished(runId, 'the last seq received'));
      return;
    }
    const events = await deps.feed.after(runId, cursor, CATCH_UP_PAGE);
    if (events.length === 0) break;
    const outcome = await sendOnce(deps, runId, connectionId, cursor, events);
    if (outcome === 'gone') return;
    if (outcome === 'moved') {
      // the fan-out sent past it meanwhile (or the run ended and the follow went): go on from there
      const moved = await deps.connections.cursorOf(runId, connectionId);
      if (moved === undefined) break;
      cursor = moved;
      continue;
    }
    cursor = events.at(-1)?.seq ?? cursor;
  }
  await deps.sender.send(connectionId, { type: 'caught-up', runId, seq: cursor } satisfies ServerMessage);
};

/** One append takes no more than this much of a run's changes: a transaction carries at most 4 MB. */
const APPEND_BYTES = 1024 * 1024;

/**
 * Writes of one run's records, in the order the table's stream delivers them: their events are
 * appended to the run's feed (once: a change delivered again finds itself there), as few appends as
 * fit, and sent to the run's followers whose cursor is where the new events begin; followers still
 * catching up get them from the feed. Status changes go to the followers of the account's runs too.
 * A feed that falls behind a busy run so catches up in larger steps, not one write at a time.
 */
export const publishChanges = async (
  deps: Pick<StreamDeps, 'connections' | 'sender' | 'feed'>,
  changes: readonly RunChange[],
): Promise<FeedEvent[]> => {
  const published: FeedEvent[] = [];
  let rest = changes;
  while (rest.length > 0) {
    const { appended, taken } = await appendSome(deps, rest);
    rest = rest.slice(taken);
    if (appended.length === 0) continue;
    published.push(...appended);
    await tellFollowers(deps, appended, changes.slice(0, changes.length - rest.length));
  }
  return published;
};

/** Appends the events of the first changes that fit one append; answers them and how many changes it took. */
const appendSome = async (
  deps: Pick<StreamDeps, 'feed'>,
  changes: readonly RunChange[],
): Promise<{ appended: FeedEvent[]; taken: number }> => {
  const runId = changes[0]?.runId ?? '';
  for (;;) {
    const head = await deps.feed.head(runId);
    let at = head;
    let taken = 0;
    let bytes = 0;
    const events: NewFeedEvent[] = [];
    for (const change of changes) {
      const more = feedEventsOf(at, change) ?? [];
      const size = Buffer.byteLength(JSON.stringify(more));
      if (taken > 0 && bytes + size > APPEND_BYTES) break;
      events.push(...more);
      bytes += size;
      taken += 1;
      if (more.length > 0) at = headAfter(at, change.change, more);
    }
    if (events.length === 0) return { appended: [], taken };
    const appended = await deps.feed.append(runId, head, events, at.lastChange);
    if (appended) return { appended, taken };
  }
};

const tellFollowers = async (
  deps: Pick<StreamDeps, 'connections' | 'sender'>,
  events: FeedEvent[],
  changes: readonly RunChange[],
) => {
  const last = changes.at(-1);
  if (!last) return;
  const from = (events[0]?.seq ?? 1) - 1;
  await inBatches(await deps.connections.followers(last.runId), FAN_OUT_CONCURRENCY, (follower) =>
    sendOnce(deps, last.runId, follower.connectionId, from, events),
  );
  const run = [...changes].reverse().find((change) => change.kind === 'run');
  if (run?.kind === 'run') await tellRunsFollowers(deps, run.after, events);
};

const tellRunsFollowers = async (
  deps: Pick<StreamDeps, 'connections' | 'sender'>,
  run: { runId: string; accountId: string; projectId: string; podId: string },
  events: FeedEvent[],
) => {
  const statuses = events.filter((event) => event.kind === 'status');
  if (statuses.length === 0) return;
  const followers = (await deps.connections.runsFollowers(run.accountId)).filter(
    (follower) =>
      (follower.projectId === undefined || follower.projectId === run.projectId) &&
      (follower.projectIds === undefined || follower.projectIds.includes(run.projectId)),
  );
  await inBatches(followers, FAN_OUT_CONCURRENCY, async (follower) => {
    for (const event of statuses) {
      const message: ServerMessage = {
        type: 'run',
        runId: run.runId,
        projectId: run.projectId,
        podId: run.podId,
        status: String(event.data.status),
        at: event.at,
      };
      if ((await deps.sender.send(follower.connectionId, message)) === 'gone') {
        await deps.connections.unfollowRuns(run.accountId, follower.connectionId);
        return;
      }
    }
  });
};
