import {
  CreateStateMachineCommand,
  GetExecutionHistoryCommand,
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderDefinition } from '../../infra/local/asl.js';
import {
  type StepFunctionsEmulator,
  startStepFunctionsEmulator,
} from '../../infra/local/emulators/stepfunctions.js';
import { eventually, finished, sfnClient, statesEntered } from './support/executions.js';

const fn = (name: string) => `arn:aws:lambda:us-east-1:000000000000:function:${name}`;
const substitutions = {
  ChecksFunctionArn: fn('checks'),
  MarkRetryingFunctionArn: fn('markRetrying'),
  ParkPodFunctionArn: fn('parkPod'),
  FinalizeFunctionArn: fn('finalize'),
  RequestApprovalFunctionArn: fn('requestApproval'),
  RaisePullRequestFunctionArn: fn('raisePullRequest'),
  ClusterArn: 'arn:aws:ecs:us-east-1:000000000000:cluster/runs',
  SubnetIds: 'subnet-a,subnet-b',
  SecurityGroupId: 'sg-pod',
  AssignPublicIp: 'DISABLED',
};

interface Launch {
  taskDefinition: string;
  cpu: string;
  memory: string;
  environment: { Name: string; Value: string }[];
  maxDurationSeconds: number;
  heartbeatSeconds: number;
  approvalWindowSeconds: number;
}

interface ChecksResult {
  ok: boolean;
  exitReason: string | null;
  message: string | null;
  launch: Launch | null;
}

/**
 * What one run's fakes answer: Checks (one answer for every call, or one per call), then one ECS
 * outcome per Launch, one MarkRetrying answer per failure.
 */
interface Scenario {
  checks: ChecksResult | ChecksResult[];
  launches: ('started' | 'noCapacity' | 'ecsException' | 'throttled')[];
  retries: { retry: boolean; waitSeconds: number; attempt: number }[];
  /** RaisePullRequest's answer to every call: the pull requests it opened, or an error it throws */
  pullRequests?: string[] | Error;
}

/** What each role received for one run. */
interface Received {
  checks: unknown[];
  ecs: Record<string, unknown>[];
  markRetrying: Record<string, unknown>[];
  parkPod: { runId: string; taskArn: string; taskToken: string; approval?: Record<string, unknown> }[];
  requestApproval: { runId: string; taskToken: string; checkpoint: unknown; windowSeconds: number }[];
  raisePullRequest: Record<string, unknown>[];
  finalize: Record<string, unknown>[];
}

const scenarios = new Map<string, Scenario>();
const received = new Map<string, Received>();

const STACK_TASK_DEFINITION = 'arn:aws:ecs:us-east-1:000000000000:task-definition/pod:1';
const launchFor = (runId: string, overrides: Partial<Launch> = {}): Launch => ({
  taskDefinition: STACK_TASK_DEFINITION,
  cpu: '1024',
  memory: '2048',
  environment: [
    { Name: 'RUN_ID', Value: runId },
    { Name: 'AGENT_API_URL', Value: 'http://127.0.0.1:9/agent' },
  ],
  maxDurationSeconds: 3600,
  heartbeatSeconds: 60,
  approvalWindowSeconds: 86_400,
  ...overrides,
});
const passed = (runId: string, launch: Partial<Launch> = {}): ChecksResult => ({
  ok: true,
  exitReason: null,
  message: null,
  launch: launchFor(runId, launch),
});
const taskArnOf = (runId: string) => `arn:aws:ecs:us-east-1:000000000000:task/runs/${runId}`;

const take = <T>(queue: T[], what: string): T => {
  const next = queue.shift();
  if (next === undefined) throw new Error(`the scenario has no more ${what}`);
  return next;
};

const roleOf = (functionArn: string) =>
  functionArn.split(':').at(-1) as
    | 'checks'
    | 'markRetrying'
    | 'parkPod'
    | 'requestApproval'
    | 'raisePullRequest'
    | 'finalize';

let emulator: StepFunctionsEmulator;
let client: SFNClient;
let stateMachineArn: string;

beforeAll(async () => {
  emulator = await startStepFunctionsEmulator({
    port: 0,
    resources: {
      invokeLambda: async (functionArn, payload) => {
        const { runId } = payload as { runId: string };
        const scenario = scenarios.get(runId);
        const log = received.get(runId);
        if (!scenario || !log) throw new Error(`unknown run ${runId}`);
        const role = roleOf(functionArn);
        (log[role] as unknown[]).push(payload);
        switch (role) {
          case 'checks':
            return Array.isArray(scenario.checks) ? take(scenario.checks, 'Checks answers') : scenario.checks;
          case 'markRetrying':
            return take(scenario.retries, 'MarkRetrying answers');
          case 'parkPod':
            return { parked: true };
          case 'requestApproval':
            return { approvalId: 'approval-1', notified: 1 };
          case 'raisePullRequest':
            if (scenario.pullRequests instanceof Error) throw scenario.pullRequests;
            return { pullRequests: scenario.pullRequests ?? [] };
          case 'finalize':
            return { status: 'FINALIZED' };
        }
      },
      runEcsTask: async (parameters) => {
        const runId = parameters.StartedBy as string;
        const scenario = scenarios.get(runId);
        received.get(runId)?.ecs.push(parameters);
        switch (take(scenario?.launches ?? [], 'launches')) {
          case 'started':
            return { Tasks: [{ TaskArn: taskArnOf(runId), LastStatus: 'PROVISIONING' }], Failures: [] };
          case 'noCapacity':
            return {
              Tasks: [],
              Failures: [{ Arn: taskArnOf(runId), Reason: 'Capacity is unavailable at this time' }],
            };
          case 'ecsException':
            throw Object.assign(new Error('Rate exceeded'), { name: 'ECS.AmazonECSException' });
          case 'throttled':
            throw Object.assign(new Error('Rate exceeded'), { name: 'ECS.ThrottlingException' });
        }
      },
    },
  });
  client = sfnClient(emulator.url);
  ({ stateMachineArn = '' } = await client.send(
    new CreateStateMachineCommand({
      name: 'run',
      definition: renderDefinition(substitutions),
      roleArn: 'arn:aws:iam::000000000000:role/run',
    }),
  ));
});

afterAll(async () => {
  client.destroy();
  await emulator.close();
});

const startRun = async (runId: string, scenario: Scenario) => {
  scenarios.set(runId, scenario);
  const log: Received = {
    checks: [],
    ecs: [],
    markRetrying: [],
    parkPod: [],
    requestApproval: [],
    raisePullRequest: [],
    finalize: [],
  };
  received.set(runId, log);
  const { executionArn = '' } = await client.send(
    new StartExecutionCommand({ stateMachineArn, name: runId, input: JSON.stringify({ runId }) }),
  );
  return { executionArn, log };
};

/** The pod wait's parked call, once the execution has reached it. */
const parked = (log: Received) => eventually(() => log.parkPod[0]);

/** Runs to the end and returns the single payload Finalize received. */
const finalized = async (executionArn: string, log: Received, timeoutMs?: number) => {
  const execution = await finished(client, executionArn, timeoutMs);
  expect(execution.status).toBe('SUCCEEDED');
  expect(JSON.parse(execution.output ?? '{}').final).toEqual({ status: 'FINALIZED' });
  expect(log.finalize).toHaveLength(1);
  return log.finalize[0] as Record<string, unknown>;
};

const HAPPY_PATH = [
  'Checks',
  'ChecksPassed',
  'Launch',
  'Launched',
  'WaitForPod',
  'PodOutcome',
  'RaisePullRequest',
  'Finalize',
];
/** A failed pod result: no pull request to raise. */
const POD_FAILED_PATH = HAPPY_PATH.filter((state) => state !== 'RaisePullRequest');
const PULL_REQUEST = 'https://github.com/acme/app/pull/7';
/** The pod wait ended by an error: its Catch goes straight to Finalize. */
const CAUGHT_PATH = ['Checks', 'ChecksPassed', 'Launch', 'Launched', 'WaitForPod', 'Finalize'];

describe('run state machine', () => {
  it('launches the pod, parks a task token, raises the pull request and finalizes with the pod result on success', async () => {
    const runId = 'run_success';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['started'],
      retries: [],
      pullRequests: [PULL_REQUEST],
    });
    const park = await parked(log);
    expect(park).toEqual({ runId, taskArn: taskArnOf(runId), taskToken: expect.any(String) });
    expect(log.checks).toEqual([{ runId }]);
    expect(log.ecs).toEqual([
      {
        Cluster: substitutions.ClusterArn,
        TaskDefinition: STACK_TASK_DEFINITION,
        LaunchType: 'FARGATE',
        StartedBy: runId,
        NetworkConfiguration: {
          AwsvpcConfiguration: {
            Subnets: ['subnet-a', 'subnet-b'],
            SecurityGroups: ['sg-pod'],
            AssignPublicIp: 'DISABLED',
          },
        },
        Overrides: {
          Cpu: '1024',
          Memory: '2048',
          ContainerOverrides: [{ Name: 'pod', Environment: launchFor(runId).environment }],
        },
      },
    ]);

    await client.send(
      new SendTaskSuccessCommand({
        taskToken: park.taskToken,
        output: JSON.stringify({ outcome: 'completed' }),
      }),
    );
    const finalize = await finalized(executionArn, log);
    expect(finalize).toEqual({
      runId,
      checks: passed(runId),
      launch: { tasks: [{ TaskArn: taskArnOf(runId), LastStatus: 'PROVISIONING' }], failures: [] },
      pod: { outcome: 'completed' },
      pullRequests: { pullRequests: [PULL_REQUEST] },
    });
    expect(log.raisePullRequest).toEqual([{ runId }]);
    expect(await statesEntered(client, executionArn)).toEqual(HAPPY_PATH);
    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    const podWait = events.find(
      (event) =>
        event.type === 'TaskScheduled' &&
        event.taskScheduledEventDetails?.resource === 'invoke.waitForTaskToken',
    );
    expect(podWait?.taskScheduledEventDetails).toMatchObject({
      heartbeatInSeconds: 60,
      timeoutInSeconds: 3600,
    });
  });

  it('launches the task definition Checks chose, on every attempt: a pod’s own carries its image and secrets', async () => {
    const runId = 'run_own_task_definition';
    const own = 'arn:aws:ecs:us-east-1:000000000000:task-definition/pod-pod-acct-1-pod-1-0123456789abcdef:4';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId, { taskDefinition: own }),
      launches: ['noCapacity', 'started'],
      retries: [{ retry: true, waitSeconds: 0, attempt: 2 }],
    });
    const { taskToken } = await parked(log);
    await client.send(
      new SendTaskSuccessCommand({ taskToken, output: JSON.stringify({ outcome: 'completed' }) }),
    );
    await finalized(executionArn, log);

    expect(log.ecs.map((parameters) => parameters.TaskDefinition)).toEqual([own, own]);
    // only the environment Checks chose is overridden: no secret reaches the launch's parameters
    expect(log.ecs[0]?.Overrides).toEqual({
      Cpu: '1024',
      Memory: '2048',
      ContainerOverrides: [{ Name: 'pod', Environment: launchFor(runId).environment }],
    });
  });

  it('finalizes with the error when the pull request cannot be opened after its retries', async () => {
    const runId = 'run_pull_request_fails';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['started'],
      retries: [],
      pullRequests: Object.assign(new Error('GitHub could not be reached to open the pull request'), {
        name: 'ServiceUnavailableError',
      }),
    });
    const { taskToken } = await parked(log);
    await client.send(
      new SendTaskSuccessCommand({ taskToken, output: JSON.stringify({ outcome: 'completed' }) }),
    );
    // three attempts, 2 s then 6 s apart
    const finalize = await finalized(executionArn, log, 15_000);
    expect(log.raisePullRequest).toHaveLength(3);
    expect(finalize).toMatchObject({
      pod: { outcome: 'completed' },
      error: {
        Error: 'ServiceUnavailableError',
        Cause: expect.stringContaining('GitHub could not be reached'),
      },
    });
    expect(await statesEntered(client, executionArn)).toEqual(HAPPY_PATH);
  }, 30_000);

  it('hands a failed pod result with its exit reason to Finalize', async () => {
    const runId = 'run_pod_failed';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['started'],
      retries: [],
    });
    const { taskToken } = await parked(log);
    const result = { outcome: 'failed', exitReason: 'tool_call_failed' };
    await client.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(result) }));
    const finalize = await finalized(executionArn, log);
    expect(finalize.pod).toEqual(result);
    expect(finalize.error).toBeUndefined();
    expect(await statesEntered(client, executionArn)).toEqual(POD_FAILED_PATH);
  });

  it('finalizes with States.HeartbeatTimeout when the pod stops heartbeating', async () => {
    const runId = 'run_silent_pod';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId, { heartbeatSeconds: 1 }),
      launches: ['started'],
      retries: [],
    });
    await parked(log);
    const finalize = await finalized(executionArn, log);
    expect(finalize.error).toMatchObject({ Error: 'States.HeartbeatTimeout' });
    expect(finalize.pod).toBeUndefined();
    expect(await statesEntered(client, executionArn)).toEqual(CAUGHT_PATH);
  });

  it('marks the run retrying after a capacity failure, backs off and launches again', async () => {
    const runId = 'run_capacity_retry';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['noCapacity', 'started'],
      retries: [{ retry: true, waitSeconds: 0, attempt: 2 }],
    });
    const { taskToken } = await parked(log);
    await client.send(
      new SendTaskSuccessCommand({ taskToken, output: JSON.stringify({ outcome: 'completed' }) }),
    );
    const finalize = await finalized(executionArn, log);

    expect(log.markRetrying).toHaveLength(1);
    expect(log.markRetrying[0]).toMatchObject({
      runId,
      launch: { tasks: [], failures: [{ Reason: 'Capacity is unavailable at this time' }] },
    });
    expect(log.ecs).toHaveLength(2);
    expect(finalize).toMatchObject({
      retry: { retry: true, waitSeconds: 0, attempt: 2 },
      launch: { tasks: [{ TaskArn: taskArnOf(runId) }], failures: [] },
      pod: { outcome: 'completed' },
    });
    expect(await statesEntered(client, executionArn)).toEqual([
      'Checks',
      'ChecksPassed',
      'Launch',
      'Launched',
      'LaunchFailed',
      'RetryLaunch',
      'Backoff',
      'Checks',
      'ChecksPassed',
      'Launch',
      'Launched',
      'WaitForPod',
      'PodOutcome',
      'RaisePullRequest',
      'Finalize',
    ]);
    expect(log.checks).toHaveLength(2);
  });

  it('launches nothing when the run was stopped during the back-off: Checks run again first', async () => {
    const runId = 'run_stopped_in_backoff';
    const stopped: ChecksResult = {
      ok: false,
      exitReason: 'cancelled',
      message: 'the run is STOPPED',
      launch: null,
    };
    const { executionArn, log } = await startRun(runId, {
      checks: [passed(runId), stopped],
      launches: ['noCapacity'],
      retries: [{ retry: true, waitSeconds: 0, attempt: 2 }],
    });
    const finalize = await finalized(executionArn, log);
    expect(log.ecs).toHaveLength(1);
    expect(log.parkPod).toEqual([]);
    expect(finalize.checks).toEqual(stopped);
    expect((await statesEntered(client, executionArn)).slice(-5)).toEqual([
      'RetryLaunch',
      'Backoff',
      'Checks',
      'ChecksPassed',
      'Finalize',
    ]);
  });

  it('gives up and finalizes when capacity stays exhausted', async () => {
    const runId = 'run_capacity_exhausted';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['noCapacity'],
      retries: [{ retry: false, waitSeconds: 0, attempt: 3 }],
    });
    const finalize = await finalized(executionArn, log);
    expect(finalize.retry).toEqual({ retry: false, waitSeconds: 0, attempt: 3 });
    expect(log.parkPod).toEqual([]);
    expect(await statesEntered(client, executionArn)).toEqual([
      'Checks',
      'ChecksPassed',
      'Launch',
      'Launched',
      'LaunchFailed',
      'RetryLaunch',
      'Finalize',
    ]);
  });

  it('retries a throttled launch in Launch itself, spending none of the run’s launch attempts', async () => {
    const runId = 'run_launch_throttled';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['throttled', 'throttled', 'started'],
      retries: [],
    });
    const { taskToken } = await parked(log);
    await client.send(
      new SendTaskSuccessCommand({ taskToken, output: JSON.stringify({ outcome: 'completed' }) }),
    );
    const finalize = await finalized(executionArn, log);

    expect(log.ecs).toHaveLength(3);
    expect(log.markRetrying).toEqual([]);
    expect(finalize.launchError).toBeUndefined();
    expect(finalize).toMatchObject({
      launch: { tasks: [{ TaskArn: taskArnOf(runId) }] },
      pod: { outcome: 'completed' },
    });
    expect(await statesEntered(client, executionArn)).toEqual(HAPPY_PATH);
  });

  it('sends an ECS exception to LaunchFailed with the error under $.launchError', async () => {
    const runId = 'run_ecs_exception';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['ecsException'],
      retries: [{ retry: false, waitSeconds: 0, attempt: 3 }],
    });
    const finalize = await finalized(executionArn, log);
    const launchError = { Error: 'ECS.AmazonECSException', Cause: 'Rate exceeded' };
    expect(log.markRetrying[0]).toMatchObject({ runId, launchError });
    expect(finalize).toMatchObject({ launchError, retry: { retry: false } });
    expect(await statesEntered(client, executionArn)).toEqual([
      'Checks',
      'ChecksPassed',
      'Launch',
      'LaunchFailed',
      'RetryLaunch',
      'Finalize',
    ]);
  });

  it('finalizes without launching when the checks fail', async () => {
    const runId = 'run_checks_failed';
    const checks = { ok: false, exitReason: 'payment_required', message: 'account suspended', launch: null };
    const { executionArn, log } = await startRun(runId, { checks, launches: [], retries: [] });
    const finalize = await finalized(executionArn, log);
    expect(finalize).toEqual({ runId, checks });
    expect(log.ecs).toEqual([]);
    expect(await statesEntered(client, executionArn)).toEqual(['Checks', 'ChecksPassed', 'Finalize']);
  });

  it('finalizes with Run.Stopped when the pod wait is failed by a stop', async () => {
    const runId = 'run_stopped';
    const { executionArn, log } = await startRun(runId, {
      checks: passed(runId),
      launches: ['started'],
      retries: [],
    });
    const { taskToken } = await parked(log);
    await client.send(
      new SendTaskFailureCommand({ taskToken, error: 'Run.Stopped', cause: 'stopped by a user' }),
    );
    const finalize = await finalized(executionArn, log);
    expect(finalize.error).toEqual({ Error: 'Run.Stopped', Cause: 'stopped by a user' });
    expect(finalize.pod).toBeUndefined();
    expect(await statesEntered(client, executionArn)).toEqual(CAUGHT_PATH);
  });
});

describe('run state machine, supervised', () => {
  const checkpoint = { outcome: 'checkpoint', checkpoint: { seq: 7, name: 'plan' } };
  const decision = (value: 'approved' | 'cancelled', podSecondsLeft = 1800) => ({
    approvalId: 'approval-1',
    seq: 7,
    name: 'plan',
    summary: 'Plan: 3 steps',
    requestedAt: '2026-01-01T00:00:00.000Z',
    decision: value,
    at: '2026-01-01T00:05:00.000Z',
    by: 'alice',
    via: 'email_link',
    podSecondsLeft,
  });
  const TO_APPROVAL = [...POD_FAILED_PATH.slice(0, -1), 'RequestApproval'];

  /** Runs to the approval wait: the pod wait ends with a checkpoint signal. */
  const atApproval = async (runId: string, launch: Partial<Launch> = {}) => {
    const started = await startRun(runId, {
      checks: passed(runId, launch),
      launches: ['started'],
      retries: [],
    });
    const { taskToken } = await parked(started.log);
    await client.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(checkpoint) }));
    const request = await eventually(() => started.log.requestApproval[0]);
    return { ...started, request };
  };

  const scheduled = async (executionArn: string, functionName: string) => {
    const { events = [] } = await client.send(
      new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
    );
    return events.flatMap((event) => {
      const details = event.taskScheduledEventDetails;
      return details && JSON.parse(details.parameters ?? '{}').FunctionName === fn(functionName)
        ? [details]
        : [];
    });
  };

  it('asks for approval at a checkpoint, resumes the pod with a fresh token when approved, and completes', async () => {
    const runId = 'run_supervised_approved';
    const { executionArn, log, request } = await atApproval(runId, {
      maxDurationSeconds: 3600,
      approvalWindowSeconds: 600,
    });
    expect(request).toEqual({
      runId,
      checkpoint: checkpoint.checkpoint,
      windowSeconds: 600,
      maxDurationSeconds: 3600,
      taskToken: expect.any(String),
    });
    const [approvalWait] = await scheduled(executionArn, 'requestApproval');
    expect(approvalWait).toMatchObject({ resource: 'invoke.waitForTaskToken', timeoutInSeconds: 600 });

    await client.send(
      new SendTaskSuccessCommand({
        taskToken: request.taskToken,
        output: JSON.stringify(decision('approved')),
      }),
    );
    const resumed = await eventually(() => log.parkPod[1]);
    expect(resumed).toEqual({
      runId,
      taskArn: taskArnOf(runId),
      approval: decision('approved'),
      taskToken: expect.any(String),
    });
    expect(resumed.taskToken).not.toBe(log.parkPod[0]?.taskToken);
    // The resumed wait has what is left of the pod's maximum duration, and the pod's heartbeat.
    const [, resumedWait] = await scheduled(executionArn, 'parkPod');
    expect(resumedWait).toMatchObject({ timeoutInSeconds: 1800, heartbeatInSeconds: 60 });

    await client.send(
      new SendTaskSuccessCommand({
        taskToken: resumed.taskToken,
        output: JSON.stringify({ outcome: 'completed' }),
      }),
    );
    const finalize = await finalized(executionArn, log);
    expect(finalize).toMatchObject({ pod: { outcome: 'completed' }, approval: decision('approved') });
    expect(finalize.error).toBeUndefined();
    expect(await statesEntered(client, executionArn)).toEqual([
      ...TO_APPROVAL,
      'ApprovalDecision',
      'ResumePod',
      'PodOutcome',
      'RaisePullRequest',
      'Finalize',
    ]);
  });

  it('goes back to an approval at the next checkpoint after a resume', async () => {
    const runId = 'run_supervised_two_checkpoints';
    const { log, request } = await atApproval(runId);
    await client.send(
      new SendTaskSuccessCommand({
        taskToken: request.taskToken,
        output: JSON.stringify(decision('approved')),
      }),
    );
    const resumed = await eventually(() => log.parkPod[1]);
    const second = { outcome: 'checkpoint', checkpoint: { seq: 12, name: 'commit' } };
    await client.send(
      new SendTaskSuccessCommand({ taskToken: resumed.taskToken, output: JSON.stringify(second) }),
    );
    const again = await eventually(() => log.requestApproval[1]);
    expect(again.checkpoint).toEqual(second.checkpoint);
    expect(again.taskToken).not.toBe(request.taskToken);
  });

  it('finalizes with the cancellation and never resumes the pod when cancelled', async () => {
    const runId = 'run_supervised_cancelled';
    const { executionArn, log, request } = await atApproval(runId);
    await client.send(
      new SendTaskSuccessCommand({
        taskToken: request.taskToken,
        output: JSON.stringify(decision('cancelled')),
      }),
    );
    const finalize = await finalized(executionArn, log);
    expect(finalize).toMatchObject({ pod: checkpoint, approval: decision('cancelled') });
    expect(log.parkPod).toHaveLength(1);
    expect(await statesEntered(client, executionArn)).toEqual([
      ...TO_APPROVAL,
      'ApprovalDecision',
      'Finalize',
    ]);
  });

  it('names an approval window that passed Approval.Expired, apart from the pod timeout', async () => {
    const runId = 'run_supervised_expired';
    const { executionArn, log } = await atApproval(runId, { approvalWindowSeconds: 1 });
    const finalize = await finalized(executionArn, log);
    expect(finalize.error).toEqual({
      Error: 'Approval.Expired',
      Cause: 'no decision was made within the approval window',
    });
    expect(finalize.approval).toBeUndefined();
    expect(log.parkPod).toHaveLength(1);
    expect(await statesEntered(client, executionArn)).toEqual([
      ...TO_APPROVAL,
      'ApprovalExpired',
      'Finalize',
    ]);
  });

  it('finalizes with the failure when a stop fails the approval wait', async () => {
    const runId = 'run_supervised_stopped';
    const { executionArn, log, request } = await atApproval(runId);
    await client.send(
      new SendTaskFailureCommand({
        taskToken: request.taskToken,
        error: 'Run.Stopped',
        cause: 'stopped by a user',
      }),
    );
    const finalize = await finalized(executionArn, log);
    expect(finalize.error).toEqual({ Error: 'Run.Stopped', Cause: 'stopped by a user' });
    expect(await statesEntered(client, executionArn)).toEqual([...TO_APPROVAL, 'Finalize']);
  });
});
