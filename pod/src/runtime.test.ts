import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../shared/schemas/agent-events.js';
import { AgentApi } from './agent-api.js';
import { type PodOptions, runPod } from './runtime.js';
import { type FakeAgentApi, type FakeAgentApiOptions, startFakeAgentApi } from './testing/fake-agent-api.js';

/** Collects what the pod writes; optionally slow, to exercise back-pressure. */
class Capture extends Writable {
  text = '';
  maxBuffered = 0;

  constructor(private readonly delayMs = 0) {
    super({ highWaterMark: 1024 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    this.maxBuffered = Math.max(this.maxBuffered, this.writableLength);
    this.text += chunk.toString();
    if (this.delayMs > 0) setTimeout(done, this.delayMs);
    else done();
  }
}

const FAST = { flushIntervalMs: 10, retryBaseMs: 5, retryMaxMs: 20, finalFlushMs: 500, pollMs: 10 };
const servers: FakeAgentApi[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

const startRun = async (
  demo: Record<string, unknown>,
  fake: FakeAgentApiOptions = {},
  extra: Partial<PodOptions> = {},
) => {
  const server = await startFakeAgentApi({ ...fake, config: { demo, ...fake.config } });
  servers.push(server);
  const stdout = extra.stdout instanceof Capture ? extra.stdout : new Capture();
  const stderr = new Capture();
  const exit = runPod({
    runId: server.runId,
    api: new AgentApi(server.url, server.runId, server.token),
    stdout,
    stderr,
    timing: FAST,
    ...extra,
  });
  return { server, stdout, stderr, exit };
};
const run = async (
  demo: Record<string, unknown>,
  fake: FakeAgentApiOptions = {},
  extra: Partial<PodOptions> = {},
) => {
  const started = await startRun(demo, fake, extra);
  return { ...started, code: await started.exit };
};

const phases = (events: AgentEvent[]) => events.flatMap((e) => (e.type === 'phase' ? [e.phase] : []));
const ofType = <T extends AgentEvent['type']>(events: AgentEvent[], type: T) =>
  events.filter((e): e is Extract<AgentEvent, { type: T }> => e.type === type);
const eventually = async (check: () => boolean, timeoutMs = 3000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};
const expectContiguousSeqs = (events: AgentEvent[]) =>
  expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));

const usage = [
  { model: 'claude-sonnet-4', inputTokens: 1000, outputTokens: 200, cacheReadTokens: 50 },
  { model: 'claude-haiku-4', inputTokens: 10, outputTokens: 5 },
];

describe('pod runtime with the demo agent', () => {
  it('walks the phases in order and, with no repository to change, completes without a commit', async () => {
    const { server, code, stdout } = await run({ steps: 4, stepDelayMs: 1, usage });
    const events = server.accepted();

    expect(code).toBe(0);
    expect(server.invalidBodies).toEqual([]);
    expect(phases(events)).toEqual(['STARTED', 'PLANNING', 'EXECUTING', 'COMMITTING']);
    expectContiguousSeqs(events);
    const steps = ofType(events, 'step');
    expect(steps.map((s) => s.kind)).toEqual([
      'assistant',
      'assistant',
      'tool_call',
      'tool_result',
      'assistant',
    ]);
    expect(steps[2]).toMatchObject({ tool: 'bash', args: { command: expect.any(String) } });
    expect(ofType(events, 'usage')).toEqual(
      Array.from({ length: 4 }, () =>
        usage.map((u) => expect.objectContaining({ ...u, cacheReadTokens: u.cacheReadTokens ?? 0 })),
      ).flat(),
    );
    expect(ofType(events, 'artifact')).toEqual([]);
    expect(events.at(-1)).toMatchObject({
      type: 'result',
      outcome: 'completed',
      message: expect.stringMatching(/^No changes, no commit/),
    });
    expect(stdout.text).toContain('pod: phase COMMITTING');
  });

  it('waits at a checkpoint, polling control until the backend says continue', async () => {
    let postsWhenContinued = -1;
    const posts: AgentEvent[][] = [];
    const { server, exit } = await startRun(
      { steps: 2, stepDelayMs: 0 },
      {
        config: { mode: 'supervised', checkpoints: ['plan'] },
        eventsAnswer: (batch) => {
          posts.push(batch);
          return batch.some((e) => e.type === 'checkpoint')
            ? { control: { action: 'wait', pollAfterMs: 15 } }
            : {};
        },
        controlAnswer: (n) => {
          if (n < 3) return { control: { action: 'wait', pollAfterMs: 15 } };
          postsWhenContinued = posts.length;
          return { control: { action: 'continue' } };
        },
      },
    );
    const code = await exit;
    const events = server.accepted();

    expect(code).toBe(0);
    expect(server.controlRequests).toBe(3);
    expect(ofType(events, 'checkpoint')).toEqual([
      expect.objectContaining({
        name: 'plan',
        summary: 'Plan for item-1',
        details: expect.stringContaining('2. Make the change in 2 steps.'),
      }),
    ]);
    const sentBeforeContinue = server.posts.slice(0, postsWhenContinued).flat();
    expect(phases(sentBeforeContinue)).toEqual(['STARTED', 'PLANNING']);
    expect(phases(events).at(-1)).toBe('COMMITTING');
  });

  it('ends without a result when told to stop while waiting', async () => {
    const { server, code } = await run(
      { steps: 2 },
      {
        config: { checkpoints: ['plan'] },
        eventsAnswer: (batch) =>
          batch.some((e) => e.type === 'checkpoint') ? { control: { action: 'wait' } } : {},
        controlAnswer: (n) => ({
          control: n < 2 ? { action: 'wait', pollAfterMs: 10 } : { action: 'stop', reason: 'cancelled' },
        }),
      },
    );

    expect(code).toBe(0);
    expect(phases(server.accepted())).toEqual(['STARTED', 'PLANNING']);
    expect(ofType(server.accepted(), 'result')).toEqual([]);
  });

  it('aborts the agent and exits 0 when an events answer says stop', async () => {
    const started = Date.now();
    const { server, code, stdout } = await run(
      { steps: 200, stepDelayMs: 10 },
      {
        eventsAnswer: (_b, n) =>
          n >= 3 ? { control: { action: 'stop', reason: 'user stopped the run' } } : {},
      },
    );

    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(ofType(server.accepted(), 'step').length).toBeLessThan(50);
    expect(ofType(server.accepted(), 'result')).toEqual([]);
    expect(stdout.text).toContain('the backend said stop: user stopped the run');
  });

  it.each(['tool_call_failed', 'error'] as const)(
    'reports %s after the first executing step as a failed result',
    async (failure) => {
      const { server, code } = await run({ steps: 5, failure });
      const events = server.accepted();

      expect(code).toBe(0);
      expect(phases(events)).toEqual(['STARTED', 'PLANNING', 'EXECUTING', 'FAILED']);
      const executing = events.findIndex((e) => e.type === 'phase' && e.phase === 'EXECUTING');
      expect(ofType(events.slice(executing), 'step')).toHaveLength(1);
      expect(events.at(-1)).toEqual(
        expect.objectContaining({
          type: 'result',
          outcome: 'failed',
          exitReason: failure,
          message: expect.any(String),
        }),
      );
    },
  );

  it('crashes with exit code 1 and no result', async () => {
    const { server, code, stderr } = await run({ steps: 5, failure: 'crash' });

    expect(code).toBe(1);
    expect(phases(server.accepted())).toEqual(['STARTED', 'PLANNING', 'EXECUTING']);
    expect(ofType(server.accepted(), 'result')).toEqual([]);
    expect(stderr.text).toContain('crashed');
  });

  it('hangs without heartbeats until the container is stopped', async () => {
    const terminate = new AbortController();
    const { server, exit } = await startRun(
      { steps: 5, failure: 'hang' },
      { config: { heartbeatSeconds: 1 } },
      { terminate: terminate.signal },
    );
    await eventually(() => phases(server.accepted()).includes('EXECUTING'));
    await new Promise((r) => setTimeout(r, 800));
    const heartbeats = ofType(server.accepted(), 'heartbeat').length;
    let ended = false;
    void exit.then(() => {
      ended = true;
    });

    terminate.abort();

    expect(heartbeats).toBe(0);
    expect(ended).toBe(false);
    expect(await exit).toBe(0);
    expect(ofType(server.accepted(), 'result')).toEqual([]);
  });

  it('sends no heartbeats while it waits for a decision, and heartbeats again once told to continue', async () => {
    const { server, code } = await run(
      { steps: 3, stepDelayMs: 600 },
      {
        config: { heartbeatSeconds: 1, checkpoints: ['plan'] },
        eventsAnswer: (batch) =>
          batch.some((e) => e.type === 'checkpoint') ? { control: { action: 'wait' } } : {},
        controlAnswer: (n) => ({
          control: n < 12 ? { action: 'wait', pollAfterMs: 100 } : { action: 'continue' },
        }),
      },
    );

    expect(code).toBe(0);
    const accepted = server.accepted();
    const checkpointAt = accepted.findIndex((e) => e.type === 'checkpoint');
    const resumedAt = accepted.findIndex((e, i) => i > checkpointAt && e.type !== 'heartbeat');
    const waitMs = Date.parse(accepted[resumedAt]?.at ?? '') - Date.parse(accepted[checkpointAt]?.at ?? '');
    // 12 polls 100 ms apart, over three heartbeats' worth; one that fell due while the checkpoint was
    // being delivered is all the wait may hold
    expect(waitMs).toBeGreaterThan(1100);
    expect(accepted.slice(checkpointAt + 1, resumedAt).length).toBeLessThanOrEqual(1);
    // the steps after the decision take 1.2 s: heartbeats every 333 ms again
    expect(ofType(accepted.slice(resumedAt), 'heartbeat').length).toBeGreaterThanOrEqual(2);
    expect(server.controlRequests).toBe(12);
  });

  it('delivers what it emitted and exits 0 when the container is stopped', async () => {
    const terminate = new AbortController();
    const { server, stdout, exit } = await startRun(
      { steps: 500, stepDelayMs: 5 },
      {},
      // nothing leaves on the timer: only the final flush can deliver the steps
      { terminate: terminate.signal, timing: { ...FAST, flushIntervalMs: 60_000 } },
    );
    await eventually(() => stdout.text.includes('step 5/500'));

    terminate.abort();
    const code = await exit;
    const events = server.accepted();

    expect(code).toBe(0);
    expectContiguousSeqs(events);
    const loggedSteps = stdout.text.match(/step \d+\/500/g) ?? [];
    expect(ofType(events, 'step')).toHaveLength(loggedSteps.length + 1);
    expect(ofType(events, 'result')).toEqual([]);
  });

  it('retries fetching its config and sends its token', async () => {
    const { server, code } = await run({ steps: 1 }, { configAnswer: (n) => (n < 3 ? { status: 503 } : {}) });

    expect(code).toBe(0);
    expect(server.authorizations[0]).toBe(`Bearer ${server.token}`);
    expect(phases(server.accepted()).at(-1)).toBe('COMMITTING');
  });

  it('exits 0 without sending anything when the run is gone at start', async () => {
    const { server, code } = await run({ steps: 1 }, { configAnswer: () => ({ status: 404 }) });

    expect(code).toBe(0);
    expect(server.posts).toEqual([]);
  });

  it('stops the agent and exits 0 when its token is refused mid-run', async () => {
    const { server, code } = await run(
      { steps: 100, stepDelayMs: 5 },
      { eventsAnswer: (_b, n) => (n >= 2 ? { status: 401 } : {}) },
    );

    expect(code).toBe(0);
    expect(server.posts).toHaveLength(2);
  });

  it('writes numbered log lines no faster than stdout takes them', async () => {
    const stdout = new Capture(1);
    const { code } = await run({ steps: 1, logLines: 3000 }, {}, { stdout });
    const lines = stdout.text.split('\n').filter((l) => l.startsWith('line '));

    expect(code).toBe(0);
    expect(lines).toHaveLength(3000);
    expect(lines[0]).toMatch(/^line 000001 /);
    expect(lines.map((l) => Number(l.slice(5, 11)))).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1));
    expect(stdout.maxBuffered).toBeLessThan(40_000);
  });

  it('sends one large assistant step of the requested size', async () => {
    const { server, code } = await run({ steps: 1, bigStepBytes: 300_000 });

    expect(code).toBe(0);
    expect(ofType(server.accepted(), 'step').map((s) => s.content.length)).toContain(300_000);
  });

  it('reports an unusable demo script as a failed result and exits 1', async () => {
    const { server, code } = await run({ steps: -1 });

    expect(code).toBe(1);
    expect(server.accepted().at(-1)).toMatchObject({
      type: 'result',
      outcome: 'failed',
      exitReason: 'error',
    });
  });
});
