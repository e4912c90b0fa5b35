import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../infra/local/emulators/secretsmanager.js';

const region = 'eu-west-1';
const account = '123456789012';
const clientFor = (emulator: SecretsManagerEmulator) =>
  new SecretsManagerClient({
    endpoint: emulator.url,
    region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });

describe('Secrets Manager emulator', () => {
  let emulator: SecretsManagerEmulator;
  let sm: SecretsManagerClient;

  beforeAll(async () => {
    emulator = await startSecretsManagerEmulator({ region, accountId: account });
    sm = clientFor(emulator);
  });
  afterAll(async () => {
    sm.destroy();
    await emulator.close();
  });

  it('creates a secret and reads its value back by name, ARN and partial ARN', async () => {
    const name = 'execution-runs/pods/acct-1/npm';
    const created = await sm.send(
      new CreateSecretCommand({ Name: name, SecretString: 's3cret', Description: 'npm' }),
    );

    expect(created.ARN).toMatch(
      new RegExp(`^arn:aws:secretsmanager:${region}:${account}:secret:${name}-[A-Za-z0-9]{6}$`),
    );
    const partial = `arn:aws:secretsmanager:${region}:${account}:secret:${name}`;
    for (const SecretId of [name, created.ARN, partial]) {
      const value = await sm.send(new GetSecretValueCommand({ SecretId }));
      expect(value).toMatchObject({
        Name: name,
        ARN: created.ARN,
        SecretString: 's3cret',
        VersionStages: ['AWSCURRENT'],
      });
      expect(value.VersionId).toBe(created.VersionId);
    }
    const described = await sm.send(new DescribeSecretCommand({ SecretId: name }));
    expect(described).toMatchObject({
      Name: name,
      Description: 'npm',
      VersionIdsToStages: { [created.VersionId ?? '']: ['AWSCURRENT'] },
    });
    expect(described.CreatedDate).toBeInstanceOf(Date);
  });

  it('puts a new current value, keeping the last one as AWSPREVIOUS', async () => {
    const name = 'execution-runs/pods/acct-1/rotated';
    const first = await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'one' }));
    const second = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'two' }));

    expect(second.VersionStages).toEqual(['AWSCURRENT']);
    expect((await sm.send(new GetSecretValueCommand({ SecretId: name }))).SecretString).toBe('two');
    const previous = await sm.send(
      new GetSecretValueCommand({ SecretId: name, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(previous).toMatchObject({ SecretString: 'one', VersionId: first.VersionId });
  });

  it('answers what the real service answers for a secret that does not exist, exists already, or has no value', async () => {
    await expect(
      sm.send(new GetSecretValueCommand({ SecretId: 'execution-runs/pods/acct-1/none' })),
    ).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
    await sm.send(new CreateSecretCommand({ Name: 'execution-runs/pods/acct-1/twice', SecretString: 'x' }));
    await expect(
      sm.send(new CreateSecretCommand({ Name: 'execution-runs/pods/acct-1/twice', SecretString: 'y' })),
    ).rejects.toMatchObject({ name: 'ResourceExistsException' });
    await sm.send(new CreateSecretCommand({ Name: 'execution-runs/pods/acct-1/empty' }));
    await expect(
      sm.send(new GetSecretValueCommand({ SecretId: 'execution-runs/pods/acct-1/empty' })),
    ).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });

  it('refuses a deleted secret’s value during its recovery window, and forgets one deleted without recovery', async () => {
    const kept = 'execution-runs/pods/acct-1/deleted';
    const forced = 'execution-runs/pods/acct-1/forced';
    await sm.send(new CreateSecretCommand({ Name: kept, SecretString: 'x' }));
    await sm.send(new CreateSecretCommand({ Name: forced, SecretString: 'x' }));

    const deleted = await sm.send(new DeleteSecretCommand({ SecretId: kept, RecoveryWindowInDays: 7 }));
    await sm.send(new DeleteSecretCommand({ SecretId: forced, ForceDeleteWithoutRecovery: true }));

    expect(deleted.DeletionDate?.getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    await expect(sm.send(new GetSecretValueCommand({ SecretId: kept }))).rejects.toMatchObject({
      name: 'InvalidRequestException',
    });
    expect((await sm.send(new DescribeSecretCommand({ SecretId: kept }))).DeletedDate).toBeInstanceOf(Date);
    await expect(sm.send(new GetSecretValueCommand({ SecretId: forced }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
    await expect(sm.send(new CreateSecretCommand({ Name: kept, SecretString: 'y' }))).rejects.toMatchObject({
      name: 'InvalidRequestException',
    });
  });

  it('keeps its secrets across a restart with a persist path', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'secretsmanager-'));
    const persistPath = path.join(dir, 'secretsmanager.json');
    try {
      const first = await startSecretsManagerEmulator({ region, accountId: account, persistPath });
      const client = clientFor(first);
      const created = await client.send(new CreateSecretCommand({ Name: 'kept', SecretString: 'v' }));
      client.destroy();
      await first.close();

      const second = await startSecretsManagerEmulator({ region, accountId: account, persistPath });
      const again = clientFor(second);
      expect(await again.send(new GetSecretValueCommand({ SecretId: created.ARN }))).toMatchObject({
        Name: 'kept',
        SecretString: 'v',
      });
      again.destroy();
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
