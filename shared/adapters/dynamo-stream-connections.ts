import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { Caller } from '../domain/tenancy.js';
import type { Follower, RunsFollower, StreamConnections } from '../ports.js';
import { compact, Expression, isConditionFailed, keys } from './dynamo-keys.js';

/*
 * The WebSocket stream's records, each gone by the table's TTL (`expiresAt`, epoch seconds) when
 * nothing removes it first:
 *
 *   TICKET#<sha256>         TICKET  the caller it was issued to; `usedBy` once redeemed
 *   CONN#<connectionId>     CONN    the caller connected
 *   FOLLOW#<runId>          C#<id>  a connection following a run: `cursor`, the last seq it was sent
 *   FOLLOWRUNS#<accountId>  C#<id>  a connection following the account's runs (`projectId`: one project's)
 */

const epochSeconds = (at: Date) => Math.floor(at.getTime() / 1000);
const connectionIdOf = (sk: unknown) => String(sk).slice('C#'.length);

export class DynamoStreamConnections implements StreamConnections {
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
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.connection(connectionId), ConsistentRead: true }),
    );
    return out.Item?.caller as Caller | undefined;
  }

  async removeConnection(connectionId: string): Promise<void> {
    await this.db.send(new DeleteCommand({ TableName: this.tableName, Key: keys.connection(connectionId) }));
  }

  async follow(runId: string, connectionId: string, cursor: number, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { ...keys.follower(runId, connectionId), cursor, expiresAt: epochSeconds(expiresAt) },
      }),
    );
  }

  async advance(runId: string, connectionId: string, from: number, to: number): Promise<boolean> {
    const expr = new Expression();
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keys.follower(runId, connectionId),
          UpdateExpression: `SET ${expr.name('cursor')} = ${expr.value(to)}`,
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

  async cursorOf(runId: string, connectionId: string): Promise<number | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: keys.follower(runId, connectionId),
        ConsistentRead: true,
      }),
    );
    return out.Item ? Number(out.Item.cursor) : undefined;
  }

  async followers(runId: string): Promise<Follower[]> {
    return (await this.query(keys.follower(runId, 'x').pk)).map((item) => ({
      connectionId: connectionIdOf(item.sk),
      cursor: Number(item.cursor),
    }));
  }

  async unfollow(runId: string, connectionId: string): Promise<void> {
    await this.db.send(
      new DeleteCommand({ TableName: this.tableName, Key: keys.follower(runId, connectionId) }),
    );
  }

  async followRuns(accountId: string, follower: RunsFollower, expiresAt: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: compact({
          ...keys.runsFollower(accountId, follower.connectionId),
          projectId: follower.projectId,
          expiresAt: epochSeconds(expiresAt),
        }),
      }),
    );
  }

  async runsFollowers(accountId: string): Promise<RunsFollower[]> {
    return (await this.query(keys.runsFollower(accountId, 'x').pk)).map((item) =>
      compact({ connectionId: connectionIdOf(item.sk), projectId: item.projectId as string | undefined }),
    );
  }

  async unfollowRuns(accountId: string, connectionId: string): Promise<void> {
    await this.db.send(
      new DeleteCommand({ TableName: this.tableName, Key: keys.runsFollower(accountId, connectionId) }),
    );
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
