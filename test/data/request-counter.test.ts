import { randomUUID } from 'node:crypto';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { keys } from '../../shared/adapters/dynamo-keys.js';
import { DynamoRequestCounter } from '../../shared/adapters/dynamo-request-counter.js';
import { requestWindow } from '../../shared/domain/throttle.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
const counter = () => new DynamoRequestCounter(table.doc, table.tableName);
const caller = () => `acct-${randomUUID().slice(0, 8)}`;

describe('DynamoRequestCounter', () => {
  it('admits exactly the limit of concurrent requests in a window, and counts afresh in the next', async () => {
    const account = caller();
    const window = requestWindow(Date.parse('2026-12-06T10:00:03Z'), 10);
    const taken = await Promise.all(Array.from({ length: 40 }, () => counter().take(account, 25, window)));
    expect(taken.filter(Boolean)).toHaveLength(25);

    const stored = await table.doc.send(
      new GetCommand({ TableName: table.tableName, Key: keys.requestWindow(account, window.start) }),
    );
    // the refused requests wrote nothing; the item goes by TTL a minute after its window
    expect(stored.Item).toMatchObject({ count: 25, expiresAt: window.endsAtMs / 1000 + 60 });

    const next = requestWindow(window.endsAtMs, 10);
    expect(await counter().take(account, 25, next)).toBe(true);
    expect(await counter().take(caller(), 25, window)).toBe(true);
  });
});
