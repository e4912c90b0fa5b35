import { afterEach, describe, expect, it } from 'vitest';
import { api } from '../integration/support/api.js';
import { approvalLinkFor, dispatchSupervised, postDecision } from '../integration/support/approvals.js';
import { clearFaults, expectKeptItsPromises } from './support/faults.js';

/**
 * A stop, a decision and the approval window's expiry racing each other: whichever wins, the run ends
 * once, consistently, and the checkpoint is in its history exactly once.
 */

afterEach(clearFaults);

const podWithWindow = async (seconds: number) => {
  const podId = `window-${seconds}-${Date.now().toString(36)}`;
  const put = await api('PUT', `/v1/pods/${podId}`, {
    body: {
      name: `pod with a ${seconds} s approval window`,
      cpu: 1024,
      memoryMiB: 2048,
      agent: { kind: 'demo' },
      checkpoints: ['plan'],
      approvalWindowSeconds: seconds,
    },
  });
  expect(put.status).toBe(200);
  return podId;
};

const checkpointsOf = (run: { approvals?: { seq: number }[] }) => (run.approvals ?? []).map((a) => a.seq);

describe('racing a checkpoint', () => {
  it('a stop and an approval at once: the run ends, the checkpoint closed once', async () => {
    const { body } = await dispatchSupervised({ steps: 20, stepDelayMs: 100, checkpoints: ['plan'] });
    const { link } = await approvalLinkFor(body.runId);
    const [stop] = await Promise.all([
      api('POST', `/v1/runs/${body.runId}/stop`),
      postDecision(link, 'approve'),
      api('POST', `/v1/runs/${body.runId}/approve`),
    ]);
    expect([200, 409]).toContain(stop.status);
    const run = await expectKeptItsPromises(body.runId, 30_000);
    expect(['STOPPED', 'COMPLETED']).toContain(run.status);
    expect(new Set(checkpointsOf(run)).size).toBe(checkpointsOf(run).length);
    expect(run.approvals).toHaveLength(1);
  });

  it('a cancellation and an approval at once: one decision wins, the other sees it', async () => {
    const { body } = await dispatchSupervised({ steps: 2, stepDelayMs: 10, checkpoints: ['plan'] });
    const { link } = await approvalLinkFor(body.runId);
    const answers = await Promise.all([
      postDecision(link, 'cancel'),
      api('POST', `/v1/runs/${body.runId}/approve`),
      api('POST', `/v1/runs/${body.runId}/cancel`),
    ]);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    const run = await expectKeptItsPromises(body.runId, 30_000);
    const [entry] = run.approvals ?? [];
    expect(run.approvals).toHaveLength(1);
    expect(run.status).toBe(entry?.decision === 'approved' ? 'COMPLETED' : 'ABANDONED');
  });

  it('an approval as its window expires: it is either in time or too late, never both', async () => {
    const podId = await podWithWindow(5);
    const { body } = await dispatchSupervised(
      { steps: 2, stepDelayMs: 10, checkpoints: ['plan'] },
      { podId },
    );
    const { pending } = await approvalLinkFor(body.runId);
    const expiresAt = Date.parse(pending.expiresAt ?? '');
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now() - 50)));
    const decided = await api('POST', `/v1/runs/${body.runId}/approve`);
    const run = await expectKeptItsPromises(body.runId, 30_000);
    const [entry] = run.approvals ?? [];
    if (decided.status === 200) {
      expect(entry?.decision).toBe('approved');
      expect(run.status).toBe('COMPLETED');
    } else {
      expect(decided.status).toBe(409);
      expect(entry?.decision).toBe('expired');
      expect(run).toMatchObject({ status: 'ABANDONED', exitReason: 'timed_out' });
    }
    expect(run.approvals).toHaveLength(1);
  });
});
