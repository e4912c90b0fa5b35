import { afterEach, describe, expect, it } from 'vitest';
import type { Step } from '../../shared/domain/steps.js';
import { api, dispatch } from '../integration/support/api.js';
import { approvalLinkFor, dispatchSupervised, postDecision } from '../integration/support/approvals.js';
import { ledgerLinesOf } from '../integration/support/aws.js';
import {
  clearFaults,
  dynamoFault,
  expectKeptItsPromises,
  gatewayFault,
  stepFunctionsFault,
} from './support/faults.js';

/**
 * Event batches duplicated, reordered and half-written (Defect 2): every step recorded once, the
 * totals equal to the ledger, and a checkpoint never skipped, whatever part of a batch failed.
 */

const EVENTS = 'POST /agent/v1/runs/{runId}/events';
const usage = [{ model: 'claude-haiku-4-5', inputTokens: 1000, outputTokens: 100 }];

afterEach(clearFaults);

const stepsOf = async (runId: string) => {
  const { body } = await api<{ items: Step[]; nextAfter: number | null }>(
    'GET',
    `/v1/runs/${runId}/steps?limit=100`,
  );
  return body.items;
};

/** The usage lines the run's batches priced, the settlement left out. */
const usageLines = async (runId: string) =>
  (await ledgerLinesOf(runId)).filter((line) => line.from !== 'settlement') as { seq: number }[];

describe('event batches', () => {
  it('delivered twice, the second copy after later batches, record every step and usage line once', async () => {
    await gatewayFault({ routeKey: EVENTS, times: 1000, replayAfterMs: 400 });
    const { body } = await dispatch({ config: { demo: { steps: 12, stepDelayMs: 60, usage } } });
    const run = await expectKeptItsPromises(body.runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    const steps = await stepsOf(body.runId);
    expect(steps.length).toBeGreaterThanOrEqual(12);
    expect(new Set(steps.map((s) => s.seq)).size).toBe(steps.length);
    // one usage line per step, each once, though every batch arrived twice
    const lines = await usageLines(body.runId);
    expect(lines).toHaveLength(12);
    expect(new Set(lines.map((l) => l.seq)).size).toBe(12);
    expect(run.usage['claude-haiku-4-5']).toMatchObject({ inputTokens: 12_000, outputTokens: 1200 });
  });

  it('whose answers are lost are sent again by the pod and count once', async () => {
    await gatewayFault({ routeKey: EVENTS, times: 4, loseAnswer: true });
    const { body } = await dispatch({ config: { demo: { steps: 6, stepDelayMs: 20, usage } } });
    const run = await expectKeptItsPromises(body.runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    expect(run.usage['claude-haiku-4-5']?.inputTokens).toBe(6000);
  });
});

describe('a checkpoint is never skipped', () => {
  const approveAndFinish = async (runId: string) => {
    const { link } = await approvalLinkFor(runId);
    expect((await postDecision(link, 'approve')).status).toBe(200);
    const run = await expectKeptItsPromises(runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    expect(run.history.map((h) => h.status)).toContain('AWAITING_APPROVAL');
    expect(run.approvals).toEqual([expect.objectContaining({ name: 'plan', decision: 'approved' })]);
  };

  it('when ending the pod wait with it failed: the pod’s retry completes it', async () => {
    // long enough to outlast the SDK's own retries: the Agent API's request fails
    await stepFunctionsFault({ operation: 'SendTaskSuccess', error: 'ServiceUnavailable', times: 6 });
    const { body } = await dispatchSupervised({ steps: 2, stepDelayMs: 10, checkpoints: ['plan'] });
    await approveAndFinish(body.runId);
  });

  it('when the batch’s write was throttled after its steps were written: the retry pauses', async () => {
    await dynamoFault({
      function: 'agentApi',
      operation: 'TransactWriteItems',
      error: 'ProvisionedThroughputExceededException',
      times: 4,
    });
    const { body } = await dispatchSupervised({ steps: 2, stepDelayMs: 10, checkpoints: ['plan'] });
    await approveAndFinish(body.runId);
  });

  it('when the answer that said wait was lost: the pod’s retry is told to wait too', async () => {
    const { body } = await dispatchSupervised({ steps: 2, stepDelayMs: 10, checkpoints: ['plan'] });
    await gatewayFault({ routeKey: EVENTS, times: 3, loseAnswer: true });
    await approveAndFinish(body.runId);
  });
});
