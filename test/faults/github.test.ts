import { afterEach, describe, expect, it } from 'vitest';
import { dispatch, endpoints, waitForRun, waitForTerminal } from '../integration/support/api.js';
import { clearFaults, dynamoFault } from './support/faults.js';

/**
 * A pull request's fate whose webhook was lost: GitHub does not deliver again by itself, so the
 * sweep of open pull requests (every 3 s here, daily as deployed) reads it and settles the run.
 */

afterEach(clearFaults);

describe('a lost pull request webhook', () => {
  it('is made up for by the sweep: the run becomes PR_REJECTED all the same', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0 } } });
    const { run } = await waitForTerminal(body.runId, 60_000);
    expect(run).toMatchObject({ status: 'COMPLETED', pullRequest: { state: 'open' } });

    // the webhook's function cannot write: its delivery fails, and GitHub leaves it at that
    await dynamoFault({ function: 'githubWebhooks', error: 'ThrottlingException', times: 1000 });
    const closed = await fetch(
      `${endpoints().services.github}/repos/demo/demo-app/pulls/${run.pullRequest?.number}`,
      {
        method: 'PATCH',
        headers: {
          authorization: `token ${endpoints().github.userToken}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ state: 'closed' }),
      },
    );
    expect(closed.status).toBe(200);
    const failedDelivery = async () => {
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`${endpoints().services.github}/_local/deliveries`);
        const deliveries = (await res.json()) as {
          action: string;
          status_code: number;
          request: { payload: { pull_request?: { number: number } } };
        }[];
        const found = deliveries.find(
          (d) => d.action === 'closed' && d.request.payload.pull_request?.number === run.pullRequest?.number,
        );
        if (found) return found;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the closed pull request was never delivered');
    };
    expect((await failedDelivery()).status_code).toBeGreaterThanOrEqual(500);

    const { run: settled } = await waitForRun(body.runId, (r) => r.status === 'PR_REJECTED', 20_000);
    expect(settled.pullRequest).toMatchObject({ state: 'closed' });
  });
});
