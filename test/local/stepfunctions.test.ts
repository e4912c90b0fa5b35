import { ECSClient, InvalidParameterException, RunTaskCommand } from '@aws-sdk/client-ecs';
import {
  CreateStateMachineCommand,
  DescribeExecutionCommand,
  DescribeStateMachineCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  ListStateMachinesCommand,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  UpdateStateMachineCommand,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ExecutionStatusChangeEvent,
  ecsRunTaskResource,
  LambdaFunctionError,
  type StepFunctionsEmulator,
  startStepFunctionsEmulator,
} from '../../infra/local/emulators/stepfunctions.js';
import { eventually, finished, sfnClient, statesEntered } from '../statemachine/support/executions.js';

/** Pass → Choice → a callback Task whose timers come from the input, or a Task whose function throws. */
const definition = JSON.stringify({
  StartAt: 'Prepare',
  States: {
    Prepare: { Type: 'Pass', Result: 'ready', ResultPath: '$.prepared', Next: 'Route' },
    Route: {
      Type: 'Choice',
      Choices: [{ Variable: '$.explode', BooleanEquals: true, Next: 'Explode' }],
      Default: 'Work',
    },
    Explode: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke',
      Parameters: { FunctionName: 'explode', 'Payload.$': '$' },
      End: true,
    },
    Work: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
      Parameters: { FunctionName: 'worker', Payload: { 'job.$': '$.job', 'token.$': '$$.Task.Token' } },
      HeartbeatSecondsPath: '$.heartbeatSeconds',
      TimeoutSecondsPath: '$.timeoutSeconds',
      ResultPath: '$.result',
      End: true,
    },
  },
});

let emulator: StepFunctionsEmulator;
let client: SFNClient;
let stateMachineArn: string;
const workerCalls: { job: string; token: string }[] = [];
const statusEvents: ExecutionStatusChangeEvent[] = [];

const start = async (job: string, input: Record<string, unknown> = {}) => {
  const { executionArn } = await client.send(
    new StartExecutionCommand({
      stateMachineArn,
      name: job,
      input: JSON.stringify({ job, explode: false, heartbeatSeconds: 60, timeoutSeconds: 60, ...input }),
    }),
  );
  return executionArn as string;
};

/** The task token the worker function received for `job`. */
const tokenOf = (job: string) => eventually(() => workerCalls.find((call) => call.job === job)?.token);

const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: Error) => err.name,
  );

beforeAll(async () => {
  emulator = await startStepFunctionsEmulator({
    port: 0,
    resources: {
      invokeLambda: async (functionName, payload) => {
        if (functionName === 'explode') throw new LambdaFunctionError('ValidationError', 'bad input');
        workerCalls.push(payload as { job: string; token: string });
        return { parked: true };
      },
      runEcsTask: async () => ({ Tasks: [], Failures: [] }),
    },
    onExecutionStatusChange: (event) => statusEvents.push(event),
  });
  client = sfnClient(emulator.url);
  ({ stateMachineArn = '' } = await client.send(
    new CreateStateMachineCommand({
      name: 'conformance',
      definition,
      roleArn: 'arn:aws:iam::000000000000:role/sfn',
    }),
  ));
});

afterAll(async () => {
  client.destroy();
  await emulator.close();
});

describe('state machines', () => {
  it('creates, describes, lists and updates a state machine by its ARN', async () => {
    expect(stateMachineArn).toBe('arn:aws:states:us-east-1:000000000000:stateMachine:conformance');
    const described = await client.send(new DescribeStateMachineCommand({ stateMachineArn }));
    expect(described).toMatchObject({ name: 'conformance', definition, type: 'STANDARD', status: 'ACTIVE' });
    expect(described.creationDate).toBeInstanceOf(Date);
    const { stateMachines = [] } = await client.send(new ListStateMachinesCommand({}));
    expect(stateMachines.map((sm) => sm.name)).toContain('conformance');

    const { stateMachineArn: otherArn } = await client.send(
      new CreateStateMachineCommand({
        name: 'other',
        definition,
        roleArn: 'arn:aws:iam::000000000000:role/sfn',
      }),
    );
    const updated = JSON.stringify({ StartAt: 'Done', States: { Done: { Type: 'Succeed' } } });
    await client.send(new UpdateStateMachineCommand({ stateMachineArn: otherArn, definition: updated }));
    expect(
      (await client.send(new DescribeStateMachineCommand({ stateMachineArn: otherArn }))).definition,
    ).toBe(updated);
  });

  it('refuses a definition it cannot run with InvalidDefinition', async () => {
    const unsupported = JSON.stringify({
      StartAt: 'Q',
      States: { Q: { Type: 'Task', Resource: 'arn:aws:states:::sqs:sendMessage', End: true } },
    });
    await expect(
      rejection(
        client.send(new CreateStateMachineCommand({ name: 'sqs', definition: unsupported, roleArn: 'r' })),
      ),
    ).resolves.toBe('InvalidDefinition');
    await expect(
      rejection(
        client.send(
          new CreateStateMachineCommand({ name: 'broken', definition: '{"StartAt":', roleArn: 'r' }),
        ),
      ),
    ).resolves.toBe('InvalidDefinition');
  });
});

describe('executions', () => {
  it('runs to SUCCEEDED when the task token is settled, with history and status events', async () => {
    const executionArn = await start('happy');
    expect(executionArn).toBe('arn:aws:states:us-east-1:000000000000:execution:conformance:happy');
    const token = await tokenOf('happy');
    expect(token.length).toBeLessThan(1024);
    const running = await client.send(new DescribeExecutionCommand({ executionArn }));
    expect(running).toMatchObject({ status: 'RUNNING', name: 'happy', stateMachineArn });
    expect(running.startDate).toBeInstanceOf(Date);

    await client.send(
      new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ done: true }) }),
    );
    const execution = await finished(client, executionArn);
    expect(execution.status).toBe('SUCCEEDED');
    expect(execution.stopDate).toBeInstanceOf(Date);
    expect(JSON.parse(execution.output ?? '')).toEqual({
      job: 'happy',
      explode: false,
      heartbeatSeconds: 60,
      timeoutSeconds: 60,
      prepared: 'ready',
      result: { done: true },
    });

    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.map((event) => event.type)).toEqual([
      'ExecutionStarted',
      'PassStateEntered',
      'PassStateExited',
      'ChoiceStateEntered',
      'ChoiceStateExited',
      'TaskStateEntered',
      'TaskScheduled',
      'TaskStarted',
      'TaskSubmitted',
      'TaskSucceeded',
      'TaskStateExited',
      'ExecutionSucceeded',
    ]);
    expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1));
    expect(events.every((event) => event.timestamp instanceof Date)).toBe(true);
    const scheduled = events.find((event) => event.type === 'TaskScheduled')?.taskScheduledEventDetails;
    expect(scheduled).toMatchObject({ resourceType: 'lambda', resource: 'invoke.waitForTaskToken' });
    expect(scheduled).toMatchObject({ heartbeatInSeconds: 60, timeoutInSeconds: 60 });

    const reversed = await client.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true }));
    expect(reversed.events?.map((event) => event.id)).toEqual(events.map((event) => event.id).reverse());

    const mine = statusEvents.filter((event) => event.detail.executionArn === executionArn);
    expect(mine.map((event) => event.detail.status)).toEqual(['RUNNING', 'SUCCEEDED']);
    expect(mine[1]).toMatchObject({
      source: 'aws.states',
      'detail-type': 'Step Functions Execution Status Change',
      resources: [executionArn],
      detail: { stateMachineArn, name: 'happy', output: execution.output, error: null },
    });
  });

  it('answers a repeated start of a running execution with the same ARN, and ExecutionAlreadyExists otherwise', async () => {
    const executionArn = await start('twice');
    expect(await start('twice')).toBe(executionArn);
    await expect(rejection(start('twice', { other: true }))).resolves.toBe('ExecutionAlreadyExists');

    await client.send(new SendTaskSuccessCommand({ taskToken: await tokenOf('twice'), output: '{}' }));
    await finished(client, executionArn);
    await expect(rejection(start('twice'))).resolves.toBe('ExecutionAlreadyExists');
  });

  it('fails the execution with the error and cause of SendTaskFailure, after which the token is closed', async () => {
    const executionArn = await start('refused');
    const taskToken = await tokenOf('refused');
    await client.send(new SendTaskFailureCommand({ taskToken, error: 'Job.Refused', cause: 'no capacity' }));
    expect(await finished(client, executionArn)).toMatchObject({
      status: 'FAILED',
      error: 'Job.Refused',
      cause: 'no capacity',
    });
    await expect(
      rejection(client.send(new SendTaskSuccessCommand({ taskToken, output: '{}' }))),
    ).resolves.toBe('TaskTimedOut');
  });

  it('surfaces a function error under its errorType with the Lambda-shaped cause', async () => {
    const executionArn = await start('explode', { explode: true });
    const execution = await finished(client, executionArn);
    expect(execution).toMatchObject({ status: 'FAILED', error: 'ValidationError' });
    expect(JSON.parse(execution.cause ?? '')).toEqual({
      errorType: 'ValidationError',
      errorMessage: 'bad input',
    });
  });

  it('keeps a task alive while heartbeats arrive within HeartbeatSeconds', async () => {
    const executionArn = await start('beating', { heartbeatSeconds: 1 });
    const taskToken = await tokenOf('beating');
    for (let beat = 0; beat < 4; beat++) {
      await new Promise((resolve) => setTimeout(resolve, 400));
      await client.send(new SendTaskHeartbeatCommand({ taskToken }));
    }
    await client.send(new SendTaskSuccessCommand({ taskToken, output: '"alive"' }));
    expect((await finished(client, executionArn)).status).toBe('SUCCEEDED');
  });

  it('times the task out with States.HeartbeatTimeout when heartbeats stop, then answers TaskTimedOut', async () => {
    const started = Date.now();
    const executionArn = await start('silent', { heartbeatSeconds: 1 });
    const taskToken = await tokenOf('silent');
    const execution = await finished(client, executionArn);
    expect(execution).toMatchObject({ status: 'FAILED', error: 'States.HeartbeatTimeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.find((event) => event.type === 'TaskTimedOut')?.taskTimedOutEventDetails?.error).toBe(
      'States.HeartbeatTimeout',
    );
    await expect(rejection(client.send(new SendTaskHeartbeatCommand({ taskToken })))).resolves.toBe(
      'TaskTimedOut',
    );
    await expect(
      rejection(client.send(new SendTaskSuccessCommand({ taskToken, output: '{}' }))),
    ).resolves.toBe('TaskTimedOut');
  });

  it('times the task out with States.Timeout after TimeoutSecondsPath, read from the state input', async () => {
    const executionArn = await start('slow', { timeoutSeconds: 1 });
    expect(await finished(client, executionArn)).toMatchObject({ status: 'FAILED', error: 'States.Timeout' });
  });

  it('holds a timeout longer than setTimeout allows instead of firing it at once', async () => {
    const executionArn = await start('patient', { timeoutSeconds: 3_000_000, heartbeatSeconds: 3_000_000 });
    const taskToken = await tokenOf('patient');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await client.send(new DescribeExecutionCommand({ executionArn }))).status).toBe('RUNNING');
    await client.send(new SendTaskSuccessCommand({ taskToken, output: '{}' }));
    expect((await finished(client, executionArn)).status).toBe('SUCCEEDED');
  });

  it('ends an execution past its TimeoutSeconds as TIMED_OUT', async () => {
    const timed = JSON.stringify({ TimeoutSeconds: 1, ...JSON.parse(definition) });
    const arn = emulator.createStateMachine({ name: 'timed', definition: timed });
    const { executionArn = '' } = await client.send(
      new StartExecutionCommand({
        stateMachineArn: arn,
        input: JSON.stringify({ job: 'timed', explode: false, heartbeatSeconds: 60, timeoutSeconds: 60 }),
      }),
    );
    const taskToken = await tokenOf('timed');
    expect(await finished(client, executionArn)).toMatchObject({
      status: 'TIMED_OUT',
      error: 'States.Timeout',
    });
    const statuses = statusEvents.filter((event) => event.detail.executionArn === executionArn);
    expect(statuses.map((event) => event.detail.status)).toEqual(['RUNNING', 'TIMED_OUT']);
    await expect(
      rejection(client.send(new SendTaskSuccessCommand({ taskToken, output: '{}' }))),
    ).resolves.toBe('TaskTimedOut');
  });

  it('aborts on StopExecution, drops the task wait and emits ABORTED', async () => {
    const executionArn = await start('stopped');
    const taskToken = await tokenOf('stopped');
    await client.send(
      new StopExecutionCommand({ executionArn, error: 'User.Stop', cause: 'changed my mind' }),
    );
    expect(await client.send(new DescribeExecutionCommand({ executionArn }))).toMatchObject({
      status: 'ABORTED',
      error: 'User.Stop',
      cause: 'changed my mind',
    });
    await expect(
      rejection(client.send(new SendTaskSuccessCommand({ taskToken, output: '{}' }))),
    ).resolves.toBe('TaskTimedOut');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.at(-1)?.type).toBe('ExecutionAborted');
    expect(events.some((event) => event.type === 'TaskStateExited')).toBe(false);
    const statuses = statusEvents.filter((event) => event.detail.executionArn === executionArn);
    expect(statuses.map((event) => event.detail.status)).toEqual(['RUNNING', 'ABORTED']);
  });

  it('answers tokens it never issued with TaskDoesNotExist, and malformed ones with InvalidToken', async () => {
    await expect(
      rejection(client.send(new SendTaskSuccessCommand({ taskToken: 'never-issued', output: '{}' }))),
    ).resolves.toBe('TaskDoesNotExist');
    await expect(
      rejection(client.send(new SendTaskHeartbeatCommand({ taskToken: 'x'.repeat(1025) }))),
    ).resolves.toBe('InvalidToken');
  });

  it('answers unknown executions with ExecutionDoesNotExist', async () => {
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:nobody`;
    await expect(rejection(client.send(new DescribeExecutionCommand({ executionArn })))).resolves.toBe(
      'ExecutionDoesNotExist',
    );
  });

  it('lists executions newest first, filtered by status, a page at a time', async () => {
    const first = await start('list-a');
    const second = await start('list-b');
    const page1 = await client.send(
      new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING', maxResults: 1 }),
    );
    expect(page1.executions?.map((e) => e.executionArn)).toEqual([second]);
    const page2 = await client.send(
      new ListExecutionsCommand({
        stateMachineArn,
        statusFilter: 'RUNNING',
        maxResults: 1,
        nextToken: page1.nextToken,
      }),
    );
    expect(page2.executions?.map((e) => e.executionArn)).toEqual([first]);
    const succeeded = await client.send(
      new ListExecutionsCommand({ stateMachineArn, statusFilter: 'SUCCEEDED' }),
    );
    expect(succeeded.executions?.map((e) => e.name)).toContain('happy');
    expect(succeeded.executions?.every((e) => e.status === 'SUCCEEDED')).toBe(true);
    for (const executionArn of [first, second]) await client.send(new StopExecutionCommand({ executionArn }));
  });

  it('records the Choice branch taken', async () => {
    const executionArn = await start('visited');
    await tokenOf('visited');
    await client.send(new StopExecutionCommand({ executionArn }));
    expect(await statesEntered(client, executionArn)).toEqual(['Prepare', 'Route', 'Work']);
  });
});

describe('fault injection', () => {
  it('fails matching StartExecution calls with the injected error as many times as asked', async () => {
    const response = await fetch(`${emulator.url}/_local/faults`, {
      method: 'POST',
      body: JSON.stringify({
        operation: 'StartExecution',
        namePrefix: 'flaky-',
        error: 'ServiceUnavailable',
        times: 2,
      }),
    });
    expect(response.status).toBe(200);
    const steady = await start('steady-1');
    expect(steady).toContain(':steady-1');
    await expect(rejection(start('flaky-1'))).resolves.toBe('ServiceUnavailable');
    await expect(rejection(start('flaky-1'))).resolves.toBe('ServiceUnavailable');
    expect(await start('flaky-1')).toContain(':flaky-1');
    for (const name of ['steady-1', 'flaky-1']) {
      await client.send(new StopExecutionCommand({ executionArn: steady.replace(':steady-1', `:${name}`) }));
    }
  });
});

describe('ecsRunTaskResource', () => {
  const ecs = new ECSClient({ region: 'us-east-1' });
  const ecsMock = mockClient(ecs);
  afterAll(() => ecsMock.restore());
  const runTask = ecsRunTaskResource(ecs);

  it('calls RunTask in the SDK shape and answers in the PascalCase shape of Step Functions', async () => {
    const createdAt = new Date('2030-01-02T03:04:05Z');
    ecsMock.on(RunTaskCommand).resolves({
      tasks: [{ taskArn: 'arn:task', lastStatus: 'PROVISIONING', createdAt, containers: [{ name: 'pod' }] }],
      failures: [],
    });
    const output = await runTask({
      Cluster: 'runs',
      StartedBy: 'run_1',
      Overrides: {
        Cpu: '1024',
        ContainerOverrides: [{ Name: 'pod', Environment: [{ Name: 'A', Value: 'b' }] }],
      },
    });
    expect(ecsMock.commandCalls(RunTaskCommand)[0]?.args[0].input).toEqual({
      cluster: 'runs',
      startedBy: 'run_1',
      overrides: {
        cpu: '1024',
        containerOverrides: [{ name: 'pod', environment: [{ name: 'A', value: 'b' }] }],
      },
    });
    expect(output).toEqual({
      Tasks: [
        {
          TaskArn: 'arn:task',
          LastStatus: 'PROVISIONING',
          CreatedAt: createdAt.getTime(),
          Containers: [{ Name: 'pod' }],
        },
      ],
      Failures: [],
    });
  });

  it('names ECS exceptions ECS.<ExceptionName>', async () => {
    ecsMock
      .on(RunTaskCommand)
      .rejects(new InvalidParameterException({ message: 'bad subnet', $metadata: {} }));
    await expect(runTask({ Cluster: 'runs' })).rejects.toMatchObject({
      name: 'ECS.InvalidParameterException',
      message: 'bad subnet',
    });
  });
});
