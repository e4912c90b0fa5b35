import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentEvent, PodRunConfig } from '../../shared/schemas/agent-events.js';
import { AgentApi } from './agent-api.js';
import { runPod } from './runtime.js';
import { type FakeAgentApi, type FakeAgentApiOptions, startFakeAgentApi } from './testing/fake-agent-api.js';

/** The runtime around agents, with no repository: the command agent's protocol, hooks and masking. */

const FIXTURE_AGENT = fileURLToPath(
  new URL('../../test/fixtures/agents/json-lines-agent.mjs', import.meta.url),
);
const FAST = { flushIntervalMs: 10, retryBaseMs: 5, retryMaxMs: 20, finalFlushMs: 500, pollMs: 10 };

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}

const servers: FakeAgentApi[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

const run = async (
  config: Partial<PodRunConfig>,
  fake: FakeAgentApiOptions = {},
  env: Record<string, string> = {},
) => {
  const server = await startFakeAgentApi({
    ...fake,
    config: { agent: { kind: 'command', command: [process.execPath, FIXTURE_AGENT] }, ...config },
  });
  servers.push(server);
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runPod({
    runId: server.runId,
    api: new AgentApi(server.url, server.runId, server.token),
    stdout,
    stderr,
    env: { PATH: process.env.PATH, ...env },
    timing: FAST,
  });
  return { server, code, stdout, stderr, events: server.accepted() };
};

const phases = (events: AgentEvent[]) => events.flatMap((e) => (e.type === 'phase' ? [e.phase] : []));
const resultOf = (events: AgentEvent[]) => events.findLast((e) => e.type === 'result');

describe('a command agent over the JSON-lines protocol', () => {
  it('runs to a completed result, its steps and usage reported, the phases the runtime’s', async () => {
    const { code, events, server } = await run({});

    expect(code).toBe(0);
    expect(server.invalidBodies).toEqual([]);
    expect(phases(events)).toEqual(['STARTED', 'PLANNING', 'EXECUTING', 'COMMITTING']);
    expect(events.flatMap((e) => (e.type === 'step' ? [[e.kind, e.tool ?? e.model]] : []))).toEqual([
      ['assistant', 'fixture-model'],
      ['tool_call', 'Write'],
      ['tool_result', 'Write'],
    ]);
    expect(events.filter((e) => e.type === 'usage').map((e) => e.type === 'usage' && e.inputTokens)).toEqual([
      1200, 3400,
    ]);
    expect(resultOf(events)).toMatchObject({
      outcome: 'completed',
      message: expect.stringMatching(/^No changes/),
    });
  });

  it('pauses at the plan checkpoint in supervised mode with the agent’s plan as its details', async () => {
    const { code, events } = await run({ mode: 'supervised', checkpoints: ['plan'] });

    expect(code).toBe(0);
    expect(events.find((e) => e.type === 'checkpoint')).toMatchObject({
      name: 'plan',
      details: '1. Write NOTES.md for item-1.\n2. Report done.',
    });
    // the plan is approved before the agent executes
    const types = events.map((e) => (e.type === 'phase' ? e.phase : e.type));
    expect(types.indexOf('checkpoint')).toBeLessThan(types.indexOf('EXECUTING'));
  });

  it.each([
    ['prints garbage', 'garbage', /not a protocol message: Thinking about it\.\.\. \{not json/],
    ['exits mid-step', 'vanish', /exited \(code 3\) before it reported done or failed/],
  ])('ends FAILED / error when the agent %s, naming what it did, and never hangs', async (_, mode, said) => {
    const { code, events, stderr } = await run({ env: { FIXTURE_AGENT: mode } });

    expect(code).toBe(0);
    expect(phases(events).at(-1)).toBe('FAILED');
    expect(resultOf(events)).toMatchObject({
      outcome: 'failed',
      exitReason: 'error',
      message: expect.stringMatching(said),
    });
    expect(stderr.text).toMatch(said);
  });

  it('ends FAILED / tool_call_failed when the agent says a tool call failed for good', async () => {
    const { events } = await run({ env: { FIXTURE_AGENT: 'fail' } });

    expect(resultOf(events)).toMatchObject({
      outcome: 'failed',
      exitReason: 'tool_call_failed',
      message: 'npm test could not run: ENOENT',
    });
  });

  it('fails a run whose agent cannot be started', async () => {
    const { events } = await run({ agent: { kind: 'command', command: ['/nonexistent/agent'] } });

    expect(resultOf(events)).toMatchObject({
      exitReason: 'error',
      message: expect.stringContaining('could not be started'),
    });
  });
});

describe('the pod’s secrets', () => {
  const SECRET = 'sk-fixture-7f3a9c1e5b';

  it('reach the agent, and show in none of its steps, its result or the pod’s output', async () => {
    const { code, events, server, stdout, stderr } = await run(
      { env: { FIXTURE_AGENT: 'secret' }, secretVariables: ['FIXTURE_SECRET'] },
      {},
      { FIXTURE_SECRET: SECRET },
    );

    expect(code).toBe(0);
    const said = events.find((e) => e.type === 'step' && e.content.startsWith('The secret is'));
    expect(said).toMatchObject({ content: 'The secret is ***.' });
    expect(stderr.text + stdout.text).toContain('FIXTURE_SECRET=***');
    expect(JSON.stringify(server.posts) + stdout.text + stderr.text).not.toContain(SECRET);
  });

  it('are not given to an agent as plain variables of the runtime: only the ones the pod names', async () => {
    const { events } = await run(
      { env: { FIXTURE_AGENT: 'secret' }, secretVariables: [] },
      {},
      { FIXTURE_SECRET: SECRET },
    );

    expect(events.find((e) => e.type === 'step' && e.content.startsWith('The secret is'))).toMatchObject({
      content: 'The secret is .',
    });
  });
});

describe('the model provider', () => {
  const providerSaid = (events: AgentEvent[]) =>
    events.find((e) => e.type === 'step' && e.content.startsWith('The model is on'));

  it('is the container’s (Amazon Bedrock with the task role) for a pod without a key of its own', async () => {
    const { events } = await run(
      { env: { FIXTURE_AGENT: 'secret' }, secretVariables: [] },
      {},
      { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'eu-west-1' },
    );

    expect(providerSaid(events)).toMatchObject({ content: 'The model is on Amazon Bedrock.' });
  });

  it('is the Anthropic API for a pod with an ANTHROPIC_API_KEY secret', async () => {
    const { events } = await run(
      { env: { FIXTURE_AGENT: 'secret' }, secretVariables: ['ANTHROPIC_API_KEY'] },
      {},
      { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'eu-west-1', ANTHROPIC_API_KEY: 'sk-ant-fixture' },
    );

    expect(providerSaid(events)).toMatchObject({ content: 'The model is on the Anthropic API.' });
  });
});

describe('hooks', () => {
  it('runs postStart before the agent, its output in the log', async () => {
    const { code, stdout, events } = await run({
      hooks: { postStart: { command: 'echo "warming up in $PWD"', timeoutSeconds: 10 } },
    });

    expect(code).toBe(0);
    expect(stdout.text).toMatch(/hook postStart \([^)]+\): warming up in \//);
    expect(resultOf(events)).toMatchObject({ outcome: 'completed' });
  });

  it('ends FAILED / lifecycle_hook_failed with the hook’s name and the tail of its output when it fails', async () => {
    const { events } = await run({
      hooks: {
        postStart: {
          command: 'for i in 1 2 3; do echo "line $i"; done; echo oops >&2; exit 4',
          timeoutSeconds: 10,
        },
      },
    });

    expect(phases(events)).toEqual(['STARTED', 'FAILED']);
    expect(resultOf(events)).toMatchObject({
      outcome: 'failed',
      exitReason: 'lifecycle_hook_failed',
      message: expect.stringMatching(/^hook postStart exited with 4 in .+:\nline 1\nline 2\nline 3\noops$/),
    });
  });

  it('ends FAILED / lifecycle_hook_failed when a hook runs past its timeout, and kills what it started', async () => {
    const started = Date.now();
    const { events } = await run({
      hooks: { postStart: { command: 'echo starting; sleep 30 & sleep 30', timeoutSeconds: 1 } },
    });

    expect(Date.now() - started).toBeLessThan(10_000);
    expect(resultOf(events)).toMatchObject({
      exitReason: 'lifecycle_hook_failed',
      message: expect.stringMatching(/^hook postStart timed out after 1 s in .+:\nstarting$/),
    });
  });
});
