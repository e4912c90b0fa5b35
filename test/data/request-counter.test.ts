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
  it('answers each of concurrent requests its own count in the window, and counts afresh in the next', async () => {
    const account = caller();
    const window = requestWindow(Date.parse('2026-12-06T10:00:03Z'), 10);
    const counts = await Promise.all(Array.from({ length: 40 }, () => counter().count(account, window)));
    expect(counts.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));

    const stored = await table.doc.send(
      new GetCommand({ TableName: table.tableName, Key: keys.requestWindow(account, window.start) }),
    );
    // the item goes by TTL a minute after its window
    expect(stored.Item).toMatchObject({ count: 40, expiresAt: window.endsAtMs / 1000 + 60 });

    expect(await counter().count(account, requestWindow(window.endsAtMs, 10))).toBe(1);
    expect(await counter().count(caller(), window)).toBe(1);
  });
});
