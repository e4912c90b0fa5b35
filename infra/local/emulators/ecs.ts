import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { EventBridgeEvent } from 'aws-lambda';
import { z } from 'zod';
import { POD_CONTAINER_NAME } from '../../../shared/manifest.js';
import { LogShipper, pipeLines } from '../log-shipper.js';
import { AwsError, sendJson, startJsonProtocolServer } from './json-protocol.js';
import { loadState, saveState } from './persistence.js';
import { type PodHostCommand, podHost } from './pod-host.js';

/**
 * ECS for the local cloud: task definitions are registered and described, with revisions per family;
 * RunTask runs a registered one, starting the pod as a child process (its own process group, so the
 * pod and everything it spawns stop together, like a container), or as a pod in a shared host process
 * (pod-host.ts), with the environment of its container definition and of the container overrides,
 * and the values of its `secrets`, read from Secrets Manager as the task starts (as the ECS agent
 * reads them with the execution role): a secret that cannot be read stops the task before it starts.
 * The container's image is recorded but not pulled: every pod runs the pod command (there is no
 * Docker here). Its output goes to CloudWatch Logs the way the awslogs driver ships it, and a stopped
 * task raises the "ECS Task State Change" event EventBridge would deliver.
 */

export interface EcsTaskStateChangeDetail {
  clusterArn: string;
  taskArn: string;
  taskDefinitionArn: string;
  launchType: string;
  startedBy?: string;
  group?: string;
  cpu: string;
  memory: string;
  lastStatus: TaskStatus;
  desiredStatus: DesiredStatus;
  stopCode?: StopCode;
  stoppedReason?: string;
  createdAt: string;
  startedAt?: string;
  stoppingAt?: string;
  stoppedAt?: string;
  updatedAt: string;
  version: number;
  containers: {
    name: string;
    containerArn: string;
    taskArn: string;
    lastStatus: string;
    image?: string;
    exitCode?: number;
    reason?: string;
  }[];
  overrides: unknown;
}

export type EcsTaskStateChangeEvent = EventBridgeEvent<'ECS Task State Change', EcsTaskStateChangeDetail>;

export type PodCommand = PodHostCommand;

export interface EcsEmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** how a pod is started, e.g. `{ command: process.execPath, args: ['.local/pod.mjs'] }` */
  podCommand: PodCommand;
  /**
   * Run pods in one shared host process instead (started with this command, which serves pods with
   * `servePods`): a pod then starts in under a millisecond instead of a Node process's ~100 ms.
   */
  podHost?: PodHostCommand;
  /** where pod output goes, as the awslogs driver would send it */
  logs: { client: CloudWatchLogsClient; logGroupName: string; streamPrefix: string };
  onTaskStateChange?: (event: EcsTaskStateChangeEvent) => void;
  /** Fargate's per-account launch rate: a token bucket (burst 100, 20/s); `false` disables it */
  launchLimits?: { burst: number; perSecond: number } | false;
  /** StopTask sends SIGTERM, then SIGKILL after this long (ECS's stopTimeout) */
  stopTimeoutMs?: number;
  /** where the tasks' secrets are read as they start; without it a task with secrets fails to start */
  secrets?: { client: SecretsManagerClient };
  /** a JSON file: the registered task definitions are loaded from it on start and saved to it on close */
  persistPath?: string;
}

export interface RunningTask {
  taskArn: string;
  startedBy?: string;
  pid?: number;
}

export interface EcsEmulator {
  url: string;
  port: number;
  /** tasks not STOPPED yet */
  runningTasks(): RunningTask[];
  /** kills every pod still running, then stops the server */
  close(): Promise<void>;
}

type TaskStatus = 'PROVISIONING' | 'RUNNING' | 'DEPROVISIONING' | 'STOPPED';
type DesiredStatus = 'RUNNING' | 'STOPPED';
type StopCode = 'UserInitiated' | 'EssentialContainerExited' | 'TaskFailedToStart';

interface Task {
  taskArn: string;
  taskId: string;
  clusterArn: string;
  clusterName: string;
  taskDefinitionArn: string;
  launchType: string;
  startedBy?: string;
  group?: string;
  cpu: string;
  memory: string;
  overrides: unknown;
  container: {
    name: string;
    containerArn: string;
    /** recorded as ECS shows it; the local pod runs the pod command whatever the image */
    image?: string;
    lastStatus: 'PENDING' | 'RUNNING' | 'STOPPED';
    exitCode?: number;
    reason?: string;
  };
  lastStatus: TaskStatus;
  desiredStatus: DesiredStatus;
  version: number;
  createdAt: Date;
  startedAt?: Date;
  stoppingAt?: Date;
  stoppedAt?: Date;
  stopCode?: StopCode;
  stoppedReason?: string;
  /** what runs the task's container */
  pod?: Container;
  shipper?: LogShipper;
  killTimer?: NodeJS.Timeout;
  /** settles once the task is STOPPED and its event emitted */
  stopped: Promise<void>;
}

/**
 * A running container: a process of its own or a hosted pod. Its events are a child process's:
 * 'spawn', 'spawn-error' (it never started), 'exit' (code, signal), and 'close' once its output is read.
 */
interface Container {
  readonly events: EventEmitter;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly pid: number | undefined;
  signal(signal: NodeJS.Signals): void;
}

/** How long ECS keeps describing a stopped task. */
const STOPPED_TASK_RETENTION_MS = 60 * 60 * 1000;

const keyValueSchema = z.object({ name: z.string(), value: z.string() });
const containerDefinitionSchema = z
  .object({
    name: z.string({ error: 'Container.name should not be null or empty.' }).min(1),
    image: z.string({ error: 'Container.image should not be null or empty.' }).min(1),
    environment: z.array(keyValueSchema).optional(),
    secrets: z.array(z.object({ name: z.string().min(1), valueFrom: z.string().min(1) })).optional(),
  })
  .loose();
const registerTaskDefinitionInput = z
  .object({
    family: z
      .string({ error: 'Family should not be null or empty.' })
      .regex(/^[A-Za-z0-9_-]{1,255}$/, 'Family contains invalid characters or is longer than 255.'),
    containerDefinitions: z
      .array(containerDefinitionSchema)
      .min(1, 'TaskDefinition must contain at least one container definition.'),
    cpu: z.string().optional(),
    memory: z.string().optional(),
    requiresCompatibilities: z.array(z.string()).optional(),
  })
  .loose();
const describeTaskDefinitionInput = z.object({ taskDefinition: z.string().min(1) });
const runTaskInput = z.object({
  cluster: z.string().optional(),
  taskDefinition: z
    .string({ error: 'TaskDefinition can not be blank.' })
    .min(1, 'TaskDefinition can not be blank.'),
  launchType: z.string().optional(),
  startedBy: z.string().max(128).optional(),
  group: z.string().optional(),
  count: z.number().int().min(1).max(10).optional(),
  networkConfiguration: z.unknown().optional(),
  overrides: z
    .object({
      containerOverrides: z
        .array(
          z.object({ name: z.string().optional(), environment: z.array(keyValueSchema).optional() }).loose(),
        )
        .optional(),
      cpu: z.string().optional(),
      memory: z.string().optional(),
    })
    .loose()
    .optional(),
});
const stopTaskInput = z.object({
  cluster: z.string().optional(),
  task: z.string().min(1),
  reason: z.string().optional(),
});
const describeTasksInput = z.object({
  cluster: z.string().optional(),
  tasks: z.array(z.string()).min(1).max(100),
});
const listTasksInput = z.object({
  cluster: z.string().optional(),
  startedBy: z.string().optional(),
  family: z.string().optional(),
  desiredStatus: z.enum(['RUNNING', 'PENDING', 'STOPPED']).optional(),
  maxResults: z.number().int().min(1).max(100).optional(),
  nextToken: z.string().optional(),
});
const describeClustersInput = z.object({ clusters: z.array(z.string()).optional() });
const faultsInput = z.object({
  failures: z.object({ reason: z.string().min(1), times: z.number().int().nonnegative() }).optional(),
  throw: z.object({ code: z.string().min(1), times: z.number().int().nonnegative() }).optional(),
});
const killInput = z.object({ taskArn: z.string().min(1), signal: z.string().optional() });
const launchLimitsInput = z.object({ burst: z.number().int().positive(), perSecond: z.number().positive() });

const parse = <T>(schema: z.ZodType<T>, input: unknown, code = 'InvalidParameterException'): T => {
  const result = schema.safeParse(input);
  if (!result.success) {
    throw new AwsError(code, result.error.issues.map((i) => i.message).join('; '));
  }
  return result.data;
};

type ContainerDefinition = z.infer<typeof containerDefinitionSchema>;

/** A registered revision: what RegisterTaskDefinition was given, and what ECS adds. */
interface RegisteredTaskDefinition {
  taskDefinitionArn: string;
  family: string;
  revision: number;
  /** epoch ms */
  registeredAt: number;
  definition: z.infer<typeof registerTaskDefinitionInput>;
}

interface PersistedState {
  taskDefinitions: RegisteredTaskDefinition[];
}

const epochSeconds = (date: Date | undefined) => (date ? date.getTime() / 1000 : undefined);
const isoOrUndefined = (date: Date | undefined) => date?.toISOString();

/** A token bucket, refilled continuously. */
class TokenBucket {
  private tokens: number;
  private refilledAt = Date.now();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.tokens = burst;
  }

  take(n: number): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

const signalExitCode = (signal: NodeJS.Signals): number => 128 + (osConstants.signals[signal] ?? 0);

export const startEcsEmulator = async (opts: EcsEmulatorOptions): Promise<EcsEmulator> => {
  const region = opts.region ?? 'us-east-1';
  const accountId = opts.accountId ?? '000000000000';
  const stopTimeoutMs = opts.stopTimeoutMs ?? 5000;
  const limits = opts.launchLimits === undefined ? { burst: 100, perSecond: 20 } : opts.launchLimits;
  let launchBucket = limits ? new TokenBucket(limits.burst, limits.perSecond) : undefined;
  const tasks = new Map<string, Task>();
  /** revisions by family, oldest first */
  const taskDefinitions = new Map<string, RegisteredTaskDefinition[]>();
  const saved = opts.persistPath ? await loadState<PersistedState>(opts.persistPath) : undefined;
  for (const registered of saved?.taskDefinitions ?? []) {
    taskDefinitions.set(registered.family, [...(taskDefinitions.get(registered.family) ?? []), registered]);
  }
  const clusterNames = new Set<string>();
  const faults = { failures: { reason: '', times: 0 }, throw: { code: '', times: 0 } };
  let closing = false;

  const clusterNameOf = (cluster: string | undefined) => {
    const value = cluster ?? 'default';
    return value.startsWith('arn:') ? value.slice(value.lastIndexOf('/') + 1) : value;
  };
  const clusterArnOf = (name: string) => `arn:aws:ecs:${region}:${accountId}:cluster/${name}`;
  /** `family` (its latest revision), `family:revision` or the ARN, as RunTask and DescribeTaskDefinition take it */
  const findTaskDefinition = (reference: string): RegisteredTaskDefinition | undefined => {
    const name = reference.startsWith('arn:') ? reference.slice(reference.indexOf('/') + 1) : reference;
    const [family = '', revision] = name.split(':');
    const revisions = taskDefinitions.get(family) ?? [];
    return revision === undefined ? revisions.at(-1) : revisions.find((r) => String(r.revision) === revision);
  };
  const describeTaskDefinitionOf = (registered: RegisteredTaskDefinition) => ({
    ...registered.definition,
    taskDefinitionArn: registered.taskDefinitionArn,
    family: registered.family,
    revision: registered.revision,
    status: 'ACTIVE',
    compatibilities: [...new Set(['EC2', ...(registered.definition.requiresCompatibilities ?? [])])],
    requiresCompatibilities: registered.definition.requiresCompatibilities,
    registeredAt: registered.registeredAt / 1000,
  });
  const findTask = (cluster: string | undefined, ref: string): Task | undefined => {
    const clusterName = clusterNameOf(cluster);
    const task = tasks.get(ref.slice(ref.lastIndexOf('/') + 1));
    return task && task.clusterName === clusterName ? task : undefined;
  };
  const live = () => [...tasks.values()].filter((t) => t.lastStatus !== 'STOPPED');

  const hosted = opts.podHost ? podHost(opts.podHost) : undefined;

  /** A pod process in its own group: the container's processes live and die together. */
  const processContainer = (environment: Record<string, string>): Container => {
    const child = spawn(opts.podCommand.command, opts.podCommand.args, {
      cwd: opts.podCommand.cwd,
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        AWS_REGION: region,
        AWS_DEFAULT_REGION: region,
        ...opts.podCommand.env,
        ...environment,
      },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events = new EventEmitter();
    const signal = (sig: NodeJS.Signals) => {
      if (child.pid !== undefined) killGroup(child.pid, sig);
    };
    child.once('spawn', () => events.emit('spawn'));
    child.on('error', (err) => {
      if (child.pid === undefined) events.emit('spawn-error', err);
    });
    child.once('exit', (code, sig) => {
      events.emit('exit', code, sig);
      // the essential container is gone, so is the rest of the task
      signal('SIGKILL');
    });
    child.once('close', () => events.emit('close'));
    return {
      events,
      stdout: child.stdout as Readable,
      stderr: child.stderr as Readable,
      pid: child.pid,
      signal,
    };
  };

  const startProcess = (environment: Record<string, string>): Container =>
    hosted
      ? hosted.start({ AWS_REGION: region, AWS_DEFAULT_REGION: region, ...opts.podHost?.env, ...environment })
      : processContainer(environment);

  const killGroup = (pid: number, signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // the group is already gone
    }
  };

  const pruneStopped = () => {
    const cutoff = Date.now() - STOPPED_TASK_RETENTION_MS;
    for (const [id, task] of tasks) if (task.stoppedAt && task.stoppedAt.getTime() < cutoff) tasks.delete(id);
  };

  const describe = (task: Task) => ({
    taskArn: task.taskArn,
    clusterArn: task.clusterArn,
    taskDefinitionArn: task.taskDefinitionArn,
    launchType: task.launchType,
    lastStatus: task.lastStatus,
    desiredStatus: task.desiredStatus,
    startedBy: task.startedBy,
    group: task.group,
    cpu: task.cpu,
    memory: task.memory,
    version: task.version,
    createdAt: epochSeconds(task.createdAt),
    startedAt: epochSeconds(task.startedAt),
    stoppingAt: epochSeconds(task.stoppingAt),
    stoppedAt: epochSeconds(task.stoppedAt),
    stopCode: task.stopCode,
    stoppedReason: task.stoppedReason,
    containers: [{ ...task.container, taskArn: task.taskArn }],
    overrides: task.overrides,
  });

  const emit = (task: Task) => {
    if (!opts.onTaskStateChange || closing) return;
    const now = new Date();
    const event: EcsTaskStateChangeEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': 'ECS Task State Change',
      source: 'aws.ecs',
      account: accountId,
      time: `${now.toISOString().slice(0, 19)}Z`,
      region,
      resources: [task.taskArn],
      detail: {
        clusterArn: task.clusterArn,
        taskArn: task.taskArn,
        taskDefinitionArn: task.taskDefinitionArn,
        launchType: task.launchType,
        startedBy: task.startedBy,
        group: task.group,
        cpu: task.cpu,
        memory: task.memory,
        lastStatus: task.lastStatus,
        desiredStatus: task.desiredStatus,
        stopCode: task.stopCode,
        stoppedReason: task.stoppedReason,
        createdAt: task.createdAt.toISOString(),
        startedAt: isoOrUndefined(task.startedAt),
        stoppingAt: isoOrUndefined(task.stoppingAt),
        stoppedAt: isoOrUndefined(task.stoppedAt),
        updatedAt: now.toISOString(),
        version: task.version,
        containers: [{ ...task.container, taskArn: task.taskArn }],
        overrides: task.overrides,
      },
    };
    try {
      opts.onTaskStateChange(event);
    } catch (err) {
      console.warn(`ecs: task state change handler failed: ${String(err)}`);
    }
  };

  const markStopped = (task: Task) => {
    task.lastStatus = 'STOPPED';
    task.container.lastStatus = 'STOPPED';
    task.desiredStatus = 'STOPPED';
    task.stoppedAt = new Date();
    task.version++;
    emit(task);
  };

  /**
   * The values of the container's secrets, read as the ECS agent reads them with the execution role:
   * each `valueFrom` (a secret's name, ARN or partial ARN) asked of Secrets Manager as it is.
   */
  const readSecrets = async (secrets: NonNullable<ContainerDefinition['secrets']>) => {
    const values: Record<string, string> = {};
    for (const { name, valueFrom } of secrets) {
      try {
        if (!opts.secrets) throw new Error('no Secrets Manager to read secrets from');
        const { SecretString } = await opts.secrets.client.send(
          new GetSecretValueCommand({ SecretId: valueFrom }),
        );
        if (SecretString === undefined) throw new Error('the secret has no string value');
        values[name] = SecretString;
      } catch (err) {
        const cause = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        throw new Error(
          `ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret ${valueFrom} from secrets manager: ${cause}`,
        );
      }
    }
    return values;
  };

  /**
   * The task's secrets first, then its container. A secret that cannot be read stops the task before
   * its container starts (TaskFailedToStart), as on Fargate; so does a stop that came meanwhile.
   */
  const launch = async (
    task: Task,
    environment: Record<string, string>,
    secrets: ContainerDefinition['secrets'] = [],
  ): Promise<void> => {
    if (secrets.length > 0) {
      let values: Record<string, string>;
      try {
        values = await readSecrets(secrets);
      } catch (err) {
        task.stopCode = 'TaskFailedToStart';
        task.stoppedReason = (err as Error).message.slice(0, 1024);
        return markStopped(task);
      }
      if (task.desiredStatus === 'STOPPED' || closing) return markStopped(task);
      environment = { ...environment, ...values };
    }
    return startContainer(task, environment);
  };

  const startContainer = (task: Task, environment: Record<string, string>): Promise<void> => {
    const shipper = new LogShipper(
      opts.logs.client,
      opts.logs.logGroupName,
      `${opts.logs.streamPrefix}/${task.container.name}/${task.taskId}`,
    );
    task.shipper = shipper;
    return new Promise<void>((resolve) => {
      let finished = false;
      const finish = async () => {
        if (finished) return;
        finished = true;
        clearTimeout(task.killTimer);
        task.lastStatus = 'DEPROVISIONING';
        // the log must be complete by the time anyone sees STOPPED
        if (closing) shipper.discard();
        else await shipper.close();
        markStopped(task);
        resolve();
      };
      const failToStart = (err: Error) => {
        task.stopCode ??= 'TaskFailedToStart';
        task.stoppedReason ??= `CannotStartContainerError: ${err.message}`;
        task.container.reason = err.message;
        void finish();
      };

      let container: Container;
      try {
        container = startProcess(environment);
      } catch (err) {
        failToStart(err as Error);
        return;
      }
      task.pod = container;
      pipeLines(container.stdout, shipper);
      pipeLines(container.stderr, shipper);

      container.events.once('spawn', () => {
        task.lastStatus = 'RUNNING';
        task.container.lastStatus = 'RUNNING';
        task.startedAt = new Date();
        task.version++;
        emit(task);
      });
      container.events.once('spawn-error', failToStart);
      container.events.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
        task.container.exitCode = code ?? (signal ? signalExitCode(signal) : undefined);
        task.desiredStatus = 'STOPPED';
        task.stopCode ??= 'EssentialContainerExited';
        task.stoppedReason ??= 'Essential container in task exited';
      });
      container.events.once('close', () => void finish());
    });
  };

  const runTask = (raw: Record<string, unknown>) => {
    const input = parse(runTaskInput, raw);
    const count = input.count ?? 1;
    if (faults.throw.times > 0) {
      faults.throw.times--;
      const status = /^(Server|ServiceUnavailable|InternalFailure)/.test(faults.throw.code) ? 500 : 400;
      throw new AwsError(faults.throw.code, `Injected fault: ${faults.throw.code}`, status);
    }
    if (faults.failures.times > 0) {
      faults.failures.times--;
      return {
        tasks: [],
        failures: Array.from({ length: count }, () => ({ reason: faults.failures.reason })),
      };
    }
    const registered = findTaskDefinition(input.taskDefinition);
    if (!registered) throw new AwsError('ClientException', 'TaskDefinition not found.');
    if (launchBucket && !launchBucket.take(count)) throw new AwsError('ThrottlingException', 'Rate exceeded');
    pruneStopped();

    const clusterName = clusterNameOf(input.cluster);
    clusterNames.add(clusterName);
    const containerOverride = input.overrides?.containerOverrides?.[0];
    const containerName = containerOverride?.name ?? POD_CONTAINER_NAME;
    const containers = registered.definition.containerDefinitions;
    const container = containers.find((c) => c.name === containerName);
    if (!container) {
      throw new AwsError(
        'InvalidParameterException',
        `Override for container named ${containerName} is not a container in the TaskDefinition.`,
      );
    }
    // the container definition's variables, then the overrides', as ECS merges them
    const overridden = Object.fromEntries(
      [...(container.environment ?? []), ...(containerOverride?.environment ?? [])].map((kv) => [
        kv.name,
        kv.value,
      ]),
    );
    const started: Task[] = [];
    for (let i = 0; i < count; i++) {
      const taskId = randomBytes(16).toString('hex');
      // Fargate tells each container where its task metadata is; the pod learns its task ARN there.
      const environment = { ...overridden, ECS_CONTAINER_METADATA_URI_V4: `${metadataUrl}/v4/${taskId}` };
      const taskArn = `arn:aws:ecs:${region}:${accountId}:task/${clusterName}/${taskId}`;
      const task: Task = {
        taskArn,
        taskId,
        clusterArn: clusterArnOf(clusterName),
        clusterName,
        taskDefinitionArn: registered.taskDefinitionArn,
        launchType: input.launchType ?? 'FARGATE',
        startedBy: input.startedBy,
        group: input.group,
        cpu: input.overrides?.cpu ?? registered.definition.cpu ?? '256',
        memory: input.overrides?.memory ?? registered.definition.memory ?? '512',
        overrides: input.overrides ?? { containerOverrides: [] },
        container: {
          name: containerName,
          containerArn: `arn:aws:ecs:${region}:${accountId}:container/${clusterName}/${taskId}/${randomUUID()}`,
          image: container.image,
          lastStatus: 'PENDING',
        },
        lastStatus: 'PROVISIONING',
        desiredStatus: 'RUNNING',
        version: 1,
        createdAt: new Date(),
        stopped: Promise.resolve(),
      };
      tasks.set(taskId, task);
      task.stopped = launch(task, environment, container.secrets);
      started.push(task);
    }
    return { tasks: started.map(describe), failures: [] };
  };

  const registerTaskDefinition = (raw: Record<string, unknown>) => {
    const definition = parse(registerTaskDefinitionInput, raw, 'ClientException');
    const revisions = taskDefinitions.get(definition.family) ?? [];
    const revision = (revisions.at(-1)?.revision ?? 0) + 1;
    const registered: RegisteredTaskDefinition = {
      taskDefinitionArn: `arn:aws:ecs:${region}:${accountId}:task-definition/${definition.family}:${revision}`,
      family: definition.family,
      revision,
      registeredAt: Date.now(),
      definition,
    };
    taskDefinitions.set(definition.family, [...revisions, registered]);
    return { taskDefinition: describeTaskDefinitionOf(registered) };
  };

  const describeTaskDefinition = (raw: Record<string, unknown>) => {
    const input = parse(describeTaskDefinitionInput, raw, 'ClientException');
    const registered = findTaskDefinition(input.taskDefinition);
    if (!registered) throw new AwsError('ClientException', 'Unable to describe task definition.');
    return { taskDefinition: describeTaskDefinitionOf(registered) };
  };

  const stopTask = (raw: Record<string, unknown>) => {
    const input = parse(stopTaskInput, raw);
    const task = findTask(input.cluster, input.task);
    if (!task) throw new AwsError('InvalidParameterException', 'The referenced task was not found.');
    if (task.desiredStatus === 'RUNNING') {
      task.desiredStatus = 'STOPPED';
      task.stopCode = 'UserInitiated';
      task.stoppedReason = input.reason ?? 'Task stopped by user';
      task.stoppingAt = new Date();
      task.version++;
      task.pod?.signal('SIGTERM');
      task.killTimer = setTimeout(() => task.pod?.signal('SIGKILL'), stopTimeoutMs);
      task.killTimer.unref();
    }
    return { task: describe(task) };
  };

  const describeTasks = (raw: Record<string, unknown>) => {
    const input = parse(describeTasksInput, raw);
    pruneStopped();
    const found: Task[] = [];
    const failures: { arn: string; reason: string }[] = [];
    for (const ref of input.tasks) {
      const task = findTask(input.cluster, ref);
      if (task) found.push(task);
      else failures.push({ arn: ref, reason: 'MISSING' });
    }
    return { tasks: found.map(describe), failures };
  };

  const listTasks = (raw: Record<string, unknown>) => {
    const input = parse(listTasksInput, raw);
    pruneStopped();
    const clusterName = clusterNameOf(input.cluster);
    // ListTasks shows tasks whose desired status is RUNNING unless asked otherwise
    const desiredStatus = input.desiredStatus ?? 'RUNNING';
    const matching = [...tasks.values()].filter(
      (t) =>
        t.clusterName === clusterName &&
        (input.startedBy === undefined || t.startedBy === input.startedBy) &&
        (input.family === undefined || t.taskDefinitionArn.includes(`task-definition/${input.family}:`)) &&
        (desiredStatus === 'PENDING' ? t.lastStatus === 'PROVISIONING' : t.desiredStatus === desiredStatus),
    );
    const offset = input.nextToken ? Number.parseInt(input.nextToken, 10) || 0 : 0;
    const limit = input.maxResults ?? 100;
    const page = matching.slice(offset, offset + limit);
    const more = offset + limit < matching.length;
    return { taskArns: page.map((t) => t.taskArn), nextToken: more ? String(offset + limit) : undefined };
  };

  const describeClusters = (raw: Record<string, unknown>) => {
    const input = parse(describeClustersInput, raw);
    const names = (input.clusters ?? ['default']).map(clusterNameOf);
    return {
      clusters: names.map((name) => {
        const inCluster = live().filter((t) => t.clusterName === name);
        return {
          clusterArn: clusterArnOf(name),
          clusterName: name,
          status: 'ACTIVE',
          runningTasksCount: inCluster.filter((t) => t.lastStatus === 'RUNNING').length,
          pendingTasksCount: inCluster.filter((t) => t.lastStatus === 'PROVISIONING').length,
          activeServicesCount: 0,
          registeredContainerInstancesCount: 0,
        };
      }),
      failures: [],
    };
  };

  const localRoute =
    (handle: (body: unknown) => unknown) =>
    async (_req: IncomingMessage, body: string, res: ServerResponse) => {
      try {
        sendJson(res, 200, handle(body ? JSON.parse(body) : {}));
      } catch (err) {
        sendJson(res, err instanceof NotFound ? 404 : 400, { message: (err as Error).message });
      }
    };

  let metadataUrl = '';
  /** The task metadata endpoint (v4): `GET /v4/<taskId>/task`, as the ECS agent answers a container. */
  const taskMetadata = (req: IncomingMessage, _body: string, res: ServerResponse) => {
    const match = /^\/v4\/([0-9a-f]+)\/task$/.exec((req.url ?? '').split('?')[0] ?? '');
    const task = match && req.method === 'GET' ? tasks.get(match[1] as string) : undefined;
    if (!task) return sendJson(res, 404, { message: 'no such task metadata' });
    sendJson(res, 200, {
      Cluster: task.clusterArn,
      TaskARN: task.taskArn,
      Family: task.taskDefinitionArn.split('/').pop()?.split(':')[0],
      DesiredStatus: task.desiredStatus,
      KnownStatus: task.lastStatus,
      LaunchType: task.launchType,
    });
  };

  const server = await startJsonProtocolServer(
    {
      targetPrefix: 'AmazonEC2ContainerServiceV20141113',
      errorNamespace: 'com.amazonaws.ecs',
      operations: {
        RegisterTaskDefinition: registerTaskDefinition,
        DescribeTaskDefinition: describeTaskDefinition,
        RunTask: runTask,
        StopTask: stopTask,
        DescribeTasks: describeTasks,
        ListTasks: listTasks,
        DescribeClusters: describeClusters,
        ListClusters: () => ({ clusterArns: [...clusterNames].map(clusterArnOf) }),
      },
      extraRoutes: {
        'POST /_local/faults': localRoute((body) => {
          const input = faultsInput.parse(body);
          if (input.failures) faults.failures = input.failures;
          if (input.throw) faults.throw = input.throw;
          return faults;
        }),
        // other launch limits from now on (a benchmark plays Fargate's limits at a smaller scale)
        'POST /_local/launch-limits': localRoute((body) => {
          const input = launchLimitsInput.parse(body);
          launchBucket = new TokenBucket(input.burst, input.perSecond);
          return input;
        }),
        'POST /_local/kill': localRoute((body) => {
          const input = killInput.parse(body);
          const task = tasks.get(input.taskArn.slice(input.taskArn.lastIndexOf('/') + 1));
          if (!task || task.lastStatus === 'STOPPED') throw new NotFound(`no running task ${input.taskArn}`);
          task.pod?.signal((input.signal ?? 'SIGKILL') as NodeJS.Signals);
          return { taskArn: task.taskArn };
        }),
      },
      fallback: taskMetadata,
    },
    opts.port ?? 0,
    opts.host ?? '127.0.0.1',
  );
  metadataUrl = server.url;

  // No orphans even when the host process exits without close(): the pods are in their own groups.
  const killAllOnExit = () => {
    for (const task of live()) task.pod?.signal('SIGKILL');
    hosted?.kill();
  };
  process.once('exit', killAllOnExit);
  let closed: Promise<void> | undefined;

  return {
    url: server.url,
    port: server.port,
    runningTasks: () => live().map((t) => ({ taskArn: t.taskArn, startedBy: t.startedBy, pid: t.pod?.pid })),
    close: () => {
      closed ??= (async () => {
        closing = true;
        const pending = live();
        for (const task of pending) {
          task.shipper?.discard();
          task.pod?.signal('SIGKILL');
        }
        await Promise.all(pending.map((t) => t.stopped));
        hosted?.kill();
        process.removeListener('exit', killAllOnExit);
        if (opts.persistPath) {
          const state: PersistedState = { taskDefinitions: [...taskDefinitions.values()].flat() };
          await saveState(opts.persistPath, state);
        }
        await server.close();
      })();
      return closed;
    },
  };
};

class NotFound extends Error {}
