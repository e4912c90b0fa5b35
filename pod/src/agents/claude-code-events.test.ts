import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AgentStepInput } from '../agent.js';
import { ClaudeCodeEvents, type SdkMessageShape, STEP_CONTENT_MAX_CHARS } from './claude-code-events.js';

/** Message sequences the Claude Agent SDK yielded against the local model (test/local/claude-code.test.ts). */
interface Fixture {
  messages: (SdkMessageShape & Record<string, unknown>)[];
}
const fixture = (name: string): Fixture =>
  JSON.parse(
    readFileSync(new URL(`./fixtures/claude-code-${name}.json`, import.meta.url), 'utf8'),
  ) as Fixture;

const translate = (messages: SdkMessageShape[]) => {
  const events = new ClaudeCodeEvents();
  return messages.flatMap((m) => events.translate(m));
};
const steps = (events: AgentStepInput[]) => events.filter((e) => e.type === 'step');
const usages = (events: AgentStepInput[]) => events.filter((e) => e.type === 'usage');

type Result = {
  type: 'result';
  usage: Record<string, number>;
  modelUsage: Record<string, unknown>;
};
const resultOf = (f: Fixture) => f.messages.findLast((m) => m.type === 'result') as unknown as Result;

describe('Claude Code messages as step events', () => {
  const autopilot = fixture('autopilot');
  const events = translate(autopilot.messages);

  it('makes a tool_call step of each tool use, with the tool’s name and arguments', () => {
    const calls = steps(events).filter((s) => s.kind === 'tool_call');
    expect(calls.map((c) => c.tool)).toEqual(['Bash', 'Read', 'Read', 'Read', 'Edit', 'Write', 'Bash']);
    expect(calls.at(-1)).toMatchObject({ content: 'npm test', args: { command: 'npm test' } });
    expect(calls[1]?.args).toMatchObject({ file_path: expect.stringMatching(/^\/workspace\//) });
  });

  it('makes a tool_result step of each result, named after its call, in the order they came', () => {
    const kinds = steps(events).map((s) => (s.kind === 'assistant' ? 'assistant' : `${s.kind}:${s.tool}`));
    expect(kinds.filter((k) => k.startsWith('tool_result'))).toEqual([
      'tool_result:Bash',
      'tool_result:Read',
      'tool_result:Read',
      'tool_result:Read',
      'tool_result:Edit',
      'tool_result:Write',
      'tool_result:Bash',
    ]);
    const testRun = steps(events).findLast((s) => s.kind === 'tool_result');
    expect(testRun?.content).toMatch(/# pass 2\n# fail 0/);
  });

  it('makes an assistant step of each text the model wrote, naming the model', () => {
    const said = steps(events).filter((s) => s.kind === 'assistant');
    const texts = autopilot.messages.flatMap((m) =>
      m.type === 'assistant'
        ? (m as { message: { content: { type: string; text?: string }[] } }).message.content.filter(
            (b) => b.type === 'text' && b.text?.trim(),
          )
        : [],
    );
    expect(said.map((s) => s.content)).toEqual(texts.map((b) => b.text));
    expect(said.every((s) => s.model === 'claude-sonnet-4-5')).toBe(true);
    expect(said.at(-1)?.content).toContain('npm test passes');
  });

  it('reports each response’s true usage once, summing to what the result counts', () => {
    const reported = usages(events);
    const result = resultOf(autopilot);
    expect(reported).toHaveLength(5);
    const sum = (key: 'inputTokens' | 'outputTokens' | 'cacheReadTokens' | 'cacheWriteTokens') =>
      reported.reduce((total, u) => total + (u.type === 'usage' ? (u[key] ?? 0) : 0), 0);
    expect({
      input_tokens: sum('inputTokens'),
      output_tokens: sum('outputTokens'),
      cache_read_input_tokens: sum('cacheReadTokens'),
      cache_creation_input_tokens: sum('cacheWriteTokens'),
    }).toEqual({
      input_tokens: result.usage.input_tokens,
      output_tokens: result.usage.output_tokens,
      cache_read_input_tokens: result.usage.cache_read_input_tokens,
      cache_creation_input_tokens: result.usage.cache_creation_input_tokens,
    });
    expect(reported.every((u) => u.type === 'usage' && u.model === 'claude-sonnet-4-5')).toBe(true);
  });

  it('marks a failed tool result as an error', () => {
    const failing = steps(translate(fixture('tests-fail').messages)).findLast(
      (s) => s.kind === 'tool_result',
    );
    expect(failing?.content).toMatch(/^Error: Exit code 1\n/);
  });

  it('shows the plan a model hands over in plan mode as ExitPlanMode’s arguments', () => {
    const calls = steps(translate(fixture('plan-held').messages)).filter((s) => s.kind === 'tool_call');
    expect(calls.map((c) => c.tool)).toContain('ExitPlanMode');
    expect(calls.find((c) => c.tool === 'ExitPlanMode')?.args).toMatchObject({
      plan: expect.stringContaining('Add `health()`'),
    });
  });

  it('cuts a step’s content to a size people read', () => {
    const [step] = translate([
      {
        type: 'user',
        message: {
          content: [
            { type: 'tool_result', tool_use_id: 'x', content: 'y'.repeat(STEP_CONTENT_MAX_CHARS + 5) },
          ],
        },
      },
    ]);
    expect(step?.type === 'step' && step.content).toBe(
      `${'y'.repeat(STEP_CONTENT_MAX_CHARS)}\n… cut: 5 more characters`,
    );
  });
});
