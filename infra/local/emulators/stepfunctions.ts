import { randomBytes, randomUUID } from 'node:crypto';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import {
  type ECSClient,
  ECSServiceException,
  RunTaskCommand,
  type RunTaskCommandInput,
} from '@aws-sdk/client-ecs';
import type { EventBridgeEvent } from 'aws-lambda';
import { ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { LambdaFunctionError } from '../lambda-runtime.js';
import { LogShipper } from '../log-shipper.js';
import { AwsError, type OperationHandler, sendJson, startJsonProtocolServer } from './json-protocol.js';

/**
 * Step Functions for the local cloud: the AWS JSON API (awsJson1_0, `AWSStepFunctions.<Operation>`)
 * over aws-local-stepfunctions, which interprets the ASL. What that package lacks is done here:
 * `$$.Task.Token` and the callback pattern, HeartbeatSeconds(Path), TimeoutSecondsPath read from the
 * state input, timers longer than 24.8 days, execution history, status-change events and
 * StopExecution that drops the pending task wait.
 */

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

const deferred = <T>(): Deferred<T> => {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

// aws-local-stepfunctions calls Promise.withResolvers, which Node 20 lacks.
const promiseStatics = Promise as unknown as { withResolvers?: () => Deferred<unknown> };
promiseStatics.withResolvers ??= deferred;

type JsonValue = Parameters<StateMachine['run']>[0];
type JsonObject = Record<string, unknown>;

/** How the local cloud carries out the Task states' service integrations. */
export interface TaskResources {
  /** arn:aws:states:::lambda:invoke — call the local function; throw LambdaFunctionError for a function error */
  invokeLambda(functionArnOrName: string, payload: unknown): Promise<unknown>;
  /** arn:aws:states:::ecs:runTask — call the ECS API; result in the PascalCase shape Step Functions returns (Tasks, Failures, TaskArn, ...); errors named `ECS.<ExceptionName>` */
  runEcsTask(parameters: Record<string, unknown>): Promise<unknown>;
}

/** The function itself failed: the Task fails with the function's error type, as on AWS. */
export { LambdaFunctionError };

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface ExecutionStatusChangeDetail {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  /** epoch milliseconds, as EventBridge carries them */
  startDate: number;
  stopDate: number | null;
  input: string;
  output: string | null;
  error: string | null;
  cause: string | null;
}

export type ExecutionStatusChangeEvent = EventBridgeEvent<
  'Step Functions Execution Status Change',
  ExecutionStatusChangeDetail
>;

export interface StepFunctionsEmulatorOptions {
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  resources: TaskResources;
  /** EventBridge "Step Functions Execution Status Change" events, for every status change */
  onExecutionStatusChange?: (event: ExecutionStatusChangeEvent) => void;
  /**
   * The executions' log (a logging configuration of level ALL with execution data): each history event
   * as a line of this group, in the form Step Functions delivers it to CloudWatch Logs.
   */
  logs?: { client: CloudWatchLogsClient; logGroupName: string };
}

export interface StepFunctionsEmulator {
  url: string;
  port: number;
  region: string;
  accountId: string;
  /** CreateStateMachine in process; returns the state machine ARN. */
  createStateMachine(input: { name: string; definition: string; roleArn?: string }): string;
  close(): Promise<void>;
}

/** setTimeout fires at once for delays above 2^31-1 ms; longer waits are clamped to that. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);
const timerMs = (seconds: number) => Math.min(seconds * 1000, MAX_TIMER_MS);
const epochSeconds = () => Date.now() / 1000;
const noop = () => {};
/** Let the library's event log catch up, so history entries land in the order they happened. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

const TASK_RESOURCE = /^arn:aws:states:::(lambda:invoke|ecs:runTask)(\.waitForTaskToken)?$/;
const NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\p{Cc}]{1,80}$/u;

interface TaskSpec {
  resourceType: 'lambda' | 'ecs';
  /** as history shows it, e.g. `invoke.waitForTaskToken` */
  resource: string;
  callback: boolean;
  timeoutSeconds?: number;
  heartbeatSeconds?: number;
}

/** What each Task state's handler receives: the effective Parameters plus the state's dynamic timers. */
interface TaskInput {
  parameters: unknown;
  timeoutSeconds?: unknown;
  heartbeatSeconds?: unknown;
}

interface CompiledDefinition {
  machine: StateMachine;
  tasks: Map<string, TaskSpec>;
  timeoutSeconds?: number;
}

interface StateMachineRecord {
  arn: string;
  name: string;
  definition: string;
  roleArn: string;
  creationDate: number;
  compiled: CompiledDefinition;
}

interface HistoryEvent {
  id: number;
  previousEventId: number;
  timestamp: number;
  type: string;
  [details: string]: unknown;
}

interface Execution {
  arn: string;
  name: string;
  stateMachine: StateMachineRecord;
  input: string;
  status: ExecutionStatus;
  startDate: number;
  stopDate?: number;
  output?: string;
  error?: string;
  cause?: string;
  history: HistoryEvent[];
  /** minted by a `$$.Task.Token` read, taken by the handler of the Task state being entered */
  pendingTask?: TaskRecord;
  openTasks: Set<TaskRecord>;
  abort: () => void;
  timeoutTimer?: NodeJS.Timeout;
}

interface TaskRecord {
  token: string;
  execution: Execution;
  /** false once the task has ended: SendTask* then answers TaskTimedOut */
  open: boolean;
  /** settled by SendTaskSuccess / SendTaskFailure */
  outcome: Deferred<unknown>;
  /** rejected by a timeout, a missed heartbeat or the end of the execution */
  interrupted: Deferred<never>;
  timers: NodeJS.Timeout[];
  heartbeatTimer?: NodeJS.Timeout;
}

/** A Task failure as Step Functions reports it: the library matches Retry/Catch on `name`, Cause is `message`. */
class TaskFailure extends Error {
  constructor(
    error: string,
    cause: string,
    readonly timedOut = false,
  ) {
    super(cause);
    this.name = error;
  }

  /** States.Runtime escapes Retry and Catch, as on AWS; the library reads these two flags. */
  get isRetryable(): boolean {
    return this.name !== 'States.Runtime';
  }

  get isCatchable(): boolean {
    return this.name !== 'States.Runtime';
  }
}

const toTaskFailure = (err: unknown): TaskFailure => {
  if (err instanceof TaskFailure) return err;
  if (err instanceof LambdaFunctionError) {
    const { errorType, errorMessage, trace } = err;
    return new TaskFailure(
      errorType,
      JSON.stringify({ errorType, errorMessage, ...(trace.length > 0 ? { trace } : {}) }),
    );
  }
  if (err instanceof Error && err.name !== 'Error') return new TaskFailure(err.name, err.message);
  return new TaskFailure('States.TaskFailed', err instanceof Error ? err.message : String(err));
};

const invalidDefinition = (message: string) => new AwsError('InvalidDefinition', message);

const STATE_EVENT_PREFIX: Record<string, string> = {
  Task: 'TaskState',
  Choice: 'ChoiceState',
  Wait: 'WaitState',
  Pass: 'PassState',
  Succeed: 'SucceedState',
  Fail: 'FailState',
  Parallel: 'ParallelState',
  Map: 'MapState',
};

const positiveInteger = (value: unknown, what: string): number | undefined => {
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  throw new TaskFailure('States.Runtime', `${what} must be a positive integer, got ${JSON.stringify(value)}`);
};

/**
 * Rewrites each Task state for the library: the original Parameters move under `parameters`, the
 * Timeout/HeartbeatSecondsPath values are resolved beside them (so against the state input, as on
 * AWS), and the library's own Task timer is pushed out of the way; the handler enforces the real ones.
 */
function prepareStates(states: unknown, tasks: Map<string, TaskSpec>): Record<string, JsonObject> {
  if (typeof states !== 'object' || states === null) throw invalidDefinition('States must be an object');
  const prepared: Record<string, JsonObject> = {};
  for (const [name, { QueryLanguage, ...state }] of Object.entries(states as Record<string, JsonObject>)) {
    if (QueryLanguage === 'JSONata' || 'Assign' in state) {
      throw invalidDefinition(`${name}: JSONata and variables are not supported locally; use JSONPath`);
    }
    prepared[name] = prepareState(name, state, tasks);
  }
  return prepared;
}

function prepareBranch(branch: unknown, tasks: Map<string, TaskSpec>): unknown {
  if (typeof branch !== 'object' || branch === null) return branch;
  const { States, QueryLanguage: _jsonPath, ...rest } = branch as JsonObject;
  return { ...rest, States: prepareStates(States, tasks) };
}

function prepareState(name: string, state: JsonObject, tasks: Map<string, TaskSpec>): JsonObject {
  if (state.Type === 'Parallel' && Array.isArray(state.Branches)) {
    return { ...state, Branches: state.Branches.map((branch) => prepareBranch(branch, tasks)) };
  }
  if (state.Type === 'Map') {
    const key = 'ItemProcessor' in state ? 'ItemProcessor' : 'Iterator';
    return { ...state, [key]: prepareBranch(state[key], tasks) };
  }
  if (state.Type !== 'Task') return state;
  const {
    Resource,
    TimeoutSeconds,
    TimeoutSecondsPath,
    HeartbeatSeconds,
    HeartbeatSecondsPath,
    Parameters,
    ...rest
  } = state;
  const match = typeof Resource === 'string' ? TASK_RESOURCE.exec(Resource) : null;
  const [, integration, callback] = match ?? [];
  if (!integration) {
    throw invalidDefinition(
      `${name}: Resource ${String(Resource)} is not run locally (arn:aws:states:::lambda:invoke and ecs:runTask, optionally .waitForTaskToken)`,
    );
  }
  const [service, action] = integration.split(':');
  tasks.set(name, {
    resourceType: service as TaskSpec['resourceType'],
    resource: `${action}${callback ?? ''}`,
    callback: callback !== undefined,
    timeoutSeconds: typeof TimeoutSeconds === 'number' ? TimeoutSeconds : undefined,
    heartbeatSeconds: typeof HeartbeatSeconds === 'number' ? HeartbeatSeconds : undefined,
  });
  const parameters: JsonObject =
    Parameters === undefined ? { 'parameters.$': '$' } : { parameters: Parameters };
  if (typeof TimeoutSecondsPath === 'string') parameters['timeoutSeconds.$'] = TimeoutSecondsPath;
  if (typeof HeartbeatSecondsPath === 'string') parameters['heartbeatSeconds.$'] = HeartbeatSecondsPath;
  return { ...rest, Resource, Parameters: parameters, TimeoutSeconds: MAX_TIMER_SECONDS };
}

function compileDefinition(text: string): CompiledDefinition {
  let definition: JsonObject;
  try {
    definition = JSON.parse(text) as JsonObject;
  } catch (err) {
    throw invalidDefinition(`definition is not JSON: ${(err as Error).message}`);
  }
  if (typeof definition !== 'object' || definition === null) {
    throw invalidDefinition('definition must be an object');
  }
  const { TimeoutSeconds, States, QueryLanguage, ...rest } = definition;
  if (QueryLanguage === 'JSONata') throw invalidDefinition('JSONata is not supported locally; use JSONPath');
  const tasks = new Map<string, TaskSpec>();
  const prepared = { ...rest, States: prepareStates(States, tasks) };
  try {
    const machine = new StateMachine(prepared as unknown as StateMachineDefinition);
    return {
      machine,
      tasks,
      timeoutSeconds: typeof TimeoutSeconds === 'number' ? TimeoutSeconds : undefined,
    };
  } catch (err) {
    throw invalidDefinition((err as Error).message);
  }
}

const recaseKeys = (value: unknown, recase: (key: string) => string): unknown => {
  if (value instanceof Date) return value.getTime();
  if (Array.isArray(value)) return value.map((item) => recaseKeys(item, recase));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [recase(key), recaseKeys(item, recase)]),
  );
};
const lowerFirst = (key: string) => key.charAt(0).toLowerCase() + key.slice(1);
const upperFirst = (key: string) => key.charAt(0).toUpperCase() + key.slice(1);

/**
 * `ecs:runTask` over an ECS client: Step Functions' PascalCase parameters to the SDK's camelCase input,
 * the SDK's output back to PascalCase (dates as epoch milliseconds), exceptions to `ECS.<name>`.
 */
export function ecsRunTaskResource(ecs: ECSClient): TaskResources['runEcsTask'] {
  return async (parameters) => {
    try {
      const { $metadata: _metadata, ...output } = await ecs.send(
        new RunTaskCommand(recaseKeys(parameters, lowerFirst) as RunTaskCommandInput),
      );
      return recaseKeys(output, upperFirst);
    } catch (err) {
      if (err instanceof ECSServiceException) {
        throw Object.assign(new Error(err.message), { name: `ECS.${err.name}` });
      }
      throw err;
    }
  };
}

interface Fault {
  operation: string;
  namePrefix?: string;
  error: string;
  message: string;
  remaining: number;
}

const FAULT_STATUS: Record<string, number> = {
  ServiceUnavailable: 503,
  InternalFailure: 500,
  InternalServerError: 500,
};

const requiredString = (input: JsonObject, key: string): string => {
  const value = input[key];
  if (typeof value !== 'string' || value === '') {
    throw new AwsError('ValidationException', `${key} is required`);
  }
  return value;
};

const optionalString = (input: JsonObject, key: string): string | undefined => {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new AwsError('ValidationException', `${key} must be a string`);
  return value;
};

const validName = (name: string): string => {
  if (!NAME.test(name)) throw new AwsError('InvalidName', `Invalid Name: '${name}'`);
  return name;
};

/** One page of `items` by `maxResults` (default 100, at most 1000) and an opaque `nextToken`. */
function page<T>(items: T[], input: JsonObject): { items: T[]; nextToken?: string } {
  const max =
    typeof input.maxResults === 'number' && input.maxResults > 0 ? Math.min(input.maxResults, 1000) : 100;
  let start = 0;
  if (typeof input.nextToken === 'string') {
    start = Number(Buffer.from(input.nextToken, 'base64url').toString('utf8'));
    if (!Number.isInteger(start) || start < 0) throw new AwsError('InvalidToken', 'Invalid Token');
  }
  const end = start + max;
  return {
    items: items.slice(start, end),
    nextToken: end < items.length ? Buffer.from(String(end)).toString('base64url') : undefined,
  };
}

class StepFunctionsService {
  private readonly stateMachines = new Map<string, StateMachineRecord>();
  private readonly executions = new Map<string, Execution>();
  private readonly tasks = new Map<string, TaskRecord>();
  private faults: Fault[] = [];
  private closed = false;

  constructor(
    readonly region: string,
    readonly accountId: string,
    private readonly resources: TaskResources,
    private readonly onStatusChange?: (event: ExecutionStatusChangeEvent) => void,
    private readonly onHistoryEvent?: (execution: Execution, event: HistoryEvent) => void,
  ) {}

  readonly operations: Record<string, OperationHandler> = {
    CreateStateMachine: (input) => this.createStateMachine(input),
    DescribeStateMachine: (input) => this.describeStateMachine(input),
    ListStateMachines: (input) => this.listStateMachines(input),
    UpdateStateMachine: (input) => this.updateStateMachine(input),
    StartExecution: (input) => this.startExecution(input),
    DescribeExecution: (input) => this.describeExecution(input),
    ListExecutions: (input) => this.listExecutions(input),
    StopExecution: (input) => this.stopExecution(input),
    GetExecutionHistory: (input) => this.getExecutionHistory(input),
    SendTaskSuccess: (input) => this.sendTaskSuccess(input),
    SendTaskFailure: (input) => this.sendTaskFailure(input),
    SendTaskHeartbeat: (input) => this.sendTaskHeartbeat(input),
  };

  /** Operations with the injected faults applied first. */
  faultedOperations(): Record<string, OperationHandler> {
    return Object.fromEntries(
      Object.entries(this.operations).map(([operation, handler]) => [
        operation,
        (input: JsonObject) => {
          this.injectFault(operation, input);
          return handler(input);
        },
      ]),
    );
  }

  addFault(body: JsonObject): void {
    const operation = requiredString(body, 'operation');
    const error = requiredString(body, 'error');
    const times = body.times;
    if (times !== undefined && (typeof times !== 'number' || !Number.isInteger(times) || times < 1)) {
      throw new AwsError('ValidationException', 'times must be a positive integer');
    }
    this.faults.push({
      operation,
      error,
      namePrefix: optionalString(body, 'namePrefix'),
      message: optionalString(body, 'message') ?? `injected fault: ${error}`,
      remaining: times ?? Number.POSITIVE_INFINITY,
    });
  }

  clearFaults(): void {
    this.faults = [];
  }

  private injectFault(operation: string, input: JsonObject): void {
    const name = typeof input.name === 'string' ? input.name : undefined;
    const fault = this.faults.find(
      (f) =>
        f.operation === operation &&
        f.remaining > 0 &&
        (f.namePrefix === undefined || (name?.startsWith(f.namePrefix) ?? false)),
    );
    if (!fault) return;
    fault.remaining -= 1;
    throw new AwsError(fault.error, fault.message, FAULT_STATUS[fault.error] ?? 400);
  }

  createStateMachine(input: JsonObject): { stateMachineArn: string; creationDate: number } {
    const name = validName(requiredString(input, 'name'));
    const definition = requiredString(input, 'definition');
    const roleArn =
      optionalString(input, 'roleArn') ?? `arn:aws:iam::${this.accountId}:role/local-stepfunctions`;
    const type = optionalString(input, 'type') ?? 'STANDARD';
    if (type !== 'STANDARD') {
      throw new AwsError('ValidationException', 'only STANDARD state machines run locally');
    }
    const arn = `arn:aws:states:${this.region}:${this.accountId}:stateMachine:${name}`;
    const existing = this.stateMachines.get(arn);
    if (existing) {
      if (existing.definition === definition && existing.roleArn === roleArn) {
        return { stateMachineArn: arn, creationDate: existing.creationDate };
      }
      throw new AwsError('StateMachineAlreadyExists', `State Machine Already Exists: '${arn}'`);
    }
    const record = {
      arn,
      name,
      definition,
      roleArn,
      creationDate: epochSeconds(),
      compiled: compileDefinition(definition),
    };
    this.stateMachines.set(arn, record);
    return { stateMachineArn: arn, creationDate: record.creationDate };
  }

  private stateMachine(arn: string): StateMachineRecord {
    const record = this.stateMachines.get(arn);
    if (!record) throw new AwsError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    return record;
  }

  private describeStateMachine(input: JsonObject) {
    const sm = this.stateMachine(requiredString(input, 'stateMachineArn'));
    return {
      stateMachineArn: sm.arn,
      name: sm.name,
      status: 'ACTIVE',
      definition: sm.definition,
      roleArn: sm.roleArn,
      type: 'STANDARD',
      creationDate: sm.creationDate,
    };
  }

  private listStateMachines(input: JsonObject) {
    const { items, nextToken } = page([...this.stateMachines.values()], input);
    return {
      stateMachines: items.map((sm) => ({
        stateMachineArn: sm.arn,
        name: sm.name,
        type: 'STANDARD',
        creationDate: sm.creationDate,
      })),
      nextToken,
    };
  }

  /** Running executions keep the definition they started with, as on AWS. */
  private updateStateMachine(input: JsonObject) {
    const sm = this.stateMachine(requiredString(input, 'stateMachineArn'));
    const definition = optionalString(input, 'definition');
    if (definition !== undefined) {
      sm.compiled = compileDefinition(definition);
      sm.definition = definition;
    }
    sm.roleArn = optionalString(input, 'roleArn') ?? sm.roleArn;
    return { updateDate: epochSeconds() };
  }

  private startExecution(input: JsonObject) {
    const sm = this.stateMachine(requiredString(input, 'stateMachineArn'));
    const name = validName(optionalString(input, 'name') ?? randomUUID());
    const inputText = optionalString(input, 'input') ?? '{}';
    let parsedInput: JsonValue;
    try {
      parsedInput = JSON.parse(inputText) as JsonValue;
    } catch (err) {
      throw new AwsError(
        'InvalidExecutionInput',
        `Invalid State Machine Execution Input: ${(err as Error).message}`,
      );
    }
    const arn = `arn:aws:states:${this.region}:${this.accountId}:execution:${sm.name}:${name}`;
    const existing = this.executions.get(arn);
    if (existing) {
      // Standard workflows keep a name for 90 days; only a repeat of a running start is idempotent.
      if (existing.status === 'RUNNING' && existing.input === inputText) {
        return { executionArn: arn, startDate: existing.startDate };
      }
      throw new AwsError('ExecutionAlreadyExists', `Execution Already Exists: '${arn}'`);
    }
    const execution: Execution = {
      arn,
      name,
      stateMachine: sm,
      input: inputText,
      status: 'RUNNING',
      startDate: epochSeconds(),
      history: [],
      openTasks: new Set(),
      abort: noop,
    };
    this.executions.set(arn, execution);
    this.append(execution, 'ExecutionStarted', 'executionStartedEventDetails', {
      input: inputText,
      inputDetails: { truncated: false },
      roleArn: sm.roleArn,
    });
    this.emitStatusChange(execution);
    this.run(execution, sm.compiled, parsedInput);
    return { executionArn: arn, startDate: execution.startDate };
  }

  private run(execution: Execution, compiled: CompiledDefinition, input: JsonValue): void {
    const handlers = Object.fromEntries(
      [...compiled.tasks].map(([stateName, spec]) => [
        stateName,
        (taskInput: JsonValue) =>
          this.runTask(execution, spec, taskInput as unknown as TaskInput) as Promise<JsonValue>,
      ]),
    );
    const service = this;
    const run = compiled.machine.run(input, {
      noThrowOnAbort: true,
      overrides: { taskResourceLocalHandlers: handlers },
      context: {
        Execution: {
          Id: execution.arn,
          Name: execution.name,
          RoleArn: execution.stateMachine.roleArn,
        },
        StateMachine: { Id: execution.stateMachine.arn, Name: execution.stateMachine.name },
        Task: {
          // Each Task state that reads its token gets a fresh one; its handler takes it next.
          get Token() {
            execution.pendingTask ??= service.openTask(execution);
            return execution.pendingTask.token;
          },
        },
      },
    });
    execution.abort = run.abort;
    if (compiled.timeoutSeconds !== undefined) {
      execution.timeoutTimer = setTimeout(
        () => this.finish(execution, 'TIMED_OUT', { error: 'States.Timeout' }),
        timerMs(compiled.timeoutSeconds),
      );
    }
    const logged = (async () => {
      for await (const event of run.eventLogs) {
        if (event.type !== 'StateEntered' && event.type !== 'StateExited') continue;
        const prefix = STATE_EVENT_PREFIX[event.state.type];
        if (event.type === 'StateEntered') {
          this.append(execution, `${prefix}Entered`, 'stateEnteredEventDetails', {
            name: event.state.name,
            input: JSON.stringify(event.state.input),
          });
        } else {
          this.append(execution, `${prefix}Exited`, 'stateExitedEventDetails', {
            name: event.state.name,
            output: JSON.stringify(event.state.output),
          });
        }
      }
    })();
    run.result.then(
      async (output) => {
        await logged;
        this.finish(execution, 'SUCCEEDED', { output: JSON.stringify(output) });
      },
      async (err: unknown) => {
        await logged;
        const failure = err instanceof ExecutionError && err.cause instanceof Error ? err.cause : undefined;
        this.finish(execution, 'FAILED', {
          error: failure?.name ?? 'States.Runtime',
          cause: failure?.message ?? String(err),
        });
      },
    );
  }

  private openTask(execution: Execution): TaskRecord {
    const task: TaskRecord = {
      token: randomBytes(96).toString('base64url'),
      execution,
      open: true,
      outcome: deferred(),
      interrupted: deferred(),
      timers: [],
    };
    // Either may settle while nobody awaits it (a stop, a failure sent before the wait begins).
    task.outcome.promise.catch(noop);
    task.interrupted.promise.catch(noop);
    this.tasks.set(task.token, task);
    execution.openTasks.add(task);
    return task;
  }

  private closeTask(task: TaskRecord): void {
    task.open = false;
    for (const timer of task.timers) clearTimeout(timer);
    task.execution.openTasks.delete(task);
  }

  private interrupt(task: TaskRecord, failure: TaskFailure): void {
    if (!task.open) return;
    task.open = false;
    task.interrupted.reject(failure);
  }

  private async runTask(execution: Execution, spec: TaskSpec, input: TaskInput): Promise<unknown> {
    // Synchronously after the state's Parameters were resolved, so this is the token they read.
    const task = execution.pendingTask ?? this.openTask(execution);
    execution.pendingTask = undefined;
    const details = { resourceType: spec.resourceType, resource: spec.resource };
    try {
      // A retry the library schedules after a stop must not call the resource again.
      if (execution.status !== 'RUNNING' || this.closed) {
        throw new TaskFailure('States.Runtime', 'the execution has ended');
      }
      const timeoutSeconds =
        positiveInteger(input.timeoutSeconds, 'TimeoutSecondsPath') ?? spec.timeoutSeconds;
      const heartbeatSeconds =
        positiveInteger(input.heartbeatSeconds, 'HeartbeatSecondsPath') ?? spec.heartbeatSeconds;
      await this.record(execution, 'TaskScheduled', 'taskScheduledEventDetails', {
        ...details,
        region: this.region,
        parameters: JSON.stringify(input.parameters),
        timeoutInSeconds: timeoutSeconds,
        heartbeatInSeconds: spec.callback ? heartbeatSeconds : undefined,
      });
      if (timeoutSeconds !== undefined) {
        task.timers.push(
          setTimeout(
            () => this.interrupt(task, new TaskFailure('States.Timeout', '', true)),
            timerMs(timeoutSeconds),
          ),
        );
      }
      if (spec.callback && heartbeatSeconds !== undefined) {
        task.heartbeatTimer = setTimeout(
          () => this.interrupt(task, new TaskFailure('States.HeartbeatTimeout', '', true)),
          timerMs(heartbeatSeconds),
        );
        task.timers.push(task.heartbeatTimer);
      }
      await this.record(execution, 'TaskStarted', 'taskStartedEventDetails', details);
      const response = await Promise.race([
        this.callResource(spec, input.parameters),
        task.interrupted.promise,
      ]);
      if (!spec.callback) {
        await this.record(execution, 'TaskSucceeded', 'taskSucceededEventDetails', {
          ...details,
          output: JSON.stringify(response),
        });
        return response;
      }
      await this.record(execution, 'TaskSubmitted', 'taskSubmittedEventDetails', {
        ...details,
        output: JSON.stringify(response),
      });
      const output = await Promise.race([task.outcome.promise, task.interrupted.promise]);
      await this.record(execution, 'TaskSucceeded', 'taskSucceededEventDetails', {
        ...details,
        output: JSON.stringify(output),
      });
      return output;
    } catch (err) {
      const failure = toTaskFailure(err);
      const [type, key] = failure.timedOut
        ? ['TaskTimedOut', 'taskTimedOutEventDetails']
        : ['TaskFailed', 'taskFailedEventDetails'];
      await this.record(execution, type, key, { ...details, error: failure.name, cause: failure.message });
      throw failure;
    } finally {
      this.closeTask(task);
    }
  }

  private async callResource(spec: TaskSpec, parameters: unknown): Promise<unknown> {
    const params = (typeof parameters === 'object' && parameters !== null ? parameters : {}) as JsonObject;
    if (spec.resourceType === 'ecs') return this.resources.runEcsTask(params);
    if (typeof params.FunctionName !== 'string') {
      throw new TaskFailure('States.Runtime', 'lambda:invoke needs Parameters.FunctionName');
    }
    const payload = await this.resources.invokeLambda(params.FunctionName, params.Payload);
    return {
      ExecutedVersion: '$LATEST',
      Payload: payload,
      SdkHttpMetadata: { HttpStatusCode: 200 },
      SdkResponseMetadata: { RequestId: randomUUID() },
      StatusCode: 200,
    };
  }

  /** History ends with the execution: a stopped execution's late state events are dropped. */
  private append(execution: Execution, type: string, detailsKey: string, details: JsonObject): void {
    if (execution.status !== 'RUNNING' || this.closed) return;
    const id = execution.history.length + 1;
    const event: HistoryEvent = {
      id,
      previousEventId: id - 1,
      timestamp: epochSeconds(),
      type,
      [detailsKey]: details,
    };
    execution.history.push(event);
    this.onHistoryEvent?.(execution, event);
  }

  /** A Task event, after the state events the library has logged but not yet handed over. */
  private async record(
    execution: Execution,
    type: string,
    detailsKey: string,
    details: JsonObject,
  ): Promise<void> {
    await tick();
    this.append(execution, type, detailsKey, details);
  }

  private finish(
    execution: Execution,
    status: Exclude<ExecutionStatus, 'RUNNING'>,
    result: { output?: string; error?: string; cause?: string },
  ): void {
    if (execution.status !== 'RUNNING' || this.closed) return;
    const error = result.error || undefined;
    const cause = result.cause || undefined;
    const event = {
      SUCCEEDED: ['ExecutionSucceeded', 'executionSucceededEventDetails'],
      FAILED: ['ExecutionFailed', 'executionFailedEventDetails'],
      TIMED_OUT: ['ExecutionTimedOut', 'executionTimedOutEventDetails'],
      ABORTED: ['ExecutionAborted', 'executionAbortedEventDetails'],
    } as const;
    const [type, key] = event[status];
    this.append(
      execution,
      type,
      key,
      status === 'SUCCEEDED'
        ? { output: result.output, outputDetails: { truncated: false } }
        : { error, cause },
    );
    Object.assign(execution, { status, stopDate: epochSeconds(), output: result.output, error, cause });
    clearTimeout(execution.timeoutTimer);
    if (status === 'ABORTED' || status === 'TIMED_OUT') {
      for (const task of execution.openTasks) {
        this.interrupt(task, new TaskFailure('States.Runtime', 'the execution has ended'));
        this.closeTask(task);
      }
      execution.abort();
    }
    this.emitStatusChange(execution);
  }

  private emitStatusChange(execution: Execution): void {
    if (!this.onStatusChange) return;
    const toMs = (seconds: number | undefined) => (seconds === undefined ? null : Math.round(seconds * 1000));
    const event: ExecutionStatusChangeEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': 'Step Functions Execution Status Change',
      source: 'aws.states',
      account: this.accountId,
      time: new Date().toISOString(),
      region: this.region,
      resources: [execution.arn],
      detail: {
        executionArn: execution.arn,
        stateMachineArn: execution.stateMachine.arn,
        name: execution.name,
        status: execution.status,
        startDate: toMs(execution.startDate) ?? 0,
        stopDate: toMs(execution.stopDate),
        input: execution.input,
        output: execution.output ?? null,
        error: execution.error ?? null,
        cause: execution.cause ?? null,
      },
    };
    try {
      this.onStatusChange(event);
    } catch (err) {
      // A failing subscriber must not fail the API call or the execution that raised the event.
      console.error('stepfunctions: execution status change listener failed', err);
    }
  }

  private execution(arn: string): Execution {
    if (!arn.startsWith('arn:aws:states:')) throw new AwsError('InvalidArn', `Invalid Arn: '${arn}'`);
    const execution = this.executions.get(arn);
    if (!execution) throw new AwsError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
    return execution;
  }

  private describeExecution(input: JsonObject) {
    const e = this.execution(requiredString(input, 'executionArn'));
    return {
      executionArn: e.arn,
      stateMachineArn: e.stateMachine.arn,
      name: e.name,
      status: e.status,
      startDate: e.startDate,
      stopDate: e.stopDate,
      input: e.input,
      inputDetails: { included: true },
      output: e.output,
      outputDetails: e.output === undefined ? undefined : { included: true },
      error: e.error,
      cause: e.cause,
    };
  }

  private listExecutions(input: JsonObject) {
    const sm = this.stateMachine(requiredString(input, 'stateMachineArn'));
    const statusFilter = optionalString(input, 'statusFilter');
    const matching = [...this.executions.values()]
      .filter(
        (e) => e.stateMachine.arn === sm.arn && (statusFilter === undefined || e.status === statusFilter),
      )
      .reverse();
    const { items, nextToken } = page(matching, input);
    return {
      executions: items.map((e) => ({
        executionArn: e.arn,
        stateMachineArn: e.stateMachine.arn,
        name: e.name,
        status: e.status,
        startDate: e.startDate,
        stopDate: e.stopDate,
      })),
      nextToken,
    };
  }

  private stopExecution(input: JsonObject) {
    const execution = this.execution(requiredString(input, 'executionArn'));
    this.finish(execution, 'ABORTED', {
      error: optionalString(input, 'error'),
      cause: optionalString(input, 'cause'),
    });
    return { stopDate: execution.stopDate };
  }

  private getExecutionHistory(input: JsonObject) {
    const execution = this.execution(requiredString(input, 'executionArn'));
    const history = input.reverseOrder === true ? [...execution.history].reverse() : execution.history;
    const { items, nextToken } = page(history, input);
    return { events: items, nextToken };
  }

  /** The open task a token names: InvalidToken, TaskDoesNotExist or, once it ended, TaskTimedOut. */
  private taskFor(input: JsonObject): TaskRecord {
    const token = input.taskToken;
    if (typeof token !== 'string' || token.length === 0 || token.length > 1024) {
      throw new AwsError('InvalidToken', 'Invalid Token: a task token has 1 to 1024 characters');
    }
    const task = this.tasks.get(token);
    if (!task) throw new AwsError('TaskDoesNotExist', 'Task Does Not Exist');
    if (!task.open) {
      throw new AwsError(
        'TaskTimedOut',
        'Task Timed Out: the task token has expired or its task has already closed',
      );
    }
    return task;
  }

  private sendTaskSuccess(input: JsonObject) {
    const task = this.taskFor(input);
    let output: unknown;
    try {
      output = JSON.parse(requiredString(input, 'output'));
    } catch (err) {
      if (err instanceof AwsError) throw err;
      throw new AwsError('InvalidOutput', `Invalid Output: ${(err as Error).message}`);
    }
    task.open = false;
    task.outcome.resolve(output);
    return {};
  }

  private sendTaskFailure(input: JsonObject) {
    const task = this.taskFor(input);
    task.open = false;
    task.outcome.reject(
      new TaskFailure(optionalString(input, 'error') ?? '', optionalString(input, 'cause') ?? ''),
    );
    return {};
  }

  private sendTaskHeartbeat(input: JsonObject) {
    this.taskFor(input).heartbeatTimer?.refresh();
    return {};
  }

  /** Ends every running execution without a trace: no history, no events, no further task calls. */
  close(): void {
    this.closed = true;
    for (const execution of this.executions.values()) {
      if (execution.status !== 'RUNNING') continue;
      clearTimeout(execution.timeoutTimer);
      for (const task of execution.openTasks) {
        this.interrupt(task, new TaskFailure('States.Runtime', 'the emulator has closed'));
        this.closeTask(task);
      }
      execution.abort();
    }
  }
}

/** A history event as Step Functions' execution logging writes it: ids as text, the details under `details`. */
const executionLogLine = (execution: Execution, event: HistoryEvent) => {
  const { id, previousEventId, timestamp, type, ...rest } = event;
  return {
    id: String(id),
    type,
    details: Object.values(rest)[0] ?? {},
    previous_event_id: String(previousEventId),
    event_timestamp: String(Math.round(timestamp * 1000)),
    execution_arn: execution.arn,
    redrive_count: '0',
  };
};

/** Starts the Step Functions emulator on loopback (port 0 picks a free port). */
export async function startStepFunctionsEmulator(
  opts: StepFunctionsEmulatorOptions,
): Promise<StepFunctionsEmulator> {
  const region = opts.region ?? 'us-east-1';
  const accountId = opts.accountId ?? '000000000000';
  const executionLog =
    opts.logs &&
    new LogShipper(
      opts.logs.client,
      opts.logs.logGroupName,
      `states/local/${new Date().toISOString().slice(0, 10)}/${randomUUID()}`,
    );
  const service = new StepFunctionsService(
    region,
    accountId,
    opts.resources,
    opts.onExecutionStatusChange,
    executionLog &&
      ((execution, event) => executionLog.add(JSON.stringify(executionLogLine(execution, event)))),
  );
  const server = await startJsonProtocolServer(
    {
      targetPrefix: 'AWSStepFunctions',
      errorNamespace: 'com.amazonaws.states',
      operations: service.faultedOperations(),
      extraRoutes: {
        'POST /_local/faults': (_req, body, res) => {
          try {
            service.addFault(JSON.parse(body || '{}') as JsonObject);
            sendJson(res, 200, {});
          } catch (err) {
            sendJson(res, 400, { message: err instanceof Error ? err.message : String(err) });
          }
        },
        'DELETE /_local/faults': (_req, _body, res) => {
          service.clearFaults();
          sendJson(res, 200, {});
        },
      },
    },
    opts.port ?? 0,
    opts.host ?? '127.0.0.1',
  );
  return {
    url: server.url,
    port: server.port,
    region,
    accountId,
    createStateMachine: ({ name, definition, roleArn }) =>
      service.createStateMachine({ name, definition, roleArn }).stateMachineArn,
    close: async () => {
      service.close();
      await Promise.all([server.close(), executionLog?.close()]);
    },
  };
}
