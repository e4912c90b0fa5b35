import { GetExecutionHistoryCommand } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { dispatch, endpoints, waitForRun } from '../integration/support/api.js';
import { executionsOf, sfn, takeOverPod } from '../integration/support/aws.js';
import { expectKeptItsPromises } from './support/faults.js';

/** Defect 7: the pod's credentials are useless outside its run and never in the execution history. */

const agent = (runId: string, path: string, init: RequestInit = {}) =>
  fetch(`${endpoints().apiUrl}/agent/v1/runs/${runId}${path}`, init);

describe('the pod’s credentials', () => {
  it('leave only a spent one-time code in the execution history, and stop working when the run ends', async () => {
    // the pod goes quiet once it has started, so the test can play the pod
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0, failure: 'hang' } } });
    const { run } = await waitForRun(body.runId, (r) => r.status === 'RUNNING' && Boolean(r.taskArn), 30_000);
    const token = await takeOverPod(body.runId);
    expect(
      (await agent(body.runId, '/control', { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(200);

    const [execution] = await executionsOf(body.runId);
    const { events = [] } = await sfn().send(
      new GetExecutionHistoryCommand({ executionArn: execution?.executionArn, maxResults: 1000 }),
    );
    const history = JSON.stringify(events);
    expect(history).not.toContain('AGENT_TOKEN');
    expect(history).not.toContain(token);
    const code = /"Name":"AGENT_LAUNCH_CODE","Value":"([^"]+)"/.exec(history.replaceAll('\\"', '"'))?.[1];
    expect(code).toBeTruthy();
    // the pod spent it: the code from the history gets nothing, even with the run's own task
    const exchange = await agent(body.runId, '/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code, taskArn: run.taskArn }),
    });
    expect(exchange.status).toBe(401);

    expect(
      (
        await fetch(`${endpoints().apiUrl}/v1/runs/${body.runId}/stop`, {
          method: 'POST',
          headers: { authorization: `Bearer ${endpoints().token}` },
        })
      ).status,
    ).toBe(200);
    await expectKeptItsPromises(body.runId, 30_000);
    const after = await agent(body.runId, '/control', { headers: { authorization: `Bearer ${token}` } });
    expect(after.status).toBe(401);
  });
});
