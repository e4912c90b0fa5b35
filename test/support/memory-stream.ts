import type { FeedEvent, FeedHead, NewFeedEvent } from '../../shared/domain/feed.js';
import { EMPTY_FEED, headAfter } from '../../shared/domain/feed.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type {
  ConnectionSender,
  FeedStore,
  Follower,
  LogFollower,
  LogStreamOwners,
  RunsFollower,
  StreamConnections,
} from '../../shared/ports.js';

/** The feed store's contract in memory: appends only from the head they were numbered from. */
export class MemoryFeed implements FeedStore {
  readonly heads = new Map<string, FeedHead>();
  readonly events = new Map<string, FeedEvent[]>();

  async head(runId: string): Promise<FeedHead> {
    return { ...(this.heads.get(runId) ?? EMPTY_FEED) };
  }

  async append(
    runId: string,
    head: FeedHead,
    events: NewFeedEvent[],
    change: string,
  ): Promise<FeedEvent[] | false> {
    if (JSON.stringify(await this.head(runId)) !== JSON.stringify(head)) return false;
    const numbered = events.map((event, i) => ({ seq: head.seq + 1 + i, ...event }));
    this.heads.set(runId, headAfter(head, change, numbered));
    this.events.set(runId, [...(this.events.get(runId) ?? []), ...structuredClone(numbered)]);
    return numbered;
  }

  async after(runId: string, seq: number, limit: number): Promise<FeedEvent[]> {
    return (this.events.get(runId) ?? []).filter((e) => e.seq > seq).slice(0, limit);
  }
}

/** The stream's connections in memory, with the cursor moved only from where it is. */
export class MemoryConnections implements StreamConnections, LogStreamOwners {
  readonly tickets = new Map<string, { caller: Caller; expiresAt: Date; usedBy?: string }>();
  readonly connections = new Map<string, Caller>();
  readonly follows = new Map<string, number>();
  readonly runsFollows = new Map<string, RunsFollower & { accountId: string }>();
  readonly logFollows = new Map<string, { cursor: string; lastAt: number }>();
  readonly logStreams = new Map<string, string>();

  async saveTicket(hash: string, caller: Caller, expiresAt: Date) {
    this.tickets.set(hash, { caller, expiresAt });
  }
  async redeemTicket(hash: string, connectionId: string, now: Date) {
    const ticket = this.tickets.get(hash);
    if (!ticket || ticket.usedBy || ticket.expiresAt <= now) return undefined;
    ticket.usedBy = connectionId;
    return ticket.caller;
  }
  async saveConnection(connectionId: string, caller: Caller) {
    this.connections.set(connectionId, caller);
  }
  async getConnection(connectionId: string) {
    return this.connections.get(connectionId);
  }
  async removeConnection(connectionId: string) {
    this.connections.delete(connectionId);
  }
  async follow(runId: string, connectionId: string, cursor: number) {
    this.follows.set(`${runId}/${connectionId}`, cursor);
  }
  async advance(runId: string, connectionId: string, from: number, to: number) {
    const key = `${runId}/${connectionId}`;
    if (this.follows.get(key) !== from) return false;
    this.follows.set(key, to);
    return true;
  }
  async cursorOf(runId: string, connectionId: string) {
    return this.follows.get(`${runId}/${connectionId}`);
  }
  async followers(runId: string): Promise<Follower[]> {
    return [...this.follows]
      .filter(([key]) => key.startsWith(`${runId}/`))
      .map(([key, cursor]) => ({ connectionId: key.slice(runId.length + 1), cursor }));
  }
  async unfollow(runId: string, connectionId: string) {
    this.follows.delete(`${runId}/${connectionId}`);
  }
  async followLogs(runId: string, connectionId: string, cursor: string) {
    this.logFollows.set(`${runId}/${connectionId}`, { cursor, lastAt: 0 });
  }
  async advanceLogs(
    runId: string,
    connectionId: string,
    from: string,
    to: { cursor: string; lastAt: number },
  ) {
    const key = `${runId}/${connectionId}`;
    if (this.logFollows.get(key)?.cursor !== from) return false;
    this.logFollows.set(key, { ...to });
    return true;
  }
  async logFollower(runId: string, connectionId: string): Promise<LogFollower | undefined> {
    const follow = this.logFollows.get(`${runId}/${connectionId}`);
    return follow && { connectionId, ...follow };
  }
  async logFollowers(runId: string): Promise<LogFollower[]> {
    return [...this.logFollows]
      .filter(([key]) => key.startsWith(`${runId}/`))
      .map(([key, follow]) => ({ connectionId: key.slice(runId.length + 1), ...follow }));
  }
  async unfollowLogs(runId: string, connectionId: string) {
    this.logFollows.delete(`${runId}/${connectionId}`);
  }
  async rememberLogStream(logStream: string, runId: string) {
    this.logStreams.set(logStream, runId);
  }
  async runOfLogStream(logStream: string) {
    return this.logStreams.get(logStream);
  }
  async followRuns(accountId: string, follower: RunsFollower) {
    this.runsFollows.set(`${accountId}/${follower.connectionId}`, { ...follower, accountId });
  }
  async runsFollowers(accountId: string) {
    return [...this.runsFollows.values()]
      .filter((f) => f.accountId === accountId)
      .map(({ accountId: _a, ...follower }) => follower);
  }
  async unfollowRuns(accountId: string, connectionId: string) {
    this.runsFollows.delete(`${accountId}/${connectionId}`);
  }
}

/** Every message sent, by connection; connections named in `gone` have left. */
export class RecordingSender implements ConnectionSender {
  readonly sent = new Map<string, unknown[]>();
  readonly gone = new Set<string>();

  async send(connectionId: string, message: unknown): Promise<'sent' | 'gone'> {
    if (this.gone.has(connectionId)) return 'gone';
    this.sent.set(connectionId, [...(this.sent.get(connectionId) ?? []), structuredClone(message)]);
    return 'sent';
  }

  to(connectionId: string): Record<string, unknown>[] {
    return (this.sent.get(connectionId) ?? []) as Record<string, unknown>[];
  }
}
