import { SendMessageCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { QUEUE } from '../../shared/manifest.js';
import { api, dispatch, endpoints, getRun, waitForRun, waitForTerminal } from './support/api.js';
import { ecsControl, executionsOf, sfnControl, sqs, taskStatus, waitForTaskStopped } from './support/aws.js';

describe('a run on the local cloud', () => {
  it('goes QUEUED → PROVISIONING → RUNNING → COMPLETED in autopilot, with its phases, a commit, its pull request and timings', async () => {
    const { status, body: queued } = await dispatch({ config: { demo: { steps: 4, stepDelayMs: 20 } } });
    expect(status).toBe(202);
    expect(queued.status).toBe('QUEUED');

    const { run } = await waitForTerminal(queued.runId);
    expect(run.status).toBe('COMPLETED');
    expect(run.exitReason).toBe('completed');
    expect(run.history.map((h) => h.status)).toEqual(['QUEUED', 'PROVISIONING', 'RUNNING', 'COMPLETED']);
    expect(run.phase).toBe('PR_RAISED');
    const branch = `pods/${endpoints().scriptedPodId}/${queued.runId}`;
    expect(run.artifacts).toEqual([
      expect.objectContaining({
        kind: 'commit',
        sha: expect.stringMatching(/^[0-9a-f]{40}$/),
        branch,
        repo: endpoints().demoRepo,
      }),
      expect.objectContaining({ kind: 'pull_request', url: run.pullRequest?.url, branch }),
    ]);
    expect(run.pullRequest).toMatchObject({ number: expect.any(Number), state: 'open', branch });
    expect(Date.parse(run.startedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(run.createdAt));
    expect(Date.parse(run.completedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(run.startedAt ?? ''));
    expect(run.durationMs).toBeGreaterThan(0);
    expect(run.executionArn).toContain(queued.runId);
    expect(run.taskArn).toBeTruthy();
    await waitForTaskStopped(run.taskArn as string);
    expect(await taskStatus(run.taskArn as string)).toBe('STOPPED');
  });

  it.each(['tool_call_failed', 'error'] as const)(
    'ends FAILED with exit reason %s when the agent reports that failure',
    async (failure) => {
      const { body } = await dispatch({ config: { demo: { failure, stepDelayMs: 10 } } });
      const { run } = await waitForTerminal(body.runId);
      expect(run.status).toBe('FAILED');
      expect(run.exitReason).toBe(failure);
      expect(run.phase).toBe('FAILED');
    },
  );

  it('ends FAILED / interrupted from the task-stopped event when the pod crashes, long before a heartbeat timeout', async () => {
    const { body } = await dispatch({ config: { demo: { failure: 'crash' } } });
    const started = Date.now();
    const { run } = await waitForTerminal(body.runId, 20_000);
    expect(run.status).toBe('FAILED');
    expect(run.exitReason).toBe('interrupted');
    expect(run.stopCode).toBe('EssentialContainerExited');
    expect(run.containerExitCode).toBe(1);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('ends FAILED / interrupted when its sandbox is killed mid-run', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 2000, stepDelayMs: 50 } } });
    const { run: running } = await waitForRun(
      body.runId,
      (r) => r.status === 'RUNNING' && Boolean(r.taskArn),
    );
    const killedAt = Date.now();
    expect((await ecsControl('/_local/kill', { taskArn: running.taskArn, signal: 'SIGKILL' })).status).toBe(
      200,
    );
    const { run } = await waitForTerminal(body.runId, 20_000);
    expect(run.status).toBe('FAILED');
    expect(run.exitReason).toBe('interrupted');
    expect(run.containerExitCode).toBe(137);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
  });

  it('stops mid-run: STOPPED, and no pod process is left', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 2000, stepDelayMs: 50 } } });
    const { run: running } = await waitForRun(
      body.runId,
      (r) => r.status === 'RUNNING' && Boolean(r.taskArn),
    );
    const stopped = await api('POST', `/v1/runs/${body.runId}/stop`);
    expect(stopped.status).toBe(200);
    const { run } = await waitForTerminal(body.runId);
    expect(run.status).toBe('STOPPED');
    expect(run.exitReason).toBe('stopped');
    await waitForTaskStopped(running.taskArn as string);
    // The execution still ends through Finalize, and nothing moves the run afterwards.
    await expect
      .poll(async () => (await executionsOf(body.runId))[0]?.status, { timeout: 15_000 })
      .toBe('SUCCEEDED');
    expect((await getRun(body.runId)).status).toBe('STOPPED');
  });

  it('starts one execution when the same queue message is delivered twice', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 2, stepDelayMs: 10 } } });
    await sqs().send(
      new SendMessageCommand({
        QueueUrl: endpoints().queueUrl,
        MessageBody: JSON.stringify({ runId: body.runId }),
      }),
    );
    await sqs().send(
      new SendMessageCommand({
        QueueUrl: endpoints().queueUrl,
        MessageBody: JSON.stringify({ runId: body.runId }),
      }),
    );
    const { run } = await waitForTerminal(body.runId);
    expect(run.status).toBe('COMPLETED');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await executionsOf(body.runId)).toHaveLength(1);
  });

  it('marks a run DEAD_LETTER when its message keeps failing, lists it under that status, and redrives it', async () => {
    const queueUrl = endpoints().queueUrl;
    let runId = '';
    await sqs().send(
      new SetQueueAttributesCommand({ QueueUrl: queueUrl, Attributes: { VisibilityTimeout: '1' } }),
    );
    try {
      expect(
        (
          await sfnControl('/_local/faults', {
            operation: 'StartExecution',
            namePrefix: 'run_',
            error: 'StateMachineDoesNotExist',
          })
        ).status,
      ).toBe(200);
      const { body } = await dispatch({ itemId: 'ITEM-DLQ', config: { demo: { steps: 1, stepDelayMs: 1 } } });
      runId = body.runId;
      const { run } = await waitForTerminal(body.runId, 60_000);
      expect(run.status).toBe('DEAD_LETTER');
      expect(run.exitReason).toBe('dead_letter');
      const listed = await api<{ items: { runId: string }[] }>(
        'GET',
        '/v1/runs?status=DEAD_LETTER&limit=100',
      );
      expect(listed.body.items.map((r) => r.runId)).toContain(body.runId);
    } finally {
      await fetch(`${endpoints().services.stepfunctions}/_local/faults`, { method: 'DELETE' });
      await sqs().send(
        new SetQueueAttributesCommand({
          QueueUrl: queueUrl,
          Attributes: { VisibilityTimeout: String(QUEUE.visibilityTimeoutSeconds) },
        }),
      );
    }
    // A redrive queues it again under a new execution name, and it runs to the end.
    const redriven = await api<Run>('POST', `/v1/runs/${runId}/redrive`);
    expect(redriven.status).toBe(202);
    expect(redriven.body).toMatchObject({ status: 'QUEUED', redriveCount: 1 });
    const { run } = await waitForTerminal(runId);
    expect(run.status).toBe('COMPLETED');
    expect((await executionsOf(runId)).map((e) => e.name)).toEqual([`${runId}-r1`]);
  });

  it('retries a launch that hit a capacity error and then completes', async () => {
    await ecsControl('/_local/faults', {
      failures: { reason: 'Capacity is unavailable at this time', times: 1 },
    });
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 10 } } });
    const { run } = await waitForTerminal(body.runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    expect(run.history.map((h) => h.status)).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RETRYING',
      'PROVISIONING',
      'RUNNING',
      'COMPLETED',
    ]);
    expect(run.attempt).toBe(2);
  });
});
