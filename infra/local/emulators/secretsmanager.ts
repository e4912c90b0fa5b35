import { randomBytes, randomUUID } from 'node:crypto';
import { AwsError, type OperationHandler, startJsonProtocolServer } from './json-protocol.js';
import { loadState, saveState } from './persistence.js';

/**
 * The local cloud's Secrets Manager, over the JSON protocol: the secrets a pod's task definition
 * names, which the local ECS resolves as a task starts, as ECS does with the execution role.
 * CreateSecret, PutSecretValue, GetSecretValue, DescribeSecret and DeleteSecret, with version stages
 * (AWSCURRENT, AWSPREVIOUS) and the deletion window. A secret is found by its name, its ARN or its
 * partial ARN (without the random suffix), as the real service finds it.
 */

export interface SecretsManagerEmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** a JSON file: state is loaded from it on start and saved to it on close (values included: local only) */
  persistPath?: string;
}

export interface SecretsManagerEmulator {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface SecretVersion {
  versionId: string;
  secretString?: string;
  /** base64, as the JSON protocol carries a blob */
  secretBinary?: string;
  createdDate: number;
  stages: string[];
}

interface Secret {
  name: string;
  arn: string;
  description?: string;
  createdDate: number;
  lastChangedDate: number;
  /** epoch ms once the secret is scheduled for deletion */
  deletionDate?: number;
  versions: SecretVersion[];
}

interface PersistedState {
  secrets: Secret[];
}

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
const NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const MAX_VALUE_BYTES = 65_536;

const invalidParameter = (message: string) => new AwsError('InvalidParameterException', message);
const notFound = (message = "Secrets Manager can't find the specified secret.") =>
  new AwsError('ResourceNotFoundException', message);
const markedForDeletion = () =>
  new AwsError(
    'InvalidRequestException',
    "You can't perform this operation on the secret because it was marked for deletion.",
  );

const optionalString = (input: Record<string, unknown>, name: string): string | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidParameter(`${name} must be a string.`);
  return value;
};

const requiredString = (input: Record<string, unknown>, name: string): string => {
  const value = optionalString(input, name);
  if (value === undefined || value === '') throw invalidParameter(`You must provide a value for ${name}.`);
  return value;
};

const epochSeconds = (ms: number) => ms / 1000;

/** The value a CreateSecret or PutSecretValue carries, if any: a string or a blob, never both. */
const secretValueIn = (
  input: Record<string, unknown>,
): Pick<SecretVersion, 'secretString' | 'secretBinary'> => {
  const secretString = optionalString(input, 'SecretString');
  const secretBinary = optionalString(input, 'SecretBinary');
  if (secretString !== undefined && secretBinary !== undefined) {
    throw invalidParameter(
      "You can't specify both a binary secret value and a string secret value in the same secret.",
    );
  }
  const size = Buffer.byteLength(secretString ?? '') + Buffer.from(secretBinary ?? '', 'base64').length;
  if (size > MAX_VALUE_BYTES) throw invalidParameter('The secret value is larger than 65536 bytes.');
  if (secretString !== undefined) return { secretString };
  if (secretBinary !== undefined) return { secretBinary };
  return {};
};

class SecretsManagerService {
  /** by name */
  readonly secrets = new Map<string, Secret>();

  constructor(
    private readonly region: string,
    private readonly accountId: string,
  ) {}

  private get arnPrefix() {
    return `arn:aws:secretsmanager:${this.region}:${this.accountId}:secret:`;
  }

  /** By name, full ARN, or partial ARN (the ARN without the `-XXXXXX` suffix Secrets Manager adds). */
  private find(secretId: string): Secret | undefined {
    if (!secretId.startsWith('arn:')) return this.secrets.get(secretId);
    if (!secretId.startsWith(this.arnPrefix)) return undefined;
    return (
      [...this.secrets.values()].find((s) => s.arn === secretId) ??
      this.secrets.get(secretId.slice(this.arnPrefix.length))
    );
  }

  private existing(input: Record<string, unknown>): Secret {
    const secret = this.find(requiredString(input, 'SecretId'));
    if (!secret) throw notFound();
    return secret;
  }

  /** A new version with the value, taking AWSCURRENT (its holder keeps AWSPREVIOUS). */
  private addVersion(
    secret: Secret,
    value: Pick<SecretVersion, 'secretString' | 'secretBinary'>,
    token?: string,
  ) {
    const versionId = token ?? randomUUID();
    const same = secret.versions.find((v) => v.versionId === versionId);
    if (same) {
      // a retried request with the same token is the same version; another value under it is an error
      if (same.secretString === value.secretString && same.secretBinary === value.secretBinary) return same;
      throw new AwsError(
        'ResourceExistsException',
        `A version with ID ${versionId} already exists for this secret.`,
      );
    }
    const now = Date.now();
    for (const version of secret.versions) {
      version.stages = version.stages.filter((stage) => stage !== PREVIOUS);
      if (version.stages.includes(CURRENT)) {
        version.stages = [...version.stages.filter((stage) => stage !== CURRENT), PREVIOUS];
      }
    }
    // versions without a stage are gone, as Secrets Manager drops them
    secret.versions = secret.versions.filter((v) => v.stages.length > 0);
    const version: SecretVersion = { versionId, ...value, createdDate: now, stages: [CURRENT] };
    secret.versions.push(version);
    secret.lastChangedDate = now;
    return version;
  }

  readonly operations: Record<string, OperationHandler> = {
    CreateSecret: (input) => {
      const name = requiredString(input, 'Name');
      if (!NAME.test(name)) {
        throw invalidParameter(
          'Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!',
        );
      }
      const existing = this.secrets.get(name);
      if (existing?.deletionDate !== undefined) {
        throw new AwsError(
          'InvalidRequestException',
          "You can't create this secret because a secret with this name is already scheduled for deletion.",
        );
      }
      if (existing)
        throw new AwsError(
          'ResourceExistsException',
          `The operation failed because the secret ${name} already exists.`,
        );
      const value = secretValueIn(input);
      const now = Date.now();
      const secret: Secret = {
        name,
        arn: `${this.arnPrefix}${name}-${randomBytes(4).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6)}`,
        description: optionalString(input, 'Description'),
        createdDate: now,
        lastChangedDate: now,
        versions: [],
      };
      const hasValue = value.secretString !== undefined || value.secretBinary !== undefined;
      const version = hasValue
        ? this.addVersion(secret, value, optionalString(input, 'ClientRequestToken'))
        : undefined;
      this.secrets.set(name, secret);
      return { ARN: secret.arn, Name: name, ...(version ? { VersionId: version.versionId } : {}) };
    },

    PutSecretValue: (input) => {
      const secret = this.existing(input);
      if (secret.deletionDate !== undefined) throw markedForDeletion();
      const value = secretValueIn(input);
      if (value.secretString === undefined && value.secretBinary === undefined) {
        throw invalidParameter('You must provide either SecretString or SecretBinary.');
      }
      const version = this.addVersion(secret, value, optionalString(input, 'ClientRequestToken'));
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.versionId,
        VersionStages: version.stages,
      };
    },

    GetSecretValue: (input) => {
      const secret = this.existing(input);
      if (secret.deletionDate !== undefined) throw markedForDeletion();
      const versionId = optionalString(input, 'VersionId');
      const stage = optionalString(input, 'VersionStage') ?? (versionId === undefined ? CURRENT : undefined);
      const version = secret.versions.find(
        (v) =>
          (versionId === undefined || v.versionId === versionId) &&
          (stage === undefined || v.stages.includes(stage)),
      );
      if (!version) {
        throw notFound(
          versionId === undefined
            ? `Secrets Manager can't find the specified secret value for staging label: ${stage}`
            : `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`,
        );
      }
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.versionId,
        ...(version.secretString === undefined ? {} : { SecretString: version.secretString }),
        ...(version.secretBinary === undefined ? {} : { SecretBinary: version.secretBinary }),
        VersionStages: version.stages,
        CreatedDate: epochSeconds(version.createdDate),
      };
    },

    DescribeSecret: (input) => {
      const secret = this.existing(input);
      return {
        ARN: secret.arn,
        Name: secret.name,
        ...(secret.description === undefined ? {} : { Description: secret.description }),
        CreatedDate: epochSeconds(secret.createdDate),
        LastChangedDate: epochSeconds(secret.lastChangedDate),
        ...(secret.deletionDate === undefined ? {} : { DeletedDate: epochSeconds(secret.deletionDate) }),
        VersionIdsToStages: Object.fromEntries(secret.versions.map((v) => [v.versionId, v.stages])),
      };
    },

    DeleteSecret: (input) => {
      const secret = this.existing(input);
      const force = input.ForceDeleteWithoutRecovery === true;
      const window = input.RecoveryWindowInDays;
      if (force && window !== undefined && window !== null) {
        throw invalidParameter(
          "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        );
      }
      const days = window ?? 30;
      if (typeof days !== 'number' || !Number.isInteger(days) || days < 7 || days > 30) {
        throw invalidParameter('The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).');
      }
      const now = Date.now();
      if (force) this.secrets.delete(secret.name);
      else secret.deletionDate ??= now + days * 86_400_000;
      return {
        ARN: secret.arn,
        Name: secret.name,
        DeletionDate: epochSeconds(force ? now : (secret.deletionDate ?? now)),
      };
    },
  };

  snapshot(): PersistedState {
    return { secrets: [...this.secrets.values()] };
  }

  restore(state: PersistedState) {
    for (const secret of state.secrets) this.secrets.set(secret.name, secret);
  }
}

export async function startSecretsManagerEmulator(
  opts: SecretsManagerEmulatorOptions = {},
): Promise<SecretsManagerEmulator> {
  const service = new SecretsManagerService(opts.region ?? 'us-east-1', opts.accountId ?? '000000000000');
  const saved = opts.persistPath ? await loadState<PersistedState>(opts.persistPath) : undefined;
  if (saved) service.restore(saved);
  const server = await startJsonProtocolServer(
    {
      targetPrefix: 'secretsmanager',
      errorNamespace: 'com.amazonaws.secretsmanager',
      operations: service.operations,
    },
    opts.port ?? 0,
    opts.host ?? '127.0.0.1',
  );
  return {
    url: server.url,
    port: server.port,
    close: async () => {
      if (opts.persistPath) await saveState(opts.persistPath, service.snapshot());
      await server.close();
    },
  };
}
