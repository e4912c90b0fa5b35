import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DeleteLogStreamCommand } from '@aws-sdk/client-cloudwatch-logs';
import { describe, expect, it } from 'vitest';
import { PageCursors } from '../../shared/usecases/cursor.js';
import type { RunLogPage } from '../../shared/usecases/logs.js';
import { api, dispatch, endpoints, waitForRun, waitForTerminal } from './support/api.js';
import { cloudwatch, tokenFor, waitForTaskStopped, wholeStream } from './support/aws.js';

const logs = (runId: string, query: Record<string, string | number> = {}, token?: string) =>
  api<RunLogPage>(
    'GET',
    `/v1/runs/${runId}/logs?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]))}`,
    token === undefined ? {} : { token },
  );

/** A run that ran to the end, with its sandbox stopped (so its log is complete). */
const finishedRun = async (demo: Record<string, unknown>) => {
  const { body } = await dispatch({ config: { demo } });
  const { run } = await waitForTerminal(body.runId, 90_000);
  expect(run.status).toBe('COMPLETED');
  await waitForTaskStopped(run.taskArn as string);
  return run;
};

const numbered = (count: number) =>
  Array.from({ length: count }, (_, i) => `line ${String(i + 1).padStart(6, '0')} demo agent output`);
const isNumbered = (message: string) => /^line \d{6} demo agent output$/.test(message);

describe('GET /v1/runs/{runId}/logs', () => {
  it('pages back from the newest through 5,000 lines: every line once, in order, and the last page says nothing is older', async () => {
    const run = await finishedRun({ steps: 0, logLines: 5000, stepDelayMs: 0 });
    const pages: RunLogPage[] = [];
    let cursor: string | null = null;
    do {
      const answer: { status: number; body: RunLogPage } = await logs(run.runId, {
        limit: 100,
        ...(cursor ? { cursor } : {}),
      });
      expect(answer.status).toBe(200);
      expect(answer.body.items.length).toBeLessThanOrEqual(100);
      pages.push(answer.body);
      cursor = answer.body.nextCursor;
      expect(pages.length).toBeLessThan(200);
    } while (cursor);

    const messages = pages
      .reverse()
      .flatMap((page) => page.items)
      .map((e) => e.message);
    expect(messages.filter(isNumbered)).toEqual(numbered(5000));
    // the agent's own lines too: the pages hold the whole stream, nothing twice, nothing missing
    expect(messages).toEqual(await wholeStream(run.logStream as string, run.runId));
    const oldest = pages[0];
    expect(oldest?.items.length).toBeGreaterThan(0);
    expect(oldest?.nextCursor).toBeNull();
    expect(pages.at(-1)?.afterCursor).toEqual(expect.any(String));
  });

  it('follows with after= while the run writes, returning only the new lines', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 30, stepDelayMs: 150 } } });
    const { run: started } = await waitForRun(
      body.runId,
      (r) => r.status === 'RUNNING' && Boolean(r.logStream),
    );
    const first = (await logs(body.runId, { limit: 1000 })).body;
    const followed = [...first.items.map((e) => e.message)];
    let after = first.afterCursor as string;
    let pollsWithNewLinesWhileRunning = 0;
    let ended = false;
    for (;;) {
      const page = (await logs(body.runId, { after })).body;
      expect(page.nextCursor).toBeNull();
      followed.push(...page.items.map((e) => e.message));
      after = page.afterCursor as string;
      if (ended) break;
      const current = await api<{ status: string; taskArn?: string }>('GET', `/v1/runs/${body.runId}`);
      if (page.items.length > 0 && current.body.status === 'RUNNING') pollsWithNewLinesWhileRunning++;
      if (!['QUEUED', 'PROVISIONING', 'RUNNING'].includes(current.body.status)) {
        await waitForTaskStopped(current.body.taskArn as string);
        ended = true; // one more poll collects what the sandbox wrote last
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(pollsWithNewLinesWhileRunning).toBeGreaterThanOrEqual(2);
    expect(followed).toEqual(await wholeStream(started.logStream as string, started.runId));
    expect(followed.filter((m) => m.startsWith('agent: step '))).toHaveLength(30);
  });

  it('refuses a cursor of another run with 400, and hides another tenant’s run with 404', async () => {
    const [a, b] = await Promise.all([
      finishedRun({ steps: 1, logLines: 300, stepDelayMs: 0 }),
      finishedRun({ steps: 1, stepDelayMs: 0 }),
    ]);
    const page = (await logs(a.runId, { limit: 50 })).body;
    expect(page.nextCursor).toEqual(expect.any(String));
    expect((await logs(a.runId, { cursor: page.nextCursor as string })).status).toBe(200);
    const wrongRun = await logs(b.runId, { cursor: page.nextCursor as string });
    expect(wrongRun.status).toBe(400);
    expect(wrongRun.body).toMatchObject({ error: { code: 'ValidationError' } });
    expect((await logs(b.runId, { after: page.afterCursor as string })).status).toBe(400);
    expect((await logs(a.runId, { cursor: page.nextCursor as string, after: 'x' })).status).toBe(400);

    const stranger = await tokenFor({ sub: 'mallory', accountId: `acct-other-${Date.now()}` });
    const foreign = await logs(a.runId, {}, stranger);
    expect(foreign.status).toBe(404);
  });

  it('refuses with 400 a cursor it did not sign, and one whose position CloudWatch no longer takes', async () => {
    const run = await finishedRun({ steps: 1, logLines: 300, stepDelayMs: 0 });
    const position = JSON.stringify({ s: run.logStream, t: 'b/100' });
    // what a client could write before cursors were signed: the position and the query's fingerprint
    const handMade = Buffer.from(
      JSON.stringify({
        p: position,
        f: createHash('sha256')
          .update(JSON.stringify({ logs: run.runId, direction: 'older' }))
          .digest('base64url')
          .slice(0, 12),
      }),
    ).toString('base64url');
    const forged = await logs(run.runId, { cursor: handMade });
    expect(forged.status).toBe(400);
    expect(forged.body).toMatchObject({ error: { code: 'ValidationError', message: /not valid/ } });

    // A cursor the API signed whose token CloudWatch refuses, as it refuses an expired one: signed here
    // with the local cloud's key, which it keeps beside the dev issuer's.
    const key = await readFile(
      path.join(path.dirname(endpoints().devIssuerKeyPath), 'cursor-signing-secret'),
      'utf8',
    );
    const stale = new PageCursors(key.trim()).encode(
      { logs: run.runId, direction: 'older' },
      JSON.stringify({ s: run.logStream, t: 'token-of-yesterday' }),
    );
    const expired = await logs(run.runId, { cursor: stale });
    expect(expired.status).toBe(400);
    expect(expired.body).toMatchObject({ error: { code: 'ValidationError', message: /expired/ } });
  });

  it('answers a run that never started, and one whose stream has expired, with an empty page and a reason', async () => {
    const podId = `disabled-${Date.now()}`;
    const pod = { name: 'Disabled', cpu: 256, memoryMiB: 512, agent: { kind: 'demo' }, enabled: false };
    expect((await api('PUT', `/v1/pods/${podId}`, { body: pod })).status).toBe(200);
    const { body: queued } = await dispatch({ podId });
    const { run: cancelled } = await waitForTerminal(queued.runId);
    expect(cancelled.status).toBe('CANCELLED');
    expect((await logs(cancelled.runId)).body).toEqual({
      items: [],
      nextCursor: null,
      afterCursor: null,
      reason: 'not_started',
    });

    const ran = await finishedRun({ steps: 1, stepDelayMs: 0 });
    await cloudwatch().send(
      new DeleteLogStreamCommand({ logGroupName: endpoints().podLogGroup, logStreamName: ran.logStream }),
    );
    const expired = await logs(ran.runId);
    expect(expired.status).toBe(200);
    expect(expired.body).toEqual({ items: [], nextCursor: null, afterCursor: null, reason: 'expired' });
  });
});
