import { afterEach, describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, waitForRun } from '../integration/support/api.js';
import { dispatchSupervised } from '../integration/support/approvals.js';
import { ecsControl } from '../integration/support/aws.js';
import { clearFaults, expectKeptItsPromises } from './support/faults.js';

/**
 * The pod killed in every phase of its run: the run ends FAILED / interrupted from the task-stopped
 * event, within seconds (long before a heartbeat would time out), settled once, with no process left.
 */

afterEach(clearFaults);

const kill = async (run: Run) => {
  const res = await ecsControl('/_local/kill', { taskArn: run.taskArn, signal: 'SIGKILL' });
  expect(res.status).toBe(200);
};

/** A run that stays a few seconds in EXECUTING (its steps). */
const slow = { steps: 40, stepDelayMs: 3000 };

const slowStartingPod = async () => {
  const podId = 'slow-starting';
  const hooks = { postStart: { command: 'sleep 20', timeoutSeconds: 60 } };
  const put = await api('PUT', `/v1/pods/${podId}`, {
    body: { name: podId, cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' }, hooks },
  });
  expect(put.status).toBe(200);
  return podId;
};

describe('a pod killed', () => {
  it('before it reported anything (PROVISIONING)', async () => {
    const { body } = await dispatch({ config: { demo: slow } });
    const launched = await waitForRun(body.runId, (r) => Boolean(r.taskArn), 30_000);
    await kill(launched.run);
    const run = await expectKeptItsPromises(body.runId, 20_000);
    expect(run).toMatchObject({ status: 'FAILED', exitReason: 'interrupted', containerExitCode: 137 });
  });

  it.each(['STARTED', 'EXECUTING'] as const)('in phase %s', async (phase) => {
    // a pod stays in STARTED while its postStart hook runs
    const podId = phase === 'STARTED' ? await slowStartingPod() : undefined;
    const { body } = await dispatch({ config: { demo: slow }, ...(podId ? { podId } : {}) });
    const { run: seen } = await waitForRun(
      body.runId,
      (r) => r.phase === phase && Boolean(r.taskArn),
      60_000,
    );
    await kill(seen);
    const run = await expectKeptItsPromises(body.runId, 20_000);
    expect(run).toMatchObject({ status: 'FAILED', exitReason: 'interrupted', phase });
  });

  // A pod passes PLANNING and COMMITTING in a moment, unless its run pauses there for a person.
  it.each([
    ['PLANNING', 'plan'],
    ['COMMITTING', 'commit'],
  ] as const)(
    'in phase %s, while its run waits for a person: the checkpoint is withdrawn',
    async (phase, name) => {
      const { body } = await dispatchSupervised({ steps: 2, stepDelayMs: 10, checkpoints: [name] });
      const { run: paused } = await waitForRun(
        body.runId,
        (r) => r.status === 'AWAITING_APPROVAL' && Boolean(r.pendingApproval?.approvalId),
        30_000,
      );
      expect(paused.phase).toBe(phase);
      await kill(paused);
      const run = await expectKeptItsPromises(body.runId, 20_000);
      expect(run).toMatchObject({ status: 'FAILED', exitReason: 'interrupted', phase });
      expect(run.pendingApproval).toBeUndefined();
      expect(run.approvals).toEqual([expect.objectContaining({ name, decision: 'withdrawn' })]);
    },
  );
});
