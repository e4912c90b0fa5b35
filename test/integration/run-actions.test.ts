import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, waitForRun, waitForTerminal } from './support/api.js';
import { executionsOf } from './support/aws.js';

describe('what a human does with a run', () => {
  it('closes an ended run as DONE, and refuses to close one still running', async () => {
    const { body: long } = await dispatch({ config: { demo: { steps: 2000, stepDelayMs: 50 } } });
    await waitForRun(long.runId, (r) => r.status === 'RUNNING');
    const refused = await api<{ error: { code: string } }>('POST', `/v1/runs/${long.runId}/done`);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('TransitionRefused');
    await api('POST', `/v1/runs/${long.runId}/stop`);

    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 1 } } });
    await waitForTerminal(body.runId);
    const done = await api<Run>('POST', `/v1/runs/${body.runId}/done`);
    expect(done.status).toBe(200);
    expect(done.body.status).toBe('DONE');
    expect(done.body.history.map((h) => h.status).slice(-2)).toEqual(['COMPLETED', 'DONE']);
    expect((await api('POST', `/v1/runs/${body.runId}/done`)).status).toBe(409);
  });

  it('replays a run from its frozen config snapshot as a new run', async () => {
    const { body: original } = await dispatch({
      itemId: 'REPLAY-1',
      config: { demo: { steps: 1, stepDelayMs: 1 } },
    });
    await waitForTerminal(original.runId);
    const replay = await api<Run>('POST', `/v1/runs/${original.runId}/replay`);
    expect(replay.status).toBe(202);
    expect(replay.body.runId).not.toBe(original.runId);
    expect(replay.body).toMatchObject({ source: 'replay', replayOf: original.runId, itemId: 'REPLAY-1' });
    const { run } = await waitForTerminal(replay.body.runId);
    expect(run.status).toBe('COMPLETED');
    expect(await executionsOf(replay.body.runId)).toHaveLength(1);
  });
});
