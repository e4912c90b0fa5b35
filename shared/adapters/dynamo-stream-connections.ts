import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { Caller } from '../domain/tenancy.js';
import type { Follower, LogFollower, LogStreamOwners, RunsFollower, StreamConnections } from '../ports.js';
import { compact, Expression, isConditionFailed, type Key, keys } from './dynamo-keys.js';

/*
 * The WebSocket stream's records, each gone by the table's TTL (`expiresAt`, epoch seconds) when
 * nothing removes it first:
 *
 *   TICKET#<sha256>         TICKET  the caller it was issued to; `usedBy` once redeemed
 *   CONN#<connectionId>     CONN    the caller connected
 *   FOLLOW#<runId>          C#<id>  a connection following a run: `cursor`, the last seq it was sent
 *   FOLLOWLOGS#<runId>      C#<id>  a connection following a run's log: `cursor` (a logs API afterCursor)
 *                                   and `lastAt`, the time of the last line it was sent
 *   LOGSTREAM#<stream>      LOGSTREAM  the run a pod's log stream belongs to
 *   FOLLOWRUNS#<accountId>  C#<id>  a connection following the account's runs (`projectId`: one project's;
 *                                   `projectIds`: those a caller who is not an account admin may read)
 */

const epochSeconds = (at: Date) => Math.floor(at.getTime() / 1000);
const connectionIdOf = (sk: unknown) => String(sk).slice('C#'.length);
const logFollowerOf = (item: Record<string, unknown>): LogFollower => ({
  connectionId: connectionIdOf(item.sk),
  cursor: String(item.cursor),
  lastAt: Number(item.lastAt ?? 0),
});

export class DynamoStreamConnections implements StreamConnections, LogStreamOwners {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async saveTicket(ticketHash: string, caller: Caller, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: compact({ ...keys.streamTicket(ticketHash), caller, expiresAt: epochSeconds(expiresAt) }),
      }),
    );
  }

  async redeemTicket(ticketHash: string, connectionId: string, now: Date): Promise<Caller | undefined> {
    const expr = new Expression();
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keys.streamTicket(ticketHash),
          UpdateExpression: `SET ${expr.name('usedBy')} = ${expr.value(connectionId)}`,
          ConditionExpression: `attribute_exists(${expr.name('pk')}) AND attribute_not_exists(${expr.name('usedBy')}) AND ${expr.name('expiresAt')} > ${expr.value(epochSeconds(now))}`,
          ReturnValues: 'ALL_NEW',
          ...expr.attributes(),
        }),
      );
      return out.Attributes?.caller as Caller | undefined;
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async saveConnection(connectionId: string, caller: Caller, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: compact({ ...keys.connection(connectionId), caller, expiresAt: epochSeconds(expiresAt) }),
      }),
    );
  }

  async getConnection(connectionId: string): Promise<Caller | undefined> {
    return (await this.getItem(keys.connection(connectionId)))?.caller as Caller | undefined;
  }

  async removeConnection(connectionId: string): Promise<void> {
    await this.deleteItem(keys.connection(connectionId));
  }

  async follow(runId: string, connectionId: string, cursor: number, expiresAt: Date): Promise<void> {
    await this.putFollow(keys.follower(runId, connectionId), { cursor }, expiresAt);
  }

  advance(runId: string, connectionId: string, from: number, to: number): Promise<boolean> {
    return this.moveCursor(keys.follower(runId, connectionId), from, { cursor: to });
  }

  async cursorOf(runId: string, connectionId: string): Promise<number | undefined> {
    const item = await this.getItem(keys.follower(runId, connectionId));
    return item ? Number(item.cursor) : undefined;
  }

  async followers(runId: string): Promise<Follower[]> {
    return (await this.query(keys.follower(runId, 'x').pk)).map((item) => ({
      connectionId: connectionIdOf(item.sk),
      cursor: Number(item.cursor),
    }));
  }

  async unfollow(runId: string, connectionId: string): Promise<void> {
    await this.deleteItem(keys.follower(runId, connectionId));
  }

  async followLogs(runId: string, connectionId: string, cursor: string, expiresAt: Date): Promise<void> {
    await this.putFollow(keys.logFollower(runId, connectionId), { cursor, lastAt: 0 }, expiresAt);
  }

  advanceLogs(
    runId: string,
    connectionId: string,
    from: string,
    to: { cursor: string; lastAt: number },
  ): Promise<boolean> {
    return this.moveCursor(keys.logFollower(runId, connectionId), from, to);
  }

  async logFollower(runId: string, connectionId: string): Promise<LogFollower | undefined> {
    const item = await this.getItem(keys.logFollower(runId, connectionId));
    return item ? logFollowerOf(item) : undefined;
  }

  async logFollowers(runId: string): Promise<LogFollower[]> {
    return (await this.query(keys.logFollower(runId, 'x').pk)).map(logFollowerOf);
  }

  async unfollowLogs(runId: string, connectionId: string): Promise<void> {
    await this.deleteItem(keys.logFollower(runId, connectionId));
  }

  async rememberLogStream(logStream: string, runId: string, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { ...keys.logStreamOwner(logStream), runId, expiresAt: epochSeconds(expiresAt) },
      }),
    );
  }

  async runOfLogStream(logStream: string): Promise<string | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.logStreamOwner(logStream) }),
    );
    return out.Item?.runId as string | undefined;
  }

  async followRuns(accountId: string, follower: RunsFollower, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: compact({
          ...keys.runsFollower(accountId, follower.connectionId),
          projectId: follower.projectId,
          projectIds: follower.projectIds,
          expiresAt: epochSeconds(expiresAt),
        }),
      }),
    );
  }

  async runsFollowers(accountId: string): Promise<RunsFollower[]> {
    return (await this.query(keys.runsFollower(accountId, 'x').pk)).map((item) =>
      compact({
        connectionId: connectionIdOf(item.sk),
        projectId: item.projectId as string | undefined,
        projectIds: item.projectIds as string[] | undefined,
      }),
    );
  }

  async unfollowRuns(accountId: string, connectionId: string): Promise<void> {
    await this.deleteItem(keys.runsFollower(accountId, connectionId));
  }

  private async putFollow(key: Key, cursor: Record<string, unknown>, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { ...key, ...cursor, expiresAt: epochSeconds(expiresAt) },
      }),
    );
  }

  /** Sets `to` on the follow only while its cursor is still `from`. */
  private async moveCursor(
    key: Key,
    from: number | string,
    to: { cursor: number | string } & Record<string, unknown>,
  ): Promise<boolean> {
    const expr = new Expression();
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: `SET ${Object.entries(to)
            .map(([name, value]) => `${expr.name(name)} = ${expr.value(value)}`)
            .join(', ')}`,
          ConditionExpression: `${expr.name('cursor')} = ${expr.value(from)}`,
          ...expr.attributes(),
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  private async getItem(key: Key): Promise<Record<string, unknown> | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return out.Item;
  }

  private async deleteItem(key: Key): Promise<void> {
    await this.db.send(new DeleteCommand({ TableName: this.tableName, Key: key }));
  }

  private async query(pk: string): Promise<Record<string, unknown>[]> {
    const expr = new Expression();
    const items: Record<string, unknown>[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.tableName,
        KeyConditionExpression: `${expr.name('pk')} = ${expr.value(pk)}`,
        ConsistentRead: true,
        ...expr.attributes(),
      },
    );
    for await (const page of pages) items.push(...(page.Items ?? []));
    return items;
  }
}
