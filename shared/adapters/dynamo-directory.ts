import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import {
  type Account,
  type AccountLimits,
  type GitHubLink,
  type Pod,
  type Project,
  podFromStorage,
} from '../domain/tenancy.js';
import { type Clock, type DirectoryRepository, systemClock } from '../ports.js';
import {
  cancellationReasons,
  compact,
  Expression,
  isConditionFailed,
  type Key,
  keys,
  SK_PREFIX,
  Update,
  withoutKeys,
} from './dynamo-keys.js';

/**
 * Accounts, projects and pods in the runs table, one partition per account:
 *   ACCT#<accountId>  ACCOUNT              the account
 *   ACCT#<accountId>  PROJECT#<projectId>  a project
 *   ACCT#<accountId>  POD#<podId>          a pod
 *   GHINST#<id>       LINK                 the account that linked a GitHub App installation
 * so each list is one Query with begins_with on the sort key, and a webhook finds its account.
 */
export class DynamoDirectory implements DirectoryRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: Clock = systemClock,
  ) {}

  async getAccount(accountId: string): Promise<Account | undefined> {
    return this.read<Account>(keys.account(accountId));
  }

  async createAccount(account: Account): Promise<Account> {
    const key = keys.account(account.accountId);
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...compact(account), ...key },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return account;
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
    // Another request made it first, perhaps with caps set since: that one stands.
    const stored = await this.read<Account>(key);
    if (!stored) throw new Error(`account ${account.accountId} exists and cannot be read`);
    return stored;
  }

  async setAccountLimits(accountId: string, limits: AccountLimits): Promise<Account> {
    return this.updateAccount(accountId, new Update().set('limits', compact(limits)));
  }

  /**
   * The link and the installation's claim in one transaction. The claim is taken from another account
   * only once that account no longer links the installation, so a webhook has one account to act in.
   */
  async setAccountGitHub(accountId: string, github: GitHubLink): Promise<Account> {
    const { installationId } = github;
    const claimKey = keys.installation(installationId);
    for (let attempt = 1; ; attempt++) {
      const holder = await this.read<{ accountId: string }>(claimKey);
      if (holder && holder.accountId !== accountId) {
        const other = await this.getAccount(holder.accountId);
        if (other?.github?.installationId === installationId) {
          throw new ConflictError(`GitHub App installation ${installationId} is linked to another account`, {
            installationId,
          });
        }
      }
      const claim = new Expression();
      const link = new Update().set('github', github).set('updatedAt', this.clock.now().toISOString());
      try {
        await this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Update: {
                  TableName: this.tableName,
                  Key: keys.account(accountId),
                  UpdateExpression: link.expression(),
                  ConditionExpression: `attribute_exists(${link.name('pk')})`,
                  ...link.attributes(),
                },
              },
              {
                Put: {
                  TableName: this.tableName,
                  Item: { ...claimKey, accountId, installationId },
                  ConditionExpression: holder
                    ? `${claim.name('accountId')} = ${claim.value(holder.accountId)}`
                    : `attribute_not_exists(${claim.name('pk')})`,
                  ...claim.attributes(),
                },
              },
            ],
          }),
        );
        const account = await this.getAccount(accountId);
        if (!account) throw new NotFoundError('account', accountId);
        return account;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        if (reasons[0]?.Code === 'ConditionalCheckFailed') throw new NotFoundError('account', accountId);
        // the claim changed hands since it was read (or the items were busy): decide again
        if (attempt >= 3) {
          throw new ServiceUnavailableError(`installation ${installationId} could not be linked; try again`);
        }
      }
    }
  }

  async accountOfInstallation(installationId: number): Promise<Account | undefined> {
    const claim = await this.read<{ accountId: string }>(keys.installation(installationId));
    const account = claim && (await this.getAccount(claim.accountId));
    return account?.github?.installationId === installationId ? account : undefined;
  }

  /** Changes an existing account, never creating a half one. */
  private async updateAccount(accountId: string, update: Update): Promise<Account> {
    update.set('updatedAt', this.clock.now().toISOString());
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keys.account(accountId),
          UpdateExpression: update.expression(),
          ConditionExpression: `attribute_exists(${update.name('pk')})`,
          ...update.attributes(),
          ReturnValues: 'ALL_NEW',
        }),
      );
      return withoutKeys<Account>(out.Attributes ?? {});
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('account', accountId);
      throw err;
    }
  }

  async getProject(accountId: string, projectId: string): Promise<Project | undefined> {
    return this.read<Project>(keys.project(accountId, projectId));
  }

  async putProject(project: Project): Promise<void> {
    await this.write(keys.project(project.accountId, project.projectId), project);
  }

  async listProjects(accountId: string): Promise<Project[]> {
    return this.listOf<Project>(keys.account(accountId).pk, SK_PREFIX.project);
  }

  async getPod(accountId: string, podId: string): Promise<Pod | undefined> {
    const stored = await this.read<Pod>(keys.pod(accountId, podId));
    return stored && podFromStorage(stored);
  }

  async putPod(pod: Pod): Promise<void> {
    await this.write(keys.pod(pod.accountId, pod.podId), pod);
  }

  async listPods(accountId: string): Promise<Pod[]> {
    return (await this.listOf<Pod>(keys.account(accountId).pk, SK_PREFIX.pod)).map(podFromStorage);
  }

  private async read<T>(key: Key): Promise<T | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return out.Item ? withoutKeys<T>(out.Item) : undefined;
  }

  private async write(key: Key, record: Project | Pod): Promise<void> {
    await this.db.send(new PutCommand({ TableName: this.tableName, Item: { ...compact(record), ...key } }));
  }

  private async listOf<T>(pk: string, skPrefix: string): Promise<T[]> {
    const expr = new Expression();
    const out: T[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.tableName,
        KeyConditionExpression: `${expr.name('pk')} = ${expr.value(pk)} AND begins_with(${expr.name('sk')}, ${expr.value(skPrefix)})`,
        ...expr.attributes(),
      },
    );
    for await (const page of pages) for (const item of page.Items ?? []) out.push(withoutKeys<T>(item));
    return out;
  }
}
