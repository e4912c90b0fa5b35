import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { RequestWindow } from '../domain/throttle.js';
import type { RequestCounter } from '../ports.js';
import { isConditionFailed, keys, Update } from './dynamo-keys.js';

/*
 * Request counts, in the runs table, one item per caller and window until the table's TTL takes it:
 *
 *   REQS#<callerKey>  W#<window start>   `count`, `expiresAt` (epoch seconds, a minute after the window)
 *
 * A take is one conditional ADD: under the limit it counts, at the limit it fails and writes nothing.
 */

const KEEP_AFTER_WINDOW_SECONDS = 60;

export class DynamoRequestCounter implements RequestCounter {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async take(callerKey: string, limit: number, window: RequestWindow): Promise<boolean> {
    const update = new Update()
      .add('count', 1)
      .set('expiresAt', Math.ceil(window.endsAtMs / 1000) + KEEP_AFTER_WINDOW_SECONDS);
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keys.requestWindow(callerKey, window.start),
          UpdateExpression: update.expression(),
          ConditionExpression: `attribute_not_exists(${update.name('count')}) OR ${update.name('count')} < ${update.value(limit)}`,
          ...update.attributes(),
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }
}
