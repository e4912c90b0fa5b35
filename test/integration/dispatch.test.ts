import { execFileSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, endpoints, waitForTerminal } from './support/api.js';
import { tokenFor } from './support/aws.js';

type Page = { items: Run[]; nextCursor: string | null };

const countRuns = async () => {
  let total = 0;
  let cursor: string | null = null;
  do {
    const page: { body: Page } = await api<Page>(
      'GET',
      `/v1/runs?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
    );
    total += page.body.items.length;
    cursor = page.body.nextCursor;
  } while (cursor);
  return total;
};

describe('dispatch', () => {
  it.each([
    ['bad JSON', { rawBody: '{"itemId": ', headers: { 'content-type': 'application/json' } }, 400],
    ['no body', { rawBody: '' }, 400],
    ['a missing field', { body: { podId: 'demo-pod', mode: 'autopilot', prompt: 'x' } }, 400],
    ['a mistyped field', { body: { itemId: 42, podId: 'demo-pod', mode: 'autopilot', prompt: 'x' } }, 400],
    ['an unknown mode', { body: { itemId: 'I', podId: 'demo-pod', mode: 'yolo', prompt: 'x' } }, 400],
    [
      'an unknown field',
      { body: { itemId: 'I', podId: 'demo-pod', mode: 'autopilot', prompt: 'x', extra: 1 } },
      400,
    ],
    ['an unknown pod', { body: { itemId: 'I', podId: 'no-such-pod', mode: 'autopilot', prompt: 'x' } }, 400],
    [
      'a body over 256 KB',
      { body: { itemId: 'I', podId: 'demo-pod', mode: 'autopilot', prompt: 'x'.repeat(270_000) } },
      413,
    ],
    [
      'a bad demo script',
      {
        body: {
          itemId: 'I',
          podId: 'demo-pod',
          mode: 'autopilot',
          prompt: 'x',
          config: { demo: { steps: -1 } },
        },
      },
      400,
    ],
  ] as const)('answers %s with a 4xx and a message, and writes nothing', async (_, request, expected) => {
    const before = await countRuns();
    const answer = await api<{ error: { code: string; message: string } }>(
      'POST',
      `/v1/projects/${endpoints().projectId}/runs`,
      request,
    );
    expect(answer.status).toBe(expected);
    expect(answer.body.error.message).toEqual(expect.any(String));
    expect(answer.body.error.message.length).toBeGreaterThan(3);
    expect(await countRuns()).toBe(before);
  });

  it('answers 401 without a token', async () => {
    expect((await api('GET', '/v1/runs', { token: null })).status).toBe(401);
  });

  it("treats another tenant's project and runs as not found", async () => {
    const { body: run } = await dispatch({ config: { demo: { steps: 1, stepDelayMs: 1 } } });
    const stranger = await tokenFor({ sub: 'mallory', accountId: 'other-account', accountRole: 'admin' });
    const onProject = await api('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      token: stranger,
      body: { itemId: 'I', podId: 'demo-pod', mode: 'autopilot', prompt: 'x' },
    });
    expect(onProject.status).toBe(404);
    expect((await api('GET', `/v1/runs/${run.runId}`, { token: stranger })).status).toBe(404);
    expect((await api('POST', `/v1/runs/${run.runId}/stop`, { token: stranger })).status).toBe(404);
    const theirList = await api<Page>('GET', '/v1/runs', { token: stranger });
    expect(theirList.body.items).toEqual([]);
  });

  it('refuses a project viewer, and lets a member dispatch but not stop', async () => {
    const member = await tokenFor({ sub: 'demo-member', accountId: endpoints().accountId });
    const { status, body } = await api<Run>('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      token: member,
      body: {
        itemId: 'I',
        podId: endpoints().scriptedPodId,
        mode: 'autopilot',
        prompt: 'x',
        config: { demo: { steps: 1, stepDelayMs: 1 } },
      },
    });
    expect(status).toBe(202);
    expect((await api('POST', `/v1/runs/${body.runId}/stop`, { token: member })).status).toBe(403);
    const outsider = await tokenFor({ sub: 'not-in-project', accountId: endpoints().accountId });
    const refused = await api('POST', `/v1/projects/${endpoints().projectId}/runs`, {
      token: outsider,
      body: { itemId: 'I', podId: 'demo-pod', mode: 'autopilot', prompt: 'x' },
    });
    expect(refused.status).toBe(403);
  });

  it('honours Idempotency-Key: the same key returns the same run and queues it once', async () => {
    const key = `key-${Date.now()}`;
    const first = await dispatch(
      { config: { demo: { steps: 1, stepDelayMs: 1 } } },
      { 'idempotency-key': key },
    );
    const second = await dispatch(
      { config: { demo: { steps: 1, stepDelayMs: 1 } } },
      { 'idempotency-key': key },
    );
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.runId).toBe(first.body.runId);
    await waitForTerminal(first.body.runId);
  });
});

describe('run lists', () => {
  it('lists newest first, filtered by status chips and pod, in pages whose cursors visit each run once', async () => {
    const project = endpoints().projectId;
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      created.push(
        (await dispatch({ itemId: `LIST-${i}`, config: { demo: { steps: 1, stepDelayMs: 1 } } })).body.runId,
      );
    }
    await Promise.all(created.map((id) => waitForTerminal(id)));
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: Page } = await api<Page>(
        'GET',
        `/v1/projects/${project}/runs?status=COMPLETED,FAILED&podId=${endpoints().scriptedPodId}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      for (const run of page.body.items) expect(['COMPLETED', 'FAILED']).toContain(run.status);
      seen.push(...page.body.items.map((r) => r.runId));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort().reverse()).toEqual(seen);
    for (const id of created) expect(seen).toContain(id);
  });

  it('refuses a cursor from another query', async () => {
    const page = await api<Page>('GET', '/v1/runs?limit=1');
    expect(page.body.nextCursor).toBeTruthy();
    const misuse = await api('GET', `/v1/runs?status=FAILED&limit=1&cursor=${page.body.nextCursor}`);
    expect(misuse.status).toBe(400);
  });

  it('refuses an unknown status chip and a limit out of range', async () => {
    expect((await api('GET', '/v1/runs?status=NOPE')).status).toBe(400);
    expect((await api('GET', '/v1/runs?limit=101')).status).toBe(400);
  });
});

describe("a newcomer's first steps", () => {
  it('the curl printed by npm start dispatches a run', () => {
    const output = inject('startupOutput');
    const lines = output.split('\n');
    const exportLine = lines.find((l) => l.startsWith('export TOKEN='));
    const curlLine = lines.find((l) => l.startsWith('curl -s -X POST'));
    expect(exportLine).toBeTruthy();
    expect(curlLine).toBeTruthy();
    const answer = execFileSync('bash', ['-c', `${exportLine}\n${curlLine}`], { encoding: 'utf8' });
    const run = JSON.parse(answer) as Run;
    expect(run.status).toBe('QUEUED');
    expect(run.runId).toMatch(/^run_/);
  });
});
