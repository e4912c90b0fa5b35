import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { RequestWindow } from '../domain/throttle.js';
import type { RequestCounter } from '../ports.js';
import { keys, Update } from './dynamo-keys.js';

/*
 * Request counts, in the runs table, one item per caller and window until the table's TTL takes it:
 *
 *   REQS#<callerKey>  W#<window start>   `count`, `expiresAt` (epoch seconds, a minute after the window)
 *
 * A count is one ADD that answers the new count, so it needs no limit and can go at the same time as
 * the read of the limit. (A conditional ADD that failed at the limit would cost the same write.)
 */

const KEEP_AFTER_WINDOW_SECONDS = 60;

export class DynamoRequestCounter implements RequestCounter {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async count(callerKey: string, window: RequestWindow): Promise<number> {
    const update = new Update()
      .add('count', 1)
      .set('expiresAt', Math.ceil(window.endsAtMs / 1000) + KEEP_AFTER_WINDOW_SECONDS);
    const out = await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keys.requestWindow(callerKey, window.start),
        UpdateExpression: update.expression(),
        ReturnValues: 'UPDATED_NEW',
        ...update.attributes(),
      }),
    );
    return Number(out.Attributes?.count);
  }
}
