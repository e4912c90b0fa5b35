import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { GetExecutionHistoryCommand } from '@aws-sdk/client-sfn';
import { afterAll, describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import type { StepView } from '../../shared/usecases/timeline.js';
import { git } from '../support/git.js';
import { api, dispatch, endpoints, waitForRun, waitForTerminal } from './support/api.js';
import { approvalLinkFor, waitForApproval } from './support/approvals.js';
import { secretsManager, sfn, waitForTaskStopped, wholeStream } from './support/aws.js';

/** The real pod on the local cloud: clones, hooks, Claude Code on the local model, commits pushed. */

const FIXTURE_AGENT = fileURLToPath(new URL('../fixtures/agents/json-lines-agent.mjs', import.meta.url));
const scratch: string[] = [];
afterAll(async () => {
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** The branches the local git server holds for the demo repository, and their SHAs. */
const remoteBranches = async (): Promise<Map<string, string>> => {
  const e = endpoints();
  const minted = await fetch(`${e.services.git}/_local/tokens`, {
    method: 'POST',
    body: JSON.stringify({ repos: ['demo/demo-app.git'], ttlSeconds: 60 }),
  });
  const { token } = (await minted.json()) as { token: string };
  const cwd = await mkdtemp(path.join(tmpdir(), 'ls-remote-'));
  scratch.push(cwd);
  const { stdout } = await git(['ls-remote', '--heads', e.demoRepo], {
    cwd,
    credential: { username: 'x-access-token', password: token },
  });
  return new Map(
    stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [sha = '', ref = ''] = line.split('\t');
        return [ref.replace(/^refs\/heads\//, ''), sha];
      }),
  );
};

/** Every step of the run, page by page. */
const stepsOf = async (runId: string): Promise<StepView[]> => {
  const out: StepView[] = [];
  for (let after: number | null = 0; after !== null; ) {
    const page: { status: number; body: { items: StepView[]; nextAfter: number | null } } = await api(
      'GET',
      `/v1/runs/${runId}/steps?after=${after}&limit=100`,
    );
    expect(page.status).toBe(200);
    out.push(...page.body.items);
    after = page.body.nextAfter;
  }
  return out;
};

/** The run's whole log, once its sandbox has stopped. */
const logOf = async (run: Run): Promise<string[]> => {
  await waitForTaskStopped(run.taskArn as string);
  return wholeStream(run.logStream as string, run.runId);
};

const putPod = async (podId: string, pod: Record<string, unknown>) => {
  const { status, body } = await api('PUT', `/v1/pods/${podId}`, {
    body: { name: podId, cpu: 1024, memoryMiB: 2048, ...pod },
  });
  expect(status, JSON.stringify(body)).toBe(200);
  return podId;
};

const finished = async (request: Record<string, unknown>) => {
  const { status, body } = await dispatch(request);
  expect(status, JSON.stringify(body)).toBe(202);
  return (await waitForTerminal(body.runId, 90_000)).run;
};

describe('the demo pod (Claude Code on the local model)', () => {
  it('clones the demo repository, runs its hooks, edits and tests with Claude Code, and pushes its commit', async () => {
    const e = endpoints();
    const run = await finished({ podId: e.podId, itemId: 'DEMO-1', prompt: 'Add a health check endpoint' });

    expect(run.status, run.message).toBe('COMPLETED');
    const branch = `pods/${e.podId}/${run.runId}`;
    const [commit] = run.artifacts;
    expect(commit).toMatchObject({
      kind: 'commit',
      branch,
      repo: e.demoRepo,
      sha: expect.stringMatching(/^[0-9a-f]{40}$/),
    });
    expect((await remoteBranches()).get(branch)).toBe(commit?.sha);

    const steps = await stepsOf(run.runId);
    const calls = steps.filter((s) => s.kind === 'tool_call').map((s) => s.tool);
    expect(calls).toEqual(expect.arrayContaining(['Read', 'Edit', 'Write', 'Bash']));
    expect(
      steps.some((s) => s.kind === 'tool_result' && s.tool === 'Bash' && /# fail 0/.test(s.content ?? '')),
    ).toBe(true);
    expect(steps.some((s) => s.kind === 'assistant' && s.model === 'claude-sonnet-4-5')).toBe(true);
    expect(run.usage['claude-sonnet-4-5']).toMatchObject({
      inputTokens: expect.any(Number),
      outputTokens: expect.any(Number),
      costMicroUsd: expect.any(Number),
    });
    expect(run.usage['claude-sonnet-4-5']?.costMicroUsd).toBeGreaterThan(0);
    expect(run.cost.tokenUsd).toBeGreaterThan(0);
    expect(run.result).toMatchObject({ turns: expect.any(Number), durationMs: expect.any(Number) });

    const log = await logOf(run);
    expect(log).toContainEqual(expect.stringMatching(/^hook postStart \(.+\): git version/));
    expect(log).toContainEqual(expect.stringMatching(/^hook postClone \(demo-app\): .*# pass \d+/));
    expect(log).toContainEqual(expect.stringMatching(new RegExp(`^pod: pushed ${branch}`)));
    // the workspace went with the task
    expect((await readdir(tmpdir())).filter((name) => name.startsWith(`${run.runId}-`))).toEqual([]);
  });

  it('pauses at the plan with the plan, then at the commit with the files changed, and pushes once approved', async () => {
    const e = endpoints();
    const { body } = await dispatch({
      podId: e.podId,
      mode: 'supervised',
      prompt: 'Add a health check endpoint',
    });

    const { pending: plan, link } = await approvalLinkFor(body.runId);
    expect(plan.name).toBe('plan');
    // the approval page shows the checkpoint's details: the plan Claude Code wrote
    expect(await (await fetch(link)).text()).toMatch(/Add <code>health\(\)<\/code>|Add `health\(\)`/);
    expect((await remoteBranches()).has(`pods/${e.podId}/${body.runId}`)).toBe(false);
    expect((await api('POST', `/v1/runs/${body.runId}/approve`)).status).toBe(200);

    const { pending: commit } = await waitForApproval(body.runId, 60_000);
    expect(commit.name).toBe('commit');
    expect(commit.summary).toMatch(/^2 files changed \(\+\d+ -\d+\)\n/);
    expect(commit.summary).toContain('test/health.test.js');
    expect((await remoteBranches()).has(`pods/${e.podId}/${body.runId}`)).toBe(false);
    expect((await api('POST', `/v1/runs/${body.runId}/approve`)).status).toBe(200);

    const { run } = await waitForTerminal(body.runId, 60_000);
    expect(run.status).toBe('COMPLETED');
    expect((await remoteBranches()).get(`pods/${e.podId}/${body.runId}`)).toBe(run.artifacts[0]?.sha);
    expect(run.approvals?.map((a) => [a.name, a.decision])).toEqual([
      ['plan', 'approved'],
      ['commit', 'approved'],
    ]);
  });

  it('pushes nothing when the commit is cancelled: ABANDONED, no branch', async () => {
    const e = endpoints();
    const podId = await putPod('claude-commit-only', {
      agent: { kind: 'claude-code', model: 'claude-sonnet-4-5' },
      checkpoints: ['commit'],
    });
    const { body } = await dispatch({ podId, mode: 'supervised' });
    const { pending } = await waitForApproval(body.runId, 60_000);
    expect(pending.name).toBe('commit');
    expect((await api('POST', `/v1/runs/${body.runId}/cancel`)).status).toBe(200);

    const { run } = await waitForTerminal(body.runId, 30_000);
    expect(run.status).toBe('ABANDONED');
    await waitForTaskStopped(run.taskArn as string);
    expect(run.artifacts).toEqual([]);
    expect((await remoteBranches()).has(`pods/${e.podId}/${body.runId}`)).toBe(false);
    expect((await remoteBranches()).has(`pods/${podId}/${body.runId}`)).toBe(false);
  });
});

describe('a run the sandbox cannot set up', () => {
  it.each([
    [
      'fails',
      { command: 'echo "installing"; echo "npm ERR! missing script: setup" >&2; exit 1', timeoutSeconds: 30 },
      /^hook postClone exited with 1 in demo-app:\ninstalling\nnpm ERR! missing script: setup$/,
    ],
    [
      'times out',
      { command: 'echo "waiting for a lock"; sleep 60', timeoutSeconds: 1 },
      /^hook postClone timed out after 1 s in demo-app:\nwaiting for a lock$/,
    ],
  ])(
    'ends FAILED / lifecycle_hook_failed when the postClone hook %s, with its output’s tail',
    async (_, hook, said) => {
      const podId = await putPod(`hook-${hook.timeoutSeconds}`, {
        agent: { kind: 'demo' },
        hooks: { postClone: hook },
      });
      const run = await finished({ podId });

      expect(run.status).toBe('FAILED');
      expect(run.exitReason).toBe('lifecycle_hook_failed');
      expect(run.message).toMatch(said);
      expect(await logOf(run)).toContainEqual(expect.stringMatching(/^hook postClone \(demo-app\): /));
    },
  );

  it('ends CANCELLED / missing_repo_access, before anything launches, naming a repository the installation does not cover', async () => {
    const missing = `${endpoints().services.git}/demo/no-such-app.git`;
    const run = await finished({ repos: [endpoints().demoRepo, missing] });

    expect(run.status).toBe('CANCELLED');
    expect(run.exitReason).toBe('missing_repo_access');
    expect(run.message).toBe(`the GitHub App installation 1 (demo) does not cover ${missing}`);
    expect(run.taskArn).toBeUndefined();
  });
});

describe('a team’s own agent over the JSON-lines protocol', () => {
  it('runs end to end: its plan, steps and usage reported, its change committed and pushed', async () => {
    const podId = await putPod('fixture-agent', {
      agent: { kind: 'command', command: [process.execPath, FIXTURE_AGENT] },
    });
    const run = await finished({ podId, itemId: 'CMD-1' });

    expect(run.status, run.message).toBe('COMPLETED');
    expect(run.result?.message).toBe('Wrote NOTES.md for CMD-1.');
    expect((await remoteBranches()).get(`pods/${podId}/${run.runId}`)).toBe(run.artifacts[0]?.sha);
    expect(run.usage['claude-sonnet-4-5']).toMatchObject({ inputTokens: 4600, outputTokens: 230 });
    const steps = await stepsOf(run.runId);
    expect(steps.map((s) => [s.kind, s.tool ?? null])).toEqual([
      ['assistant', null],
      ['tool_call', 'Write'],
      ['tool_result', 'Write'],
    ]);
  });

  it.each([
    ['prints garbage', 'garbage', 'Thinking about it... {not json'],
    ['exits mid-step', 'vanish', 'exited (code 3) before it reported done or failed'],
  ])('ends FAILED / error when it %s, the offending line in the log', async (_, mode, said) => {
    const podId = await putPod(`fixture-agent-${mode}`, {
      agent: { kind: 'command', command: [process.execPath, FIXTURE_AGENT] },
      env: { FIXTURE_AGENT: mode },
    });
    const run = await finished({ podId });

    expect(run.status).toBe('FAILED');
    expect(run.exitReason).toBe('error');
    expect(run.message).toContain(said);
    expect((await logOf(run)).some((line) => line.includes(said))).toBe(true);
  });
});

describe('waiting on a supervised run', () => {
  it('shows a plan that changed nothing: the agent’s early edit fails the run before any approval', async () => {
    const podId = await putPod('fixture-agent-early', {
      agent: { kind: 'command', command: [process.execPath, FIXTURE_AGENT] },
      env: { FIXTURE_AGENT: 'early' },
    });
    const { body } = await dispatch({ podId, mode: 'supervised' });
    const { run } = await waitForRun(
      body.runId,
      (r) => r.status === 'FAILED' || r.status === 'AWAITING_APPROVAL',
      60_000,
    );

    expect(run.status).toBe('FAILED');
    expect(run.message).toMatch(/changed .* before its plan was approved/);
    expect(run.approvals ?? []).toEqual([]);
  });
});

describe('a pod’s secret', () => {
  it('reaches the agent, and shows in none of the execution history, the run record, the log or the steps', async () => {
    const e = endpoints();
    const name = `execution-runs/pods/${e.accountId}/fixture-secret-${Date.now().toString(36)}`;
    const value = `sk-fixture-${Date.now().toString(36)}-7f3a9c`;
    await secretsManager().send(new CreateSecretCommand({ Name: name, SecretString: value }));
    const podId = await putPod('fixture-agent-secret', {
      agent: { kind: 'command', command: [process.execPath, FIXTURE_AGENT] },
      env: { FIXTURE_AGENT: 'secret' },
      secrets: { FIXTURE_SECRET: name },
    });
    const run = await finished({ podId });

    expect(run.status, run.message).toBe('COMPLETED');
    const steps = await stepsOf(run.runId);
    // the agent had it: it said it, and what reached the backend is masked
    expect(steps.map((s) => s.content)).toContain('The secret is ***.');
    const log = await logOf(run);
    expect(log).toContainEqual(expect.stringContaining('FIXTURE_SECRET=***'));
    const history = await sfn().send(
      new GetExecutionHistoryCommand({ executionArn: run.executionArn as string, maxResults: 1000 }),
    );
    const everywhere = [
      JSON.stringify(history.events),
      JSON.stringify(await api('GET', `/v1/runs/${run.runId}`)),
      JSON.stringify(steps),
      log.join('\n'),
    ];
    for (const place of everywhere) expect(place).not.toContain(value);
  });
});
