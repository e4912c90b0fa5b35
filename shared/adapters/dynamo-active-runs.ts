import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ActiveRun, ActiveRuns } from '../ports.js';
import { conditionFailedItem, isConditionFailed, keys, Update } from './dynamo-keys.js';

/*
 * An account's active runs, in the runs table:
 *
 *   ACCT#<acct>  ACTIVE  `count` (slots held), `run:<runId>` ({since, cpu, memoryMiB}) for each run holding
 *                        a slot, `wait:<runId>` (when it first found none free) for each run waiting for one.
 *
 * One item, so a take is one conditional update on the count, and one read prices what every active run
 * has accrued. It is written twice a run (take, release), never per event batch.
 */

const COUNT = 'count';
const SLOT = 'run:';
const WAIT = 'wait:';

type Item = Record<string, unknown>;

/** The run waiting longest (by when it first waited, then by id), if any. */
const longestWaiting = (item: Item | undefined): string | undefined =>
  Object.entries(item ?? {})
    .filter(([name]) => name.startsWith(WAIT))
    .map(([name, since]) => ({ runId: name.slice(WAIT.length), since: String(since) }))
    .sort((a, b) => a.since.localeCompare(b.since) || a.runId.localeCompare(b.runId))[0]?.runId;

export class DynamoActiveRuns implements ActiveRuns {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async take(accountId: string, run: ActiveRun, limit: number): Promise<boolean> {
    if (await this.tryTake(accountId, run, limit)) return true;
    // Waiting before trying once more: a slot released between the two is either taken now, or its
    // release saw this run waiting and woke it.
    const wait = new Update();
    wait.setTo(
      `${WAIT}${run.runId}`,
      `if_not_exists(${wait.name(`${WAIT}${run.runId}`)}, ${wait.value(run.since)})`,
    );
    await this.update(accountId, wait);
    return this.tryTake(accountId, run, limit);
  }

  async release(accountId: string, runId: string): Promise<string | undefined> {
    const update = new Update().remove(`${SLOT}${runId}`);
    update.setTo(COUNT, `${update.name(COUNT)} - ${update.value(1)}`);
    return this.changeThenLongestWaiting(
      accountId,
      update,
      `attribute_exists(${update.name(`${SLOT}${runId}`)})`,
    );
  }

  async forget(accountId: string, runId: string): Promise<string | undefined> {
    const update = new Update().remove(`${WAIT}${runId}`);
    return this.changeThenLongestWaiting(
      accountId,
      update,
      `attribute_exists(${update.name(`${WAIT}${runId}`)})`,
    );
  }

  async active(accountId: string): Promise<ActiveRun[]> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keys.activeRuns(accountId), ConsistentRead: true }),
    );
    return Object.entries(out.Item ?? {})
      .filter(([name]) => name.startsWith(SLOT))
      .map(([name, slot]) => ({ runId: name.slice(SLOT.length), ...(slot as Omit<ActiveRun, 'runId'>) }));
  }

  private async tryTake(accountId: string, run: ActiveRun, limit: number): Promise<boolean> {
    const slot = `${SLOT}${run.runId}`;
    const update = new Update()
      .set(slot, { since: run.since, cpu: run.cpu, memoryMiB: run.memoryMiB })
      .remove(`${WAIT}${run.runId}`);
    const count = update.name(COUNT);
    update.setTo(COUNT, `if_not_exists(${count}, ${update.value(0)}) + ${update.value(1)}`);
    const underLimit =
      limit > 0 ? ` AND (attribute_not_exists(${count}) OR ${count} < ${update.value(limit)})` : '';
    try {
      await this.update(accountId, update, `attribute_not_exists(${update.name(slot)})${underLimit}`);
      return true;
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      // held already (a retried take), or every slot is taken
      return conditionFailedItem(err)?.[slot] !== undefined;
    }
  }

  private async changeThenLongestWaiting(
    accountId: string,
    update: Update,
    condition: string,
  ): Promise<string | undefined> {
    try {
      return longestWaiting(await this.update(accountId, update, condition));
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  private async update(accountId: string, update: Update, condition?: string): Promise<Item | undefined> {
    const out = await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keys.activeRuns(accountId),
        UpdateExpression: update.expression(),
        ...(condition ? { ConditionExpression: condition } : {}),
        ...update.attributes(),
        ReturnValues: 'ALL_NEW',
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      }),
    );
    return out.Attributes;
  }
}
