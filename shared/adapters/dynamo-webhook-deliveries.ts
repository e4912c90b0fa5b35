import { type DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { type Clock, systemClock, type WebhookDeliveries } from '../ports.js';
import { Expression, isConditionFailed, keys } from './dynamo-keys.js';

/*
 * Webhook deliveries acted on, in the runs table, one item each until the table's TTL takes it:
 *
 *   DELIVERY#<deliveryId>  DELIVERY   `expiresAt` (epoch seconds)
 *
 * An item past its `expiresAt` counts as gone even before DynamoDB deletes it (which may take days).
 */

export class DynamoWebhookDeliveries implements WebhookDeliveries {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: Clock = systemClock,
  ) {}

  async firstTime(deliveryId: string, keepSeconds: number): Promise<boolean> {
    const now = Math.floor(this.clock.now().getTime() / 1000);
    const expr = new Expression();
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...keys.delivery(deliveryId), expiresAt: now + keepSeconds },
          ConditionExpression: `attribute_not_exists(${expr.name('pk')}) OR ${expr.name('expiresAt')} < ${expr.value(now)}`,
          ...expr.attributes(),
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }
}
