import { afterEach, describe, expect, it } from 'vitest';
import type { Control } from '../../shared/schemas/agent-events.js';
import { AgentApi, type RunGoneError } from './agent-api.js';
import { Reporter, type ReporterOptions } from './reporter.js';
import { type FakeAgentApiOptions, startFakeAgentApi } from './testing/fake-agent-api.js';

const servers: { close(): Promise<void> }[] = [];
const reporters: Reporter[] = [];

afterEach(async () => {
  for (const reporter of reporters.splice(0)) reporter.discard();
  for (const server of servers.splice(0)) await server.close();
});

const setUp = async (fake: FakeAgentApiOptions = {}, options: ReporterOptions = {}) => {
  const server = await startFakeAgentApi(fake);
  servers.push(server);
  const reporter = new Reporter(new AgentApi(server.url, server.runId, server.token), {
    retryBaseMs: 5,
    retryMaxMs: 20,
    ...options,
  });
  reporters.push(reporter);
  return { server, reporter };
};

const step = (content: string) => ({ type: 'step', kind: 'assistant', content }) as const;
// Generous: a loaded CI machine is slow, and every interval under test is far longer or far shorter.
const eventually = async (check: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('Reporter', () => {
  it('numbers events from 1 and sends those emitted together in one batch', async () => {
    const { server, reporter } = await setUp({}, { flushIntervalMs: 50 });

    reporter.emit({ type: 'phase', phase: 'STARTED' });
    reporter.emit(step('a'));
    reporter.emit({ type: 'heartbeat' });
    await eventually(() => server.posts.length === 1);
    reporter.emit(step('b'));
    await reporter.flush();

    expect(server.posts.map((batch) => batch.map((e) => e.seq))).toEqual([[1, 2, 3], [4]]);
    expect(server.accepted().map((e) => e.type)).toEqual(['phase', 'step', 'heartbeat', 'step']);
    expect(server.authorizations.every((a) => a === `Bearer ${server.token}`)).toBe(true);
    expect(server.invalidBodies).toEqual([]);
  });

  it('waits for the flush interval before sending a lone event', async () => {
    const { server, reporter } = await setUp({}, { flushIntervalMs: 1500 });

    reporter.emit(step('a'));
    await new Promise((r) => setTimeout(r, 100));
    const sentEarly = server.posts.length;
    await eventually(() => server.posts.length === 1);

    expect(sentEarly).toBe(0);
  });

  it('sends at once when 100 events are queued, without waiting for the interval', async () => {
    const { server, reporter } = await setUp({}, { flushIntervalMs: 60_000 });

    for (let i = 0; i < 150; i++) reporter.emit(step(`s${i}`));
    // the rest may follow at once: what matters is that the first 100 went without the interval
    await eventually(() => server.posts.length >= 1);
    const firstBatch = server.posts[0]?.map((e) => e.seq);
    await reporter.flush();

    expect(firstBatch).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(server.accepted()).toHaveLength(150);
  });

  it('sends checkpoints and results at once', async () => {
    const { server, reporter } = await setUp({}, { flushIntervalMs: 60_000 });

    reporter.emit(step('plan'));
    reporter.emit({ type: 'checkpoint', name: 'plan', summary: 'review the plan' });
    await eventually(() => server.posts.length === 1);
    reporter.emit({ type: 'result', outcome: 'completed' });
    await eventually(() => server.posts.length === 2);

    expect(server.posts.map((batch) => batch.map((e) => e.type))).toEqual([
      ['step', 'checkpoint'],
      ['result'],
    ]);
  });

  it('keeps a batch under the byte limit, sending a larger event alone', async () => {
    const { server, reporter } = await setUp({}, { maxBatchBytes: 1000, flushIntervalMs: 60_000 });

    reporter.emit(step('small'));
    reporter.emit(step('x'.repeat(5000)));
    reporter.emit(step('small again'));
    await reporter.flush();

    expect(server.posts.map((batch) => batch.map((e) => e.seq))).toEqual([[1], [2], [3]]);
  });

  it('retries a 503 and a dropped connection, resending the same seqs', async () => {
    const { server, reporter } = await setUp(
      { eventsAnswer: (_batch, n) => (n === 1 ? { status: 503 } : n === 2 ? { hangUp: true } : {}) },
      { flushIntervalMs: 10 },
    );

    reporter.emit({ type: 'phase', phase: 'STARTED' });
    reporter.emit(step('a'));
    await eventually(() => server.posts.length >= 1);
    reporter.emit(step('b'));
    await reporter.flush();

    expect(server.posts.map((batch) => batch.map((e) => e.seq))).toEqual([[1, 2], [1, 2], [1, 2], [3]]);
    expect(server.accepted().map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('retries 429 answers too', async () => {
    const { server, reporter } = await setUp({ eventsAnswer: (_b, n) => (n < 3 ? { status: 429 } : {}) });

    reporter.emit({ type: 'result', outcome: 'completed' });
    await reporter.flush();

    expect(server.posts).toHaveLength(3);
    expect(server.accepted()).toHaveLength(1);
  });

  it.each([401, 403, 404])('stops sending for good after a %i answer', async (status) => {
    const gone: RunGoneError[] = [];
    const { server, reporter } = await setUp(
      { eventsAnswer: () => ({ status }) },
      { onGone: (err) => gone.push(err), flushIntervalMs: 10 },
    );

    reporter.emit(step('a'));
    await reporter.flush();
    reporter.emit(step('b'));
    await reporter.flush();

    expect(gone.map((e) => e.status)).toEqual([status]);
    expect(server.posts).toHaveLength(1);
    expect(reporter.isGone).toBe(true);
  });

  it('hands the control of every answer to onControl', async () => {
    const controls: Control[] = [];
    const { reporter } = await setUp(
      {
        eventsAnswer: (_b, n) => ({
          control: n === 1 ? { action: 'wait', pollAfterMs: 100 } : { action: 'stop' },
        }),
      },
      { onControl: (c) => controls.push(c) },
    );

    reporter.emit({ type: 'checkpoint', name: 'plan', summary: 's' });
    await reporter.flush();
    reporter.emit({ type: 'heartbeat' });
    await reporter.flush();

    expect(controls).toEqual([{ action: 'wait', pollAfterMs: 100 }, { action: 'stop' }]);
  });

  it('sends a heartbeat at the interval it is given', async () => {
    const { server, reporter } = await setUp({}, { flushIntervalMs: 5 });

    reporter.startHeartbeats(30);
    await eventually(() => server.accepted().length >= 3);
    reporter.stopHeartbeats();
    const count = server.accepted().length;
    await new Promise((r) => setTimeout(r, 80));

    expect(server.accepted().every((e) => e.type === 'heartbeat')).toBe(true);
    expect(server.accepted().length).toBe(count);
  });

  it('gives up retrying when closed with a deadline', async () => {
    const { server, reporter } = await setUp({ eventsAnswer: () => ({ status: 500 }) }, { retryBaseMs: 20 });

    reporter.emit(step('a'));
    const started = Date.now();
    await reporter.close(150);

    expect(Date.now() - started).toBeLessThan(1000);
    expect(server.posts.length).toBeGreaterThan(1);
    expect(server.accepted()).toEqual([]);
  });
});
