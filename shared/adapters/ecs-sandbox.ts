import { type ECSClient, InvalidParameterException, StopTaskCommand } from '@aws-sdk/client-ecs';
import type { Sandbox } from '../ports.js';

/** The run's Fargate task. Stopping one that is already gone is not an error. */
export class EcsSandbox implements Sandbox {
  constructor(
    private readonly ecs: ECSClient,
    private readonly clusterArn: string,
  ) {}

  async stop(taskArn: string, reason: string): Promise<void> {
    try {
      await this.ecs.send(
        new StopTaskCommand({ cluster: this.clusterArn, task: taskArn, reason: reason.slice(0, 255) }),
      );
    } catch (err) {
      // ECS answers InvalidParameterException for a task it no longer knows.
      if (err instanceof InvalidParameterException) return;
      throw err;
    }
  }
}
