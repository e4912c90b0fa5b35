import { createHash } from 'node:crypto';
import {
  DescribeTaskDefinitionCommand,
  type ECSClient,
  RegisterTaskDefinitionCommand,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import { needsOwnTaskDefinition, type Pod } from '../domain/tenancy.js';
import { POD_CONTAINER_NAME } from '../manifest.js';
import type { PodTaskDefinitions } from '../ports.js';

/** ECS takes a family of up to 255 letters, digits, `_` and `-`. */
const FAMILY_MAX_LENGTH = 255;
const FAMILY_CHARACTER = /[A-Za-z0-9_-]/;
const FAMILY_PREFIX = /^[A-Za-z0-9_-]{1,128}$/;
const HASH_LENGTH = 16;

/**
 * The family of a pod's own task definition: one per account and pod, so each save is a new revision
 * of it. The prefix, then the account and pod ids as far as they fit (any character ECS refuses as
 * `_`), then a hash of both ids, which keeps two pods apart whatever the cut or the replacement merged.
 */
export const podTaskFamily = (prefix: string, accountId: string, podId: string): string => {
  const hash = createHash('sha256').update(`${accountId}/${podId}`).digest('hex').slice(0, HASH_LENGTH);
  const readable = [...`${accountId}-${podId}`].map((c) => (FAMILY_CHARACTER.test(c) ? c : '_')).join('');
  return `${prefix}${readable.slice(0, FAMILY_MAX_LENGTH - prefix.length - HASH_LENGTH - 1)}-${hash}`;
};

/** `arn:<partition>:ecs:<region>:<account>:task-definition/<family>:<revision>` */
const arnParts = (arn: string) => {
  const [scheme, partition, service, region, account] = arn.split(':');
  if (scheme !== 'arn' || service !== 'ecs' || !partition || !region || !account) {
    throw new Error(`not a task definition ARN: ${arn}`);
  }
  return { partition, region, account };
};

export interface PodTaskDefinitionSettings {
  /** the stack's pod task definition: a pod's own copies it */
  baseTaskDefinitionArn: string;
  /** every pod's family begins with it, so IAM can scope RunTask to the pods' task definitions */
  familyPrefix: string;
}

/**
 * A pod's own task definition, registered with ECS: the stack's (roles, network mode, compatibilities,
 * size, platform, the pod container with its log configuration) with the pod's image in place of the
 * stack's, and its secrets as the container's `secrets`, which ECS resolves from Secrets Manager with
 * the execution role as the task starts. Their values never pass through this code, the launch's
 * overrides or the execution history.
 */
export class EcsPodTaskDefinitions implements PodTaskDefinitions {
  private base: Promise<TaskDefinition> | undefined;

  constructor(
    private readonly ecs: ECSClient,
    private readonly settings: PodTaskDefinitionSettings,
  ) {
    if (!FAMILY_PREFIX.test(settings.familyPrefix)) {
      throw new Error(
        `the pods' task family prefix must be 1 to 128 letters, digits, _ or -: ${settings.familyPrefix}`,
      );
    }
    arnParts(settings.baseTaskDefinitionArn);
  }

  async register(pod: Pod): Promise<string | undefined> {
    if (!needsOwnTaskDefinition(pod)) return undefined;
    const base = await this.baseDefinition();
    const container = base.containerDefinitions?.find((c) => c.name === POD_CONTAINER_NAME);
    if (!container) {
      throw new Error(
        `the task definition ${this.settings.baseTaskDefinitionArn} has no ${POD_CONTAINER_NAME} container`,
      );
    }
    const { partition, region, account } = arnParts(this.settings.baseTaskDefinitionArn);
    const secrets = Object.entries(pod.secrets)
      .sort(([a], [b]) => a.localeCompare(b))
      // A partial ARN (without the random suffix Secrets Manager adds) names the secret in this
      // account and region, and is what the execution role's grant on the secrets' prefix matches.
      .map(([name, secretName]) => ({
        name,
        valueFrom: `arn:${partition}:secretsmanager:${region}:${account}:secret:${secretName}`,
      }));
    const registered = await this.ecs.send(
      new RegisterTaskDefinitionCommand({
        family: podTaskFamily(this.settings.familyPrefix, pod.accountId, pod.podId),
        taskRoleArn: base.taskRoleArn,
        executionRoleArn: base.executionRoleArn,
        networkMode: base.networkMode,
        requiresCompatibilities: base.requiresCompatibilities,
        cpu: base.cpu,
        memory: base.memory,
        runtimePlatform: base.runtimePlatform,
        ephemeralStorage: base.ephemeralStorage,
        containerDefinitions: [{ ...container, image: pod.image ?? container.image, secrets }],
      }),
    );
    const arn = registered.taskDefinition?.taskDefinitionArn;
    if (!arn) throw new Error('RegisterTaskDefinition answered without a task definition ARN');
    return arn;
  }

  /** The stack's task definition changes only with a deployment, which restarts the function: read once. */
  private baseDefinition(): Promise<TaskDefinition> {
    this.base ??= this.ecs
      .send(new DescribeTaskDefinitionCommand({ taskDefinition: this.settings.baseTaskDefinitionArn }))
      .then(({ taskDefinition }) => {
        if (!taskDefinition) throw new Error(`no task definition ${this.settings.baseTaskDefinitionArn}`);
        return taskDefinition;
      })
      .catch((err: unknown) => {
        this.base = undefined;
        throw err;
      });
    return this.base;
  }
}
