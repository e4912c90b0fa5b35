import { DescribeTaskDefinitionCommand, DescribeTasksCommand } from '@aws-sdk/client-ecs';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { GetExecutionHistoryCommand } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import type { Pod } from '../../shared/domain/tenancy.js';
import { api, dispatch, endpoints, waitForTerminal } from './support/api.js';
import { ecs, secretsManager, sfn } from './support/aws.js';

/** A pod of the demo agent of its own, named `prefix` and a unique suffix, with the given secrets. */
const putPod = async (prefix: string, secrets: Record<string, string>) => {
  const podId = `${prefix}-${Date.now().toString(36)}`;
  const answer = await api<Pod>('PUT', `/v1/pods/${podId}`, {
    body: { name: prefix, cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' }, secrets },
  });
  return { podId, answer };
};

const secretName = (name: string) =>
  `execution-runs/pods/${endpoints().accountId}/${name}-${Date.now().toString(36)}`;

describe('a pod with secrets on the local cloud', () => {
  it('gets a task definition of its own when saved, and its runs launch with it; the value stays out of the run', async () => {
    const name = secretName('demo-token');
    const value = `local-secret-${Date.now()}`;
    await secretsManager().send(new CreateSecretCommand({ Name: name, SecretString: value }));

    const { podId, answer } = await putPod('secret-pod', { DEMO_TOKEN: name });

    expect(answer.status).toBe(200);
    const taskDefinitionArn = answer.body.taskDefinitionArn ?? '';
    expect(taskDefinitionArn).toMatch(/:task-definition\/execution-runs-pod-[A-Za-z0-9_-]+:\d+$/);
    expect((await api<Pod>('GET', `/v1/pods/${podId}`)).body.taskDefinitionArn).toBe(taskDefinitionArn);
    const { taskDefinition } = await ecs().send(
      new DescribeTaskDefinitionCommand({ taskDefinition: taskDefinitionArn }),
    );
    expect(taskDefinition?.containerDefinitions?.[0]).toMatchObject({
      name: 'pod',
      secrets: [
        {
          name: 'DEMO_TOKEN',
          valueFrom: `arn:aws:secretsmanager:${endpoints().region}:000000000000:secret:${name}`,
        },
      ],
    });

    const { body: queued } = await dispatch({ podId, config: { demo: { steps: 1, stepDelayMs: 0 } } });
    const { run } = await waitForTerminal(queued.runId, 30_000);

    expect(run.status).toBe('COMPLETED');
    const { tasks } = await ecs().send(
      new DescribeTasksCommand({ cluster: endpoints().clusterArn, tasks: [run.taskArn ?? ''] }),
    );
    expect(tasks?.[0]?.taskDefinitionArn).toBe(taskDefinitionArn);
    const { events } = await sfn().send(
      new GetExecutionHistoryCommand({ executionArn: run.executionArn ?? '' }),
    );
    const launched = events?.find((e) => e.taskScheduledEventDetails?.resource === 'runTask');
    expect(JSON.parse(launched?.taskScheduledEventDetails?.parameters ?? '{}').TaskDefinition).toBe(
      taskDefinitionArn,
    );
    expect(JSON.stringify([run, events])).not.toContain(value);
  });

  it('ends FAILED, as a launch that fails on Fargate, when its pod names a secret that does not exist', async () => {
    const missing = secretName('never-created');
    const { podId, answer } = await putPod('missing-secret-pod', { DEMO_TOKEN: missing });
    expect(answer.status).toBe(200);

    const { body: queued } = await dispatch({ podId, config: { demo: { steps: 1, stepDelayMs: 0 } } });
    const { run } = await waitForTerminal(queued.runId, 30_000);

    expect(run).toMatchObject({
      status: 'FAILED',
      exitReason: 'interrupted',
      stopCode: 'TaskFailedToStart',
      stoppedReason: expect.stringMatching(/^ResourceInitializationError: unable to pull secrets/),
    });
    expect(run.stoppedReason).toContain(missing);
    expect(run.history.map((h) => h.status)).toEqual(['QUEUED', 'PROVISIONING', 'FAILED']);
    expect(run.containerExitCode).toBeUndefined();
  });

  it('refuses a secret of another account and saves nothing', async () => {
    const { podId, answer } = await putPod('foreign-secret-pod', {
      DEMO_TOKEN: 'execution-runs/pods/another-account/token',
    });
    expect(answer.status).toBe(400);
    expect((await api('GET', `/v1/pods/${podId}`)).status).toBe(404);
  });
});
