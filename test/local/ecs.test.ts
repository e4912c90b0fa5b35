import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import {
  DescribeClustersCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  type RegisterTaskDefinitionCommandInput,
  RunTaskCommand,
  type RunTaskCommandInput,
  StopTaskCommand,
} from '@aws-sdk/client-ecs';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POD_HOST_ENTRY } from '../../infra/local/cloud.js';
import {
  type EcsEmulator,
  type EcsEmulatorOptions,
  type EcsTaskStateChangeEvent,
  startEcsEmulator,
} from '../../infra/local/emulators/ecs.js';
import { AwsError, startJsonProtocolServer } from '../../infra/local/emulators/json-protocol.js';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../infra/local/emulators/secretsmanager.js';
import { buildPodBundle } from '../../pod/build.js';
import { startFakeAgentApi } from '../../pod/src/testing/fake-agent-api.js';

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'eu-west-1';
const cluster = 'runs';
const logGroupName = '/local/pods';
/** The pod's task definition as the local cloud registers it: one container, `pod`. */
const POD_TASK_DEFINITION: RegisterTaskDefinitionCommandInput = {
  family: 'pod',
  networkMode: 'awsvpc',
  requiresCompatibilities: ['FARGATE'],
  cpu: '1024',
  memory: '2048',
  containerDefinitions: [{ name: 'pod', image: 'execution-runs/pod:local', essential: true }],
};

/** The pod stand-in: what it does is chosen by the MODE variable the task overrides set. */
const POD_SCRIPT = `
const { spawn } = require('node:child_process');
const mode = process.env.MODE;
console.log('env ' + process.env.RUN_ID + ' ' + process.env.FROM_POD_COMMAND);
if (process.env.SHOW) console.log(process.env.SHOW + '=' + process.env[process.env.SHOW]);
if (mode === 'exit') {
  const lines = Number(process.env.LINES || 0);
  let out = '';
  for (let i = 1; i <= lines; i++) out += 'line ' + i + '\\n';
  process.stdout.write(out);
  process.stderr.write('to stderr\\n');
  process.stdout.write('no newline at the end', () => process.exit(Number(process.env.EXIT_CODE)));
} else {
  if (mode === 'ignore-term') process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
  if (mode === 'grandchild') {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    console.log('grandchild ' + child.pid);
  }
  setInterval(() => {}, 1000);
  console.log('ready');
}
`;

/** A CloudWatch Logs stand-in: just enough for the awslogs-style shipping. */
const startFakeLogs = async () => {
  const streams = new Map<string, { timestamp: number; message: string }[]>();
  const key = (input: Record<string, unknown>) => `${input.logGroupName}|${input.logStreamName}`;
  const groups = new Set<string>();
  const server = await startJsonProtocolServer({
    targetPrefix: 'Logs_20140328',
    errorNamespace: 'com.amazonaws.logs',
    operations: {
      CreateLogGroup: (input) => {
        groups.add(String(input.logGroupName));
        return {};
      },
      CreateLogStream: (input) => {
        if (!groups.has(String(input.logGroupName)))
          throw new AwsError('ResourceNotFoundException', 'no group');
        if (streams.has(key(input))) throw new AwsError('ResourceAlreadyExistsException', 'exists');
        streams.set(key(input), []);
        return {};
      },
      PutLogEvents: (input) => {
        const events = streams.get(key(input));
        if (!events) throw new AwsError('ResourceNotFoundException', 'no stream');
        const batch = input.logEvents as { timestamp: number; message: string }[];
        if (batch.length > 10_000) throw new AwsError('InvalidParameterException', 'too many events');
        events.push(...batch);
        return { nextSequenceToken: String(events.length) };
      },
    },
  });
  return {
    server,
    messages: (stream: string) => streams.get(`${logGroupName}|${stream}`)?.map((e) => e.message),
  };
};

const isAlive = (pid: number): boolean => {
  try {
    // a zombie has exited: only its process-table entry is left for its parent to reap
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
  } catch {
    return false;
  }
};

const eventually = async (check: () => boolean, timeoutMs = 3000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('ECS emulator', () => {
  let logs: Awaited<ReturnType<typeof startFakeLogs>>;
  let logsClient: CloudWatchLogsClient;
  const emulators: EcsEmulator[] = [];
  const events: EcsTaskStateChangeEvent[] = [];
  const stoppedWaiters = new Map<string, (event: EcsTaskStateChangeEvent) => void>();
  const logsAtStop = new Map<string, string[]>();
  let ecs: ECSClient;
  let emulator: EcsEmulator;
  let secretsManager: SecretsManagerEmulator;
  let secretsClient: SecretsManagerClient;

  const start = async (overrides: Partial<EcsEmulatorOptions> = {}) => {
    const started = await startEcsEmulator({
      secrets: { client: secretsClient },
      region,
      accountId: '123456789012',
      podCommand: { command: process.execPath, args: ['-e', POD_SCRIPT], env: { FROM_POD_COMMAND: 'base' } },
      logs: { client: logsClient, logGroupName, streamPrefix: 'pods' },
      stopTimeoutMs: 300,
      onTaskStateChange: (event) => {
        events.push(event);
        if (event.detail.lastStatus !== 'STOPPED') return;
        const taskId = event.detail.taskArn.split('/').pop() ?? '';
        logsAtStop.set(event.detail.taskArn, [...(logs.messages(`pods/pod/${taskId}`) ?? [])]);
        stoppedWaiters.get(event.detail.taskArn)?.(event);
      },
      ...overrides,
    });
    emulators.push(started);
    await clientFor(started).send(new RegisterTaskDefinitionCommand(POD_TASK_DEFINITION));
    return started;
  };
  const clientFor = (target: EcsEmulator) =>
    new ECSClient({ endpoint: target.url, region, credentials, maxAttempts: 1 });

  const runInput = (
    env: Record<string, string>,
    extra: Partial<RunTaskCommandInput> = {},
  ): RunTaskCommandInput => ({
    cluster: `arn:aws:ecs:${region}:123456789012:cluster/${cluster}`,
    taskDefinition: 'pod',
    launchType: 'FARGATE',
    startedBy: env.RUN_ID,
    overrides: {
      cpu: '1024',
      memory: '2048',
      containerOverrides: [
        { name: 'pod', environment: Object.entries(env).map(([name, value]) => ({ name, value })) },
      ],
    },
    ...extra,
  });

  /** Runs one task and returns its arn and a promise of its STOPPED event. */
  const run = async (env: Record<string, string>, client = ecs) => {
    const out = await client.send(new RunTaskCommand(runInput(env)));
    const taskArn = out.tasks?.[0]?.taskArn ?? '';
    // a task that fails fast may stop before the answer has been parsed
    const stopped = new Promise<EcsTaskStateChangeEvent>((resolve) => {
      const seen = events.find((e) => e.detail.taskArn === taskArn && e.detail.lastStatus === 'STOPPED');
      if (seen) resolve(seen);
      else stoppedWaiters.set(taskArn, resolve);
    });
    return { out, taskArn, stopped };
  };
  const streamOf = (taskArn: string) => `pods/pod/${taskArn.split('/').pop()}`;
  const waitForLine = (taskArn: string, line: string) =>
    eventually(() => (logs.messages(streamOf(taskArn)) ?? []).some((m) => m.startsWith(line)));
  const post = (target: EcsEmulator, path: string, body: unknown) =>
    fetch(`${target.url}${path}`, { method: 'POST', body: JSON.stringify(body) });

  beforeAll(async () => {
    secretsManager = await startSecretsManagerEmulator({ region, accountId: '123456789012' });
    secretsClient = new SecretsManagerClient({ endpoint: secretsManager.url, region, credentials });
    logs = await startFakeLogs();
    logsClient = new CloudWatchLogsClient({ endpoint: logs.server.url, region, credentials });
    emulator = await start();
    ecs = clientFor(emulator);
  });

  afterAll(async () => {
    for (const started of emulators) await started.close();
    await logs.server.close();
    secretsClient.destroy();
    await secretsManager.close();
  });

  it('starts the pod with the overrides environment and answers like RunTask', async () => {
    const { out, taskArn, stopped } = await run({ RUN_ID: 'run_A', MODE: 'exit', EXIT_CODE: '0' });

    expect(out.failures).toEqual([]);
    expect(taskArn).toMatch(new RegExp(`^arn:aws:ecs:${region}:123456789012:task/${cluster}/[0-9a-f]{32}$`));
    expect(out.tasks?.[0]).toMatchObject({
      clusterArn: `arn:aws:ecs:${region}:123456789012:cluster/${cluster}`,
      taskDefinitionArn: `arn:aws:ecs:${region}:123456789012:task-definition/pod:1`,
      desiredStatus: 'RUNNING',
      startedBy: 'run_A',
      cpu: '1024',
      memory: '2048',
      containers: [{ name: 'pod', taskArn, image: 'execution-runs/pod:local' }],
    });
    expect(out.tasks?.[0]?.createdAt).toBeInstanceOf(Date);
    await stopped;
    expect(logsAtStop.get(taskArn)?.[0]).toBe('env run_A base');
  });

  it('registers task definitions as revisions of their family, and describes one by ARN, family:revision or family', async () => {
    const family = 'pods-own-acct-1-pod-1';
    const first = await ecs.send(
      new RegisterTaskDefinitionCommand({
        ...POD_TASK_DEFINITION,
        family,
        executionRoleArn: 'arn:aws:iam::1:role/x',
      }),
    );
    const second = await ecs.send(new RegisterTaskDefinitionCommand({ ...POD_TASK_DEFINITION, family }));

    const arn = (revision: number) =>
      `arn:aws:ecs:${region}:123456789012:task-definition/${family}:${revision}`;
    expect(first.taskDefinition).toMatchObject({
      taskDefinitionArn: arn(1),
      family,
      revision: 1,
      status: 'ACTIVE',
      executionRoleArn: 'arn:aws:iam::1:role/x',
      containerDefinitions: [{ name: 'pod', image: 'execution-runs/pod:local' }],
    });
    expect(second.taskDefinition?.taskDefinitionArn).toBe(arn(2));
    for (const [reference, revision] of [
      [arn(1), 1],
      [`${family}:1`, 1],
      [family, 2],
    ] as const) {
      const described = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: reference }));
      expect(described.taskDefinition?.revision, reference).toBe(revision);
    }
    await expect(
      ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: `${family}:3` })),
    ).rejects.toMatchObject({
      name: 'ClientException',
    });
    await expect(
      ecs.send(new RegisterTaskDefinitionCommand({ ...POD_TASK_DEFINITION, family: 'not/a/family' })),
    ).rejects.toMatchObject({ name: 'ClientException' });
  });

  it('runs only a registered task definition', async () => {
    const unknown = ecs.send(
      new RunTaskCommand({
        ...runInput({ RUN_ID: 'run_X', MODE: 'exit', EXIT_CODE: '0' }),
        taskDefinition: 'nope:1',
      }),
    );
    await expect(unknown).rejects.toMatchObject({
      name: 'ClientException',
      message: 'TaskDefinition not found.',
    });
  });

  it('starts a task of a pod’s own task definition with its secrets’ values in that pod’s environment only', async () => {
    const secret = await secretsClient.send(
      new CreateSecretCommand({ Name: 'execution-runs/pods/acct-1/api-token', SecretString: 'tok-123' }),
    );
    const family = 'pods-own-with-secret';
    const { taskDefinition } = await ecs.send(
      new RegisterTaskDefinitionCommand({
        ...POD_TASK_DEFINITION,
        family,
        containerDefinitions: [
          {
            name: 'pod',
            image: 'ghcr.io/acme/pod-with-tools:2',
            environment: [{ name: 'FROM_DEFINITION', value: 'yes' }],
            secrets: [
              {
                name: 'API_TOKEN',
                valueFrom: `arn:aws:secretsmanager:${region}:123456789012:secret:execution-runs/pods/acct-1/api-token`,
              },
            ],
          },
        ],
      }),
    );
    const input = runInput({ RUN_ID: 'run_S', MODE: 'exit', EXIT_CODE: '0', SHOW: 'API_TOKEN' });
    const out = await ecs.send(new RunTaskCommand({ ...input, taskDefinition: family }));
    const taskArn = out.tasks?.[0]?.taskArn ?? '';
    const plain = await run({ RUN_ID: 'run_P', MODE: 'exit', EXIT_CODE: '0', SHOW: 'API_TOKEN' });
    await eventually(() => logsAtStop.has(taskArn) && logsAtStop.has(plain.taskArn));
    const stopped = events.find((e) => e.detail.taskArn === taskArn && e.detail.lastStatus === 'STOPPED');

    expect(logsAtStop.get(taskArn)).toContain('API_TOKEN=tok-123');
    expect(logsAtStop.get(plain.taskArn)).toContain('API_TOKEN=undefined');
    expect(stopped?.detail).toMatchObject({
      taskDefinitionArn: taskDefinition?.taskDefinitionArn,
      stopCode: 'EssentialContainerExited',
      containers: [{ image: 'ghcr.io/acme/pod-with-tools:2', exitCode: 0 }],
    });
    const described = await ecs.send(new DescribeTasksCommand({ cluster, tasks: [taskArn] }));
    expect(described.tasks?.[0]?.taskDefinitionArn).toBe(taskDefinition?.taskDefinitionArn);
    // the value is in the pod's environment, never in what ECS shows of the task
    expect(JSON.stringify([out, described, stopped])).not.toContain('tok-123');
    expect(secret.ARN).toBeTruthy();
  });

  it('stops a task whose secret does not exist before it starts, as Fargate does', async () => {
    const family = 'pods-own-missing-secret';
    await ecs.send(
      new RegisterTaskDefinitionCommand({
        ...POD_TASK_DEFINITION,
        family,
        containerDefinitions: [
          {
            name: 'pod',
            image: 'execution-runs/pod:local',
            secrets: [
              {
                name: 'GONE',
                valueFrom: `arn:aws:secretsmanager:${region}:123456789012:secret:execution-runs/pods/acct-1/never-created`,
              },
            ],
          },
        ],
      }),
    );
    const out = await ecs.send(
      new RunTaskCommand({ ...runInput({ RUN_ID: 'run_M', MODE: 'sleep' }), taskDefinition: family }),
    );
    const taskArn = out.tasks?.[0]?.taskArn ?? '';
    await eventually(() => logsAtStop.has(taskArn));
    const changes = events.filter((e) => e.detail.taskArn === taskArn);

    expect(out.tasks?.[0]?.lastStatus).toBe('PROVISIONING');
    expect(changes.map((e) => e.detail.lastStatus)).toEqual(['STOPPED']);
    expect(changes[0]?.detail).toMatchObject({
      stopCode: 'TaskFailedToStart',
      stoppedReason: expect.stringMatching(
        /^ResourceInitializationError: unable to pull secrets .*execution-runs\/pods\/acct-1\/never-created.*ResourceNotFoundException/,
      ),
      containers: [{ lastStatus: 'STOPPED' }],
    });
    expect(changes[0]?.detail.containers[0]?.exitCode).toBeUndefined();
    expect(logsAtStop.get(taskArn)).toEqual([]);
    expect(emulator.runningTasks().map((t) => t.taskArn)).not.toContain(taskArn);
  });

  it('keeps its task definitions across a restart with a persist path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ecs-persist-'));
    const persistPath = join(dir, 'ecs.json');
    try {
      const first = await start({ persistPath });
      await clientFor(first).send(
        new RegisterTaskDefinitionCommand({ ...POD_TASK_DEFINITION, family: 'kept' }),
      );
      await first.close();
      const second = await start({ persistPath });
      const described = await clientFor(second).send(
        new DescribeTaskDefinitionCommand({ taskDefinition: 'kept' }),
      );
      expect(described.taskDefinition?.revision).toBe(1);
      // start() registered `pod` again: a new revision of the family, as a redeploy makes
      const pod = await clientFor(second).send(new DescribeTaskDefinitionCommand({ taskDefinition: 'pod' }));
      expect(pod.taskDefinition?.revision).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('ships every output line before the STOPPED event of a task that exits by itself', async () => {
    const { taskArn, stopped } = await run({ RUN_ID: 'run_B', MODE: 'exit', EXIT_CODE: '3', LINES: '25000' });

    const event = await stopped;

    expect(event).toMatchObject({
      version: '0',
      source: 'aws.ecs',
      'detail-type': 'ECS Task State Change',
      account: '123456789012',
      region,
      resources: [taskArn],
      detail: {
        taskArn,
        startedBy: 'run_B',
        lastStatus: 'STOPPED',
        desiredStatus: 'STOPPED',
        stopCode: 'EssentialContainerExited',
        stoppedReason: 'Essential container in task exited',
        containers: [{ name: 'pod', exitCode: 3, lastStatus: 'STOPPED' }],
        overrides: { containerOverrides: [{ name: 'pod' }] },
      },
    });
    expect(Date.parse(event.detail.stoppedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(event.detail.startedAt ?? ''),
    );
    const lines = logsAtStop.get(taskArn) ?? [];
    expect(lines).toHaveLength(25_003);
    expect(lines.filter((l) => l.startsWith('line '))).toEqual(
      Array.from({ length: 25_000 }, (_, i) => `line ${i + 1}`),
    );
    expect(lines).toContain('to stderr');
    expect(lines.filter((l) => l !== 'to stderr').at(-1)).toBe('no newline at the end');
  });

  it('stops a task on StopTask with UserInitiated and the reason, and the process is gone', async () => {
    const { taskArn, stopped } = await run({ RUN_ID: 'run_C', MODE: 'sleep' });
    await waitForLine(taskArn, 'ready');
    const pid = emulator.runningTasks().find((t) => t.taskArn === taskArn)?.pid ?? 0;
    expect(isAlive(pid)).toBe(true);

    const out = await ecs.send(
      new StopTaskCommand({ cluster, task: taskArn, reason: 'run stopped by user' }),
    );
    const event = await stopped;

    expect(out.task).toMatchObject({ desiredStatus: 'STOPPED', stopCode: 'UserInitiated' });
    expect(event.detail).toMatchObject({ stopCode: 'UserInitiated', stoppedReason: 'run stopped by user' });
    expect(event.detail.containers[0]?.exitCode).toBe(143);
    expect(isAlive(pid)).toBe(false);
    expect(emulator.runningTasks().map((t) => t.taskArn)).not.toContain(taskArn);
  });

  it('kills a pod that ignores SIGTERM once the stop timeout passes', async () => {
    const { taskArn, stopped } = await run({ RUN_ID: 'run_D', MODE: 'ignore-term' });
    await waitForLine(taskArn, 'ready');

    await ecs.send(new StopTaskCommand({ cluster, task: taskArn.split('/').pop(), reason: 'finalize' }));
    const event = await stopped;

    expect(event.detail.stopCode).toBe('UserInitiated');
    expect(event.detail.containers[0]?.exitCode).toBe(137);
    expect(logsAtStop.get(taskArn)).toContain('ignoring SIGTERM');
  });

  it('reports a container killed through the kill route as exited with 137', async () => {
    const { taskArn, stopped } = await run({ RUN_ID: 'run_E', MODE: 'sleep' });
    await waitForLine(taskArn, 'ready');

    const res = await post(emulator, '/_local/kill', { taskArn });
    const event = await stopped;

    expect(res.status).toBe(200);
    expect(event.detail).toMatchObject({
      stopCode: 'EssentialContainerExited',
      containers: [{ exitCode: 137, lastStatus: 'STOPPED' }],
    });
  });

  it('describes known tasks, reports unknown ones as MISSING, and lists by startedBy and desired status', async () => {
    const { taskArn, stopped } = await run({ RUN_ID: 'run_F', MODE: 'sleep' });
    await waitForLine(taskArn, 'ready');
    const missing = `arn:aws:ecs:${region}:123456789012:task/${cluster}/${'0'.repeat(32)}`;

    const described = await ecs.send(new DescribeTasksCommand({ cluster, tasks: [taskArn, missing] }));
    const running = await ecs.send(new ListTasksCommand({ cluster, startedBy: 'run_F' }));
    const clusters = await ecs.send(new DescribeClustersCommand({ clusters: [cluster] }));
    await ecs.send(new StopTaskCommand({ cluster, task: taskArn }));
    await stopped;
    const afterStop = await ecs.send(new ListTasksCommand({ cluster, startedBy: 'run_F' }));
    const stoppedList = await ecs.send(
      new ListTasksCommand({ cluster, startedBy: 'run_F', desiredStatus: 'STOPPED' }),
    );
    const describedStopped = await ecs.send(new DescribeTasksCommand({ cluster, tasks: [taskArn] }));

    expect(described.tasks?.map((t) => [t.taskArn, t.lastStatus])).toEqual([[taskArn, 'RUNNING']]);
    expect(described.failures).toEqual([{ arn: missing, reason: 'MISSING' }]);
    expect(running.taskArns).toEqual([taskArn]);
    expect(clusters.clusters?.[0]).toMatchObject({ clusterName: cluster, status: 'ACTIVE' });
    expect(clusters.clusters?.[0]?.runningTasksCount).toBeGreaterThanOrEqual(1);
    expect(afterStop.taskArns).toEqual([]);
    expect(stoppedList.taskArns).toEqual([taskArn]);
    expect(describedStopped.tasks?.[0]).toMatchObject({ lastStatus: 'STOPPED', stopCode: 'UserInitiated' });
    expect(describedStopped.tasks?.[0]?.stoppedAt).toBeInstanceOf(Date);
  });

  it('answers injected capacity failures in failures with a 200, then launches again', async () => {
    await post(emulator, '/_local/faults', { failures: { reason: 'RESOURCE:ENI', times: 2 } });

    const first = await ecs.send(
      new RunTaskCommand(runInput({ RUN_ID: 'run_G', MODE: 'exit', EXIT_CODE: '0' })),
    );
    const second = await ecs.send(
      new RunTaskCommand(runInput({ RUN_ID: 'run_G', MODE: 'exit', EXIT_CODE: '0' })),
    );
    const third = await run({ RUN_ID: 'run_G', MODE: 'exit', EXIT_CODE: '0' });

    expect(first).toMatchObject({ tasks: [], failures: [{ reason: 'RESOURCE:ENI' }] });
    expect(second).toMatchObject({ tasks: [], failures: [{ reason: 'RESOURCE:ENI' }] });
    expect(third.out.tasks).toHaveLength(1);
    await third.stopped;
  });

  it('throws an injected error the given number of times', async () => {
    await post(emulator, '/_local/faults', { throw: { code: 'ThrottlingException', times: 1 } });

    const failed = ecs.send(new RunTaskCommand(runInput({ RUN_ID: 'run_H', MODE: 'exit', EXIT_CODE: '0' })));
    await expect(failed).rejects.toMatchObject({ name: 'ThrottlingException' });
    const next = await run({ RUN_ID: 'run_H', MODE: 'exit', EXIT_CODE: '0' });

    expect(next.out.tasks).toHaveLength(1);
    await next.stopped;
  });

  it('throttles launches beyond the burst', async () => {
    const limited = await start({ launchLimits: { burst: 2, perSecond: 0.01 } });
    const client = clientFor(limited);

    const first = await run({ RUN_ID: 'run_I', MODE: 'exit', EXIT_CODE: '0' }, client);
    const second = await run({ RUN_ID: 'run_I', MODE: 'exit', EXIT_CODE: '0' }, client);
    const third = client.send(
      new RunTaskCommand(runInput({ RUN_ID: 'run_I', MODE: 'exit', EXIT_CODE: '0' })),
    );

    await expect(third).rejects.toMatchObject({ name: 'ThrottlingException' });
    await Promise.all([first.stopped, second.stopped]);
  });

  it('reports a pod that cannot be spawned as TaskFailedToStart', async () => {
    const broken = await start({ podCommand: { command: '/nonexistent/pod', args: [] } });

    const { stopped } = await run({ RUN_ID: 'run_J' }, clientFor(broken));
    const event = await stopped;

    expect(event.detail.stopCode).toBe('TaskFailedToStart');
    expect(event.detail.containers[0]?.exitCode).toBeUndefined();
  });

  it('kills every pod and what it spawned on close', async () => {
    const closing = await start();
    const client = clientFor(closing);
    const a = await run({ RUN_ID: 'run_K', MODE: 'grandchild' }, client);
    const b = await run({ RUN_ID: 'run_L', MODE: 'sleep' }, client);
    await waitForLine(a.taskArn, 'ready');
    await waitForLine(b.taskArn, 'ready');
    const grandchild = Number(
      logs
        .messages(streamOf(a.taskArn))
        ?.find((m) => m.startsWith('grandchild '))
        ?.split(' ')[1],
    );
    const pids = closing.runningTasks().map((t) => t.pid ?? 0);
    expect(pids).toHaveLength(2);

    await closing.close();

    await eventually(() => ![...pids, grandchild].some(isAlive));
    expect(closing.runningTasks()).toEqual([]);
  });
  describe('with a shared pod host', () => {
    const HOSTED_POD = fileURLToPath(new URL('./fixtures/hosted-pod.ts', import.meta.url));
    let hosted: EcsEmulator;
    let client: ECSClient;

    beforeAll(async () => {
      hosted = await start({
        podHost: {
          command: process.execPath,
          args: ['--import', 'tsx', HOSTED_POD],
          env: { FROM_POD_COMMAND: 'host' },
        },
      });
      client = clientFor(hosted);
    });

    it('runs each task as a pod in the host, with its environment, output and exit code', async () => {
      const a = await run({ RUN_ID: 'run_H1', MODE: 'exit', EXIT_CODE: '3' }, client);
      const b = await run({ RUN_ID: 'run_H2', MODE: 'exit', EXIT_CODE: '0' }, client);

      const [stoppedA, stoppedB] = await Promise.all([a.stopped, b.stopped]);

      expect(stoppedA.detail).toMatchObject({
        lastStatus: 'STOPPED',
        stopCode: 'EssentialContainerExited',
        containers: [{ name: 'pod', exitCode: 3, lastStatus: 'STOPPED' }],
      });
      expect(stoppedB.detail.containers[0]?.exitCode).toBe(0);
      const lines = logsAtStop.get(a.taskArn) ?? [];
      expect(lines.filter((l) => l !== 'to stderr')).toEqual([
        'env run_H1 host',
        'line 1',
        'line 2',
        'no newline at the end',
      ]);
      expect(lines).toContain('to stderr');
      expect(logsAtStop.get(b.taskArn)?.[0]).toBe('env run_H2 host');
      expect(events.filter((e) => e.detail.taskArn === a.taskArn).map((e) => e.detail.lastStatus)).toEqual([
        'RUNNING',
        'STOPPED',
      ]);
    });

    it('asks a hosted pod to stop on StopTask, and it ends by itself', async () => {
      const { taskArn, stopped } = await run({ RUN_ID: 'run_H3', MODE: 'sleep' }, client);
      await waitForLine(taskArn, 'ready');

      await client.send(new StopTaskCommand({ cluster, task: taskArn, reason: 'run stopped by user' }));
      const event = await stopped;

      expect(event.detail).toMatchObject({
        stopCode: 'UserInitiated',
        stoppedReason: 'run stopped by user',
        containers: [{ exitCode: 0 }],
      });
      expect(logsAtStop.get(taskArn)).toContain('terminated');
      expect(hosted.runningTasks().map((t) => t.taskArn)).not.toContain(taskArn);
    });

    it('reports a hosted pod that ignores the stop as killed (137) once the stop timeout passes', async () => {
      const { taskArn, stopped } = await run({ RUN_ID: 'run_H4', MODE: 'ignore-term' }, client);
      await waitForLine(taskArn, 'ready');

      await client.send(new StopTaskCommand({ cluster, task: taskArn }));
      const event = await stopped;

      expect(event.detail.containers[0]?.exitCode).toBe(137);
      expect(logsAtStop.get(taskArn)).toContain('ignoring SIGTERM');
    });

    it('reports a pod whose program throws as exited with 1, the error in its log', async () => {
      const { taskArn, stopped } = await run({ RUN_ID: 'run_H5', MODE: 'throw' }, client);

      const event = await stopped;

      expect(event.detail.containers[0]?.exitCode).toBe(1);
      expect(logsAtStop.get(taskArn)).toContain('Error: the agent broke');
    });

    it('ends every pod of a host that dies, and starts a new host for the next task', async () => {
      const waiting = await run({ RUN_ID: 'run_H6', MODE: 'sleep' }, client);
      await waitForLine(waiting.taskArn, 'ready');

      const crashing = await run({ RUN_ID: 'run_H7', MODE: 'crash-host' }, client);
      const [waitingStopped, crashingStopped] = await Promise.all([waiting.stopped, crashing.stopped]);
      const next = await run({ RUN_ID: 'run_H8', MODE: 'exit', EXIT_CODE: '0' }, client);

      expect(waitingStopped.detail.containers[0]?.exitCode).toBe(137);
      expect(crashingStopped.detail.containers[0]?.exitCode).toBe(137);
      expect((await next.stopped).detail.containers[0]?.exitCode).toBe(0);
    });

    it('reports tasks as TaskFailedToStart when the host cannot be started', async () => {
      const broken = await start({ podHost: { command: '/nonexistent/pod-host', args: [] } });

      const { stopped } = await run({ RUN_ID: 'run_H9' }, clientFor(broken));
      const event = await stopped;

      expect(event.detail.stopCode).toBe('TaskFailedToStart');
      expect(event.detail.containers[0]?.exitCode).toBeUndefined();
    });

    it("runs the real pod in the host the local cloud builds, through the pod's whole life", async () => {
      const dir = await mkdtemp(join(tmpdir(), 'pod-host-'));
      const agentApi = await startFakeAgentApi({
        config: { demo: { steps: 1, stepDelayMs: 0 } },
        anyTask: true,
      });
      try {
        const bundle = join(dir, 'pod-host.mjs');
        await buildPodBundle(bundle, POD_HOST_ENTRY);
        const real = await start({ podHost: { command: process.execPath, args: [bundle] } });

        const { taskArn, stopped } = await run(
          { RUN_ID: agentApi.runId, AGENT_API_URL: agentApi.url, AGENT_LAUNCH_CODE: agentApi.launchCode },
          clientFor(real),
        );
        const event = await stopped;

        expect(event.detail.containers[0]?.exitCode).toBe(0);
        // each of the pod's lines names its run, for searches across the logs
        expect(logsAtStop.get(taskArn)).toContain(`[${agentApi.runId}] pod: agent finished`);
        expect(agentApi.accepted().at(-1)).toMatchObject({ type: 'result', outcome: 'completed' });
        // the pod found its task in the task metadata ECS gave it, and spent its launch code once
        expect(agentApi.exchanges).toEqual([taskArn]);
      } finally {
        await agentApi.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
