import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  StartExecutionCommand,
  TaskDoesNotExist,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import type { ExecutionStatus, Orchestrator, TaskSignals } from '../ports.js';

/** A token that was settled, timed out or never existed: the wait it belonged to is over. */
const isGone = (err: unknown): boolean =>
  err instanceof TaskDoesNotExist || err instanceof TaskTimedOut || err instanceof InvalidToken;

/** Step Functions: one execution per run, named after it. */
export class StepFunctionsOrchestrator implements Orchestrator {
  constructor(
    private readonly sfn: SFNClient,
    private readonly stateMachineArn: string,
  ) {}

  async start(executionName: string, input: { runId: string; accountId: string }) {
    try {
      const out = await this.sfn.send(
        new StartExecutionCommand({
          stateMachineArn: this.stateMachineArn,
          name: executionName,
          input: JSON.stringify(input),
        }),
      );
      return { executionArn: out.executionArn ?? this.executionArn(executionName), alreadyExisted: false };
    } catch (err) {
      // The execution name is the run's: a redelivered message finds its execution already there.
      if (err instanceof ExecutionAlreadyExists)
        return { executionArn: this.executionArn(executionName), alreadyExisted: true };
      throw err;
    }
  }

  async describe(executionArn: string): Promise<ExecutionStatus | undefined> {
    try {
      const out = await this.sfn.send(new DescribeExecutionCommand({ executionArn }));
      if (!out.status) return undefined;
      return { status: out.status, error: out.error, cause: out.cause };
    } catch (err) {
      if (err instanceof ExecutionDoesNotExist) return undefined;
      throw err;
    }
  }

  private executionArn(name: string): string {
    return `${this.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
  }
}

/** The task tokens the state machine parks while it waits for the pod (or, later, a human). */
export class StepFunctionsTaskSignals implements TaskSignals {
  constructor(private readonly sfn: SFNClient) {}

  private async settle(send: () => Promise<unknown>): Promise<'sent' | 'gone'> {
    try {
      await send();
      return 'sent';
    } catch (err) {
      if (isGone(err)) return 'gone';
      throw err;
    }
  }

  succeedTask(token: string, output: unknown) {
    return this.settle(() =>
      this.sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) })),
    );
  }

  failTask(token: string, error: string, cause: string) {
    return this.settle(() => this.sfn.send(new SendTaskFailureCommand({ taskToken: token, error, cause })));
  }

  heartbeat(token: string) {
    return this.settle(() => this.sfn.send(new SendTaskHeartbeatCommand({ taskToken: token })));
  }
}
