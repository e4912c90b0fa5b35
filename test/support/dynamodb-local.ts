import { randomUUID } from 'node:crypto';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll } from 'vitest';
import { type DynamoDbLocal, ensureTable, startDynamoDbLocal } from '../../infra/local/dynamodb.js';

export interface TestTable {
  endpoint: string;
  client: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  tableName: string;
}

export const localClient = (endpoint: string, config: DynamoDBClientConfig = {}): DynamoDBClient =>
  new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    ...config,
  });

/**
 * A DynamoDB Local for this test file with a fresh table, started in beforeAll and stopped in
 * afterAll. The returned object is filled in once beforeAll has run.
 */
export const useTestTable = (): TestTable => {
  const table = {} as TestTable;
  let server: DynamoDbLocal | undefined;
  beforeAll(async () => {
    server = await startDynamoDbLocal({ port: 0 });
    const client = localClient(server.endpoint);
    const tableName = `runs-${randomUUID().slice(0, 8)}`;
    await ensureTable(client, tableName);
    Object.assign(table, {
      endpoint: server.endpoint,
      client,
      doc: DynamoDBDocumentClient.from(client),
      tableName,
    });
  });
  afterAll(async () => {
    table.client?.destroy();
    await server?.stop();
  });
  return table;
};
