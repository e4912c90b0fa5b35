import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  paginateQuery,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { Schedule, ScheduleKey, ScheduleSettings, TickRecord } from '../domain/schedule.js';
import type { ScheduleStore } from '../ports.js';
import {
  compact,
  Expression,
  isConditionFailed,
  keys,
  SK_PREFIX,
  Update,
  withoutKeys,
} from './dynamo-keys.js';

/**
 * Schedules in the runs table, in their account's partition beside its projects and pods:
 *   ACCT#<accountId>  SCHEDULE#<projectId>#<scheduleId>
 * so a project's schedules are one Query with begins_with on the sort key. A save writes only the
 * settings and a tick only what it did, each on its own condition (the revision read; the latest tick
 * read), so neither undoes the other, and two ticks acting at once are decided one after the other.
 */

const keyOf = (key: ScheduleKey) => keys.schedule(key.accountId, key.projectId, key.scheduleId);

/** What ticks record; a save leaves it as it is (a new schedule starts with none). */
const TICK_DEFAULTS: Pick<Schedule, 'skips' | 'skippedCount'> = { skips: [], skippedCount: 0 };

const SETTINGS: readonly (keyof ScheduleSettings)[] = [
  'accountId',
  'projectId',
  'scheduleId',
  'expression',
  'timezone',
  'podId',
  'itemId',
  'prompt',
  'mode',
  'enabled',
  'savedBy',
  'revision',
  'createdAt',
  'updatedAt',
];

const fromItem = (item: Record<string, unknown>): Schedule => ({
  ...TICK_DEFAULTS,
  ...withoutKeys<Schedule>(item),
});

export class DynamoScheduleStore implements ScheduleStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(key: ScheduleKey): Promise<Schedule | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: keyOf(key), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : undefined;
  }

  async list(accountId: string, projectId: string): Promise<Schedule[]> {
    const expr = new Expression();
    const schedules: Schedule[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.tableName,
        KeyConditionExpression: `${expr.name('pk')} = ${expr.value(keys.account(accountId).pk)} AND begins_with(${expr.name('sk')}, ${expr.value(SK_PREFIX.schedulesOf(projectId))})`,
        ConsistentRead: true,
        ...expr.attributes(),
      },
    );
    for await (const page of pages) for (const item of page.Items ?? []) schedules.push(fromItem(item));
    return schedules;
  }

  async save(
    settings: ScheduleSettings,
    expectedRevision: string | undefined,
  ): Promise<Schedule | undefined> {
    const update = new Update();
    for (const name of SETTINGS) update.set(name, compact(settings[name]));
    if (settings.ref === undefined) update.remove('ref');
    else update.set('ref', settings.ref);
    for (const [name, value] of Object.entries(TICK_DEFAULTS)) {
      update.setTo(name, `if_not_exists(${update.name(name)}, ${update.value(value)})`);
    }
    const condition =
      expectedRevision === undefined
        ? `attribute_not_exists(${update.name('pk')})`
        : `${update.name('revision')} = ${update.value(expectedRevision)}`;
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keyOf(settings),
          UpdateExpression: update.expression(),
          ConditionExpression: condition,
          ...update.attributes(),
          ReturnValues: 'ALL_NEW',
        }),
      );
      return fromItem(out.Attributes ?? {});
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
  }

  async delete(key: ScheduleKey): Promise<boolean> {
    const out = await this.db.send(
      new DeleteCommand({ TableName: this.tableName, Key: keyOf(key), ReturnValues: 'ALL_OLD' }),
    );
    return out.Attributes !== undefined;
  }

  async recordTick(key: ScheduleKey, record: TickRecord, lastFiredAt: string | undefined): Promise<boolean> {
    const update = new Update().set('lastFiredAt', record.scheduledTime);
    if (record.outcome === 'claimed') {
      update.set('lastRun', { runId: record.runId, scheduledTime: record.scheduledTime }).remove('lastError');
    } else if (record.outcome === 'skipped') {
      update.set('skips', compact(record.skips)).add('skippedCount', 1);
    } else {
      update
        .set('lastError', { scheduledTime: record.scheduledTime, message: record.message })
        .remove('lastRun');
    }
    const last = update.name('lastFiredAt');
    const unchanged =
      lastFiredAt === undefined ? `attribute_not_exists(${last})` : `${last} = ${update.value(lastFiredAt)}`;
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keyOf(key),
          UpdateExpression: update.expression(),
          ConditionExpression: `attribute_exists(${update.name('pk')}) AND ${unchanged}`,
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
