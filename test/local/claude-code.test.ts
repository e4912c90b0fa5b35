import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CanUseTool, type Options, query, type SDKMessage } from '@anthropic-ai/claude-agent-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../infra/local/model-server.js';

/**
 * The real Claude Code loop (the Agent SDK and its CLI) against the local model, offline: the recipe
 * the pod's claude-code driver follows. `CLAUDE_CODE_FIXTURES=update` records what each run yields to
 * pod/src/agents/fixtures/, for the driver's unit tests.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROJECT = path.join(HERE, 'fixtures/node-project');
const FIXTURES = path.resolve(HERE, '../../pod/src/agents/fixtures');
const MODEL = 'claude-sonnet-4-5';
const PROMPT = 'Add a health check endpoint';

interface Run {
  workspace: string;
  home: string;
}

/** What `query()` needs to run offline: `env` replaces the CLI's whole environment. */
const offlineOptions = (run: Run, model: ModelServer): Options => ({
  cwd: run.workspace,
  model: MODEL,
  settingSources: [],
  env: {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: run.home,
    CLAUDE_CONFIG_DIR: path.join(run.home, '.claude'),
    ANTHROPIC_BASE_URL: model.url,
    ANTHROPIC_API_KEY: 'local',
    // without it the CLI calls api.anthropic.com whatever the base URL
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    // npm would ask the registry for a newer npm after `npm test`
    npm_config_update_notifier: 'false',
  },
});

/** Runs one query to its end; an interrupting deny makes the iterator throw after its result. */
const collect = async (prompt: string, options: Options) => {
  const messages: SDKMessage[] = [];
  let thrown: string | undefined;
  try {
    for await (const message of query({ prompt, options })) messages.push(message);
  } catch (err) {
    thrown = (err as Error).message;
  }
  return { messages, thrown };
};

const allowAll: CanUseTool = async (_tool, input) => ({ behavior: 'allow', updatedInput: input });

const contentOf = (messages: SDKMessage[], type: 'assistant' | 'user') =>
  messages.flatMap((m) =>
    m.type === type && Array.isArray(m.message.content)
      ? (m.message.content as unknown as Record<string, unknown>[])
      : [],
  );
const toolCalls = (messages: SDKMessage[]) =>
  contentOf(messages, 'assistant').filter((b) => b.type === 'tool_use');
const toolResults = (messages: SDKMessage[]) =>
  contentOf(messages, 'user').filter((b) => b.type === 'tool_result');
const resultOf = (messages: SDKMessage[]) => {
  const result = messages.findLast((m) => m.type === 'result');
  if (!result) throw new Error('the query yielded no result');
  return result;
};
const sessionIdOf = (messages: SDKMessage[]) => {
  const init = messages.find((m) => m.type === 'system' && m.subtype === 'init');
  if (!init) throw new Error('the query yielded no system/init');
  return init.session_id;
};

/** Saves a run's messages as a fixture, with the temporary paths made stable. */
const record = async (name: string, run: Run, fixture: Record<string, unknown>) => {
  if (process.env.CLAUDE_CODE_FIXTURES !== 'update') return;
  const text = JSON.stringify(fixture, null, 2)
    .replaceAll(run.workspace, '/workspace')
    // the CLI keeps a project's sessions and memory under its path with / as -
    .replaceAll(run.workspace.replaceAll('/', '-'), '-workspace')
    .replaceAll(run.home, '/home/pod');
  await mkdir(FIXTURES, { recursive: true });
  await writeFile(path.join(FIXTURES, `claude-code-${name}.json`), `${text}\n`);
};

describe('Claude Code against the local model', () => {
  let model: ModelServer;
  const runs: Run[] = [];

  beforeAll(async () => {
    model = await startModelServer();
  });

  afterAll(async () => {
    await model.close();
    await Promise.all(
      runs.flatMap((r) => [r.workspace, r.home]).map((dir) => rm(dir, { recursive: true, force: true })),
    );
  });

  /** A fresh copy of the small Node project and a home of the run's own. */
  const newRun = async (): Promise<Run> => {
    const workspace = await mkdtemp(path.join(tmpdir(), 'claude-code-ws-'));
    const home = await mkdtemp(path.join(tmpdir(), 'claude-code-home-'));
    await cp(PROJECT, workspace, { recursive: true });
    const run = { workspace, home };
    runs.push(run);
    return run;
  };

  it('runs the coding loop: reads, edits the file on disk, runs the tests, reports usage', async () => {
    const run = await newRun();
    const options: Options = {
      ...offlineOptions(run, model),
      permissionMode: 'acceptEdits',
      // acceptEdits lets file edits through but asks about commands such as `npm test`
      canUseTool: allowAll,
      includePartialMessages: true,
    };

    const { messages, thrown } = await collect(PROMPT, options);

    expect(thrown).toBeUndefined();
    expect(sessionIdOf(messages)).toMatch(/^[0-9a-f-]{36}$/);
    const calls = toolCalls(messages);
    expect(calls.map((c) => c.name)).toEqual(['Bash', 'Read', 'Read', 'Read', 'Edit', 'Write', 'Bash']);
    expect(calls.at(-1)?.input).toMatchObject({ command: 'npm test' });
    const results = toolResults(messages);
    expect(results.map((r) => r.tool_use_id).sort()).toEqual(calls.map((c) => c.id).sort());
    expect(results.every((r) => r.is_error !== true)).toBe(true);
    const testRun = results.find((r) => r.tool_use_id === calls.at(-1)?.id);
    expect(String(testRun?.content)).toMatch(/# pass 2\n# fail 0/);
    expect(await readFile(path.join(run.workspace, 'src/greet.js'), 'utf8')).toContain(
      'export function health()',
    );

    const result = resultOf(messages);
    expect(result).toMatchObject({ subtype: 'success', is_error: false });
    if (result.subtype !== 'success') throw new Error('unreachable');
    // a turn is the prompt or a tool result sent back, not a model request (5 here)
    expect(result.num_turns).toBe(results.length + 1);
    expect(result.result).toContain('npm test passes');
    expect(result.usage.output_tokens).toBeGreaterThan(0);
    expect(result.usage.cache_read_input_tokens).toBeGreaterThan(0);
    expect(result.modelUsage[MODEL]?.costUSD).toBeCloseTo(result.total_cost_usd, 10);
    // Per response, the stream events carry the true usage: input and cache counts in message_start,
    // output in message_delta. The assistant messages come before message_delta, so theirs holds
    // only message_start's placeholder output count.
    const starts = messages.flatMap((m) =>
      m.type === 'stream_event' && m.event.type === 'message_start' ? [m.event.message.usage] : [],
    );
    const deltas = messages.flatMap((m) =>
      m.type === 'stream_event' && m.event.type === 'message_delta' ? [m.event.usage] : [],
    );
    expect(starts).toHaveLength(5);
    expect(deltas).toHaveLength(5);
    const sum = (counts: number[]) => counts.reduce((a, b) => a + b, 0);
    expect({
      input_tokens: sum(starts.map((u) => u.input_tokens)),
      cache_creation_input_tokens: sum(starts.map((u) => u.cache_creation_input_tokens ?? 0)),
      cache_read_input_tokens: sum(starts.map((u) => u.cache_read_input_tokens ?? 0)),
      output_tokens: sum(deltas.map((u) => u.output_tokens)),
    }).toEqual({
      input_tokens: result.usage.input_tokens,
      cache_creation_input_tokens: result.usage.cache_creation_input_tokens,
      cache_read_input_tokens: result.usage.cache_read_input_tokens,
      output_tokens: result.usage.output_tokens,
    });
    const assistants = messages.filter((m) => m.type === 'assistant');
    expect(assistants.every((m) => m.message.usage.output_tokens === 1)).toBe(true);
    expect(model.stats()).toEqual({ '/v1/messages': expect.any(Number) });

    await record('autopilot', run, {
      prompt: PROMPT,
      options: { permissionMode: 'acceptEdits', includePartialMessages: true },
      messages,
    });
  });

  it('passes a failing command back as an error result, and the session ends saying the tests fail', async () => {
    const run = await newRun();
    const failing = path.join(run.workspace, 'test/greet.test.js');
    await writeFile(failing, (await readFile(failing, 'utf8')).replace("'Hello, Ada!'", "'Hi, Ada!'"));

    const { messages, thrown } = await collect(PROMPT, {
      ...offlineOptions(run, model),
      permissionMode: 'acceptEdits',
      canUseTool: allowAll,
    });

    expect(thrown).toBeUndefined();
    const testCall = toolCalls(messages).at(-1);
    const testRun = toolResults(messages).find((r) => r.tool_use_id === testCall?.id);
    expect(testRun).toMatchObject({ is_error: true, content: expect.stringMatching(/^Exit code 1\n/) });
    const result = resultOf(messages);
    expect(result).toMatchObject({ subtype: 'success', is_error: false });
    if (result.subtype !== 'success') throw new Error('unreachable');
    expect(result.result).toMatch(/npm test fails:\n\nnot ok 1 - greets by name/);

    await record('tests-fail', run, {
      prompt: PROMPT,
      options: { permissionMode: 'acceptEdits' },
      messages,
    });
  });

  it('plans in plan mode, stops at ExitPlanMode when denied, and goes on when resumed in acceptEdits', async () => {
    const run = await newRun();
    let checkpoint: Record<string, unknown> | undefined;
    const planning: CanUseTool = async (tool, input) => {
      if (tool !== 'ExitPlanMode') return { behavior: 'allow', updatedInput: input };
      checkpoint = input;
      return { behavior: 'deny', message: 'The plan waits for approval.', interrupt: true };
    };

    const planned = await collect(PROMPT, {
      ...offlineOptions(run, model),
      permissionMode: 'plan',
      canUseTool: planning,
    });

    expect(planned.thrown).toMatch(/error result/);
    expect(toolCalls(planned.messages).map((c) => c.name)).toEqual([
      'Bash',
      'Read',
      'Read',
      'Read',
      'Write',
      'ToolSearch',
      'ExitPlanMode',
    ]);
    expect(resultOf(planned.messages)).toMatchObject({ subtype: 'error_during_execution', is_error: true });
    const planFilePath = String(checkpoint?.planFilePath);
    expect(planFilePath.startsWith(path.join(run.home, '.claude/plans/'))).toBe(true);
    expect(checkpoint?.plan).toContain('Add `health()` to `src/greet.js`');
    expect(await readFile(planFilePath, 'utf8')).toBe(checkpoint?.plan);
    expect(await readFile(path.join(run.workspace, 'src/greet.js'), 'utf8')).not.toContain('health');

    const resumed = await collect('The plan is approved: go ahead.', {
      ...offlineOptions(run, model),
      resume: sessionIdOf(planned.messages),
      permissionMode: 'acceptEdits',
      canUseTool: allowAll,
    });

    expect(resumed.thrown).toBeUndefined();
    expect(sessionIdOf(resumed.messages)).toBe(sessionIdOf(planned.messages));
    expect(toolCalls(resumed.messages).map((c) => c.name)).toEqual(['Edit', 'Write', 'Bash']);
    const before = resultOf(planned.messages);
    const after = resultOf(resumed.messages);
    expect(after).toMatchObject({ subtype: 'success', is_error: false });
    // usage counts this query alone; modelUsage and total_cost_usd carry the session's earlier queries
    expect(after.modelUsage[MODEL]?.inputTokens).toBe(before.usage.input_tokens + after.usage.input_tokens);
    expect(after.total_cost_usd).toBeGreaterThan(before.total_cost_usd);
    expect(await readFile(path.join(run.workspace, 'src/greet.js'), 'utf8')).toContain(
      'export function health()',
    );

    await record('plan-denied', run, {
      prompt: PROMPT,
      options: { permissionMode: 'plan' },
      messages: planned.messages,
      thrown: planned.thrown,
    });
    await record('plan-resumed', run, {
      prompt: 'The plan is approved: go ahead.',
      options: { permissionMode: 'acceptEdits', resume: '<session_id of plan-denied>' },
      messages: resumed.messages,
    });
  });

  it('plans in plan mode and goes on in the same query when ExitPlanMode is allowed later', async () => {
    const run = await newRun();
    const decisions: string[] = [];
    const holding: CanUseTool = async (tool, input) => {
      if (tool !== 'ExitPlanMode') return { behavior: 'allow', updatedInput: input };
      decisions.push(String(input.planFilePath));
      // a person decides later: the CLI waits for the answer
      await new Promise((resolve) => setTimeout(resolve, 200));
      return {
        behavior: 'allow',
        updatedInput: input,
        updatedPermissions: [{ type: 'setMode', mode: 'acceptEdits', destination: 'session' }],
      };
    };

    const { messages, thrown } = await collect(PROMPT, {
      ...offlineOptions(run, model),
      permissionMode: 'plan',
      canUseTool: holding,
    });

    expect(thrown).toBeUndefined();
    expect(decisions).toHaveLength(1);
    expect(toolCalls(messages).map((c) => c.name)).toEqual([
      'Bash',
      'Read',
      'Read',
      'Read',
      'Write',
      'ToolSearch',
      'ExitPlanMode',
      'Edit',
      'Write',
      'Bash',
    ]);
    expect(resultOf(messages)).toMatchObject({ subtype: 'success', is_error: false });
    expect(await readFile(path.join(run.workspace, 'src/greet.js'), 'utf8')).toContain(
      'export function health()',
    );

    await record('plan-held', run, { prompt: PROMPT, options: { permissionMode: 'plan' }, messages });
  });
});
