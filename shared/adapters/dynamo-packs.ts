import { type DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { Expression, type Key } from './dynamo-keys.js';

/**
 * Items that pack consecutive seqs of a run (its step packs, its feed), keyed by their first seq:
 * the pack holding a seq is the last one starting at or before it.
 */
export class RunPacks {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    /** the key of the pack starting at `firstSeq` */
    private readonly keyOf: (firstSeq: number) => Key,
  ) {}

  /** The pack that holds `seq` if any does: the last one starting at or before it. */
  async holding(seq: number): Promise<Record<string, unknown> | undefined> {
    const expr = new Expression();
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: `${expr.name('pk')} = ${expr.value(this.keyOf(0).pk)} AND ${expr.name('sk')} BETWEEN ${expr.value(this.keyOf(0).sk)} AND ${expr.value(this.keyOf(seq).sk)}`,
        ScanIndexForward: false,
        Limit: 1,
        ConsistentRead: true,
        ...expr.attributes(),
      }),
    );
    return out.Items?.[0];
  }

  /**
   * The packs that may hold seqs from `from` through `through`, in order: the one holding `from`,
   * then those starting after it, read a few at a time for as long as the caller takes them.
   */
  async *from(from: number, through: number): AsyncGenerator<Record<string, unknown>> {
    const first = await this.holding(from);
    if (first) yield first;
    if (through < from + 1) return;
    const range = new Expression();
    const keyCondition = `${range.name('pk')} = ${range.value(this.keyOf(0).pk)} AND ${range.name('sk')} BETWEEN ${range.value(this.keyOf(from + 1).sk)} AND ${range.value(this.keyOf(through).sk)}`;
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: keyCondition,
          ConsistentRead: true,
          // packs hold many seqs each: a few at a time is plenty
          Limit: 10,
          ExclusiveStartKey: startKey,
          ...range.attributes(),
        }),
      );
      for (const item of page.Items ?? []) yield item;
      startKey = page.LastEvaluatedKey;
    } while (startKey);
  }
}
