import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitCredentialSchema } from '../../shared/schemas/agent-events.js';
import { git, gitFailure } from '../support/git.js';
import { api, dispatch, endpoints, waitForQuietPod, waitForTerminal } from './support/api.js';
import { takeOverPod } from './support/aws.js';

/** The pod's git credential: from the Agent API with its run-scoped token, for the run's repositories. */

const askForCredential = (runId: string, token?: string) =>
  fetch(`${endpoints().apiUrl}/agent/v1/runs/${runId}/git-credentials`, {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });

describe('the pod’s git credential', () => {
  it('opens the demo repository to a running run’s pod, and is refused once the run has ended', async () => {
    // the pod goes quiet once it has started, so the test can play the pod
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0, failure: 'hang' } } });
    await waitForQuietPod(body.runId);
    const token = await takeOverPod(body.runId);

    const answer = await askForCredential(body.runId, token);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const credential = gitCredentialSchema.parse(await answer.json());
    expect(credential).toMatchObject({ username: 'x-access-token', repos: [endpoints().demoRepo] });
    const lifetime = Date.parse(credential.expiresAt) - Date.now();
    expect(lifetime).toBeGreaterThan(3500_000);
    expect(lifetime).toBeLessThanOrEqual(3600_000);

    const cwd = await mkdtemp(path.join(tmpdir(), 'pod-workspace-'));
    const { stdout } = await git(['ls-remote', endpoints().demoRepo], { cwd, credential });
    expect(stdout).toMatch(/^[0-9a-f]{40}\trefs\/heads\/main$/m);
    expect(await gitFailure(git(['ls-remote', endpoints().demoRepo], { cwd }))).toMatch(
      /could not read Username/,
    );
    // contents: write on the run's repositories, and nothing else: no pull request of its own
    const opening = await fetch(`${endpoints().services.github}/repos/demo/demo-app/pulls`, {
      method: 'POST',
      headers: { authorization: `token ${credential.password}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'mine', head: 'main', base: 'main' }),
    });
    expect(opening.status).toBe(403);

    expect((await askForCredential(body.runId)).status).toBe(401);
    expect((await api('POST', `/v1/runs/${body.runId}/stop`)).status).toBe(200);
    await waitForTerminal(body.runId, 30_000);
    const ended = await askForCredential(body.runId, token);
    expect(ended.status).toBe(401);
    // the token was deleted with the move that ended the run
    expect(await ended.json()).toMatchObject({ error: { code: 'Unauthorized' } });
  });

  it('is refused to a completed run, even with a token that matches it', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 0 } } });
    const { run } = await waitForTerminal(body.runId, 30_000);
    expect(run.status).toBe('COMPLETED');
    const token = await takeOverPod(body.runId);

    const answer = await askForCredential(body.runId, token);
    expect(answer.status).toBe(401);
    expect(await answer.json()).toMatchObject({ error: { message: 'the run has ended (COMPLETED)' } });
  });
});
