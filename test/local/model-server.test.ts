import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type MessagesRequest,
  type ModelServer,
  nextStep,
  startModelServer,
} from '../../infra/local/model-server.js';

const CWD = '/workspace/demo';
const LISTING = './package.json\n./src/greet.js\n./test/greet.test.js';
// `}` occurs twice: an anchor of the last line alone would be refused
const SOURCE =
  "const titles = { ada: 'Countess' };\nexport function greet(name) {\n  return titles[name] ?? name;\n}\n";

/** What the CLI's numbered Read output looks like. */
const numbered = (text: string) =>
  text
    .split('\n')
    .map((line, i) => `${i + 1}\t${line}`)
    .join('\n');

interface Done {
  name: string;
  input: Record<string, unknown>;
  result: string;
  isError?: boolean;
}

/** A conversation as the CLI sends it: its reminders and the prompt, then each response's calls and their results. */
const conversation = (responses: Done[][], extra: Partial<MessagesRequest> = {}): MessagesRequest => {
  let n = 0;
  return {
    model: 'claude-test-1',
    tools: ['Bash', 'Read', 'Edit', 'Write', 'ToolSearch'].map((name) => ({ name })),
    messages: [
      {
        role: 'user',
        content: [
          {
            type: 'text',
            text: `<system-reminder>\n - Primary working directory: ${CWD}\n</system-reminder>`,
          },
          { type: 'text', text: 'Add a health check endpoint' },
        ],
      },
      ...responses.flatMap((calls) => {
        const ids = calls.map(() => `toolu_${++n}`);
        return [
          {
            role: 'assistant',
            content: calls.map((c, i) => ({ type: 'tool_use', id: ids[i], name: c.name, input: c.input })),
          },
          {
            role: 'user',
            content: calls.map((c, i) => ({
              type: 'tool_result',
              tool_use_id: ids[i],
              content: c.result,
              is_error: c.isError ?? false,
            })),
          },
        ];
      }),
    ],
    ...extra,
  };
};

const toolsOf = (reply: ReturnType<typeof nextStep>) =>
  reply.flatMap((b) => (b.type === 'tool_use' ? [`${b.name} ${String(Object.values(b.input)[0])}`] : []));

/** The script's first call lists the files; the later steps find that call by its command. */
const [, listing] = nextStep(conversation([]));
const explored: Done[] = [
  {
    name: 'Bash',
    input: { command: listing?.type === 'tool_use' && listing.input.command },
    result: LISTING,
  },
];
const read = (file: string, text: string): Done => ({
  name: 'Read',
  input: { file_path: `${CWD}/${file}` },
  result: numbered(text),
});
const readAll: Done[] = [
  read('package.json', '{ "type": "module", "scripts": { "test": "node --test" } }\n'),
  read('src/greet.js', SOURCE),
  read('test/greet.test.js', "import { greet } from '../src/greet.js';\n"),
];

describe('the local model script', () => {
  it('lists the files, then reads package.json, the source and the test file in one response', () => {
    expect(toolsOf(nextStep(conversation([])))).toEqual([expect.stringMatching(/^Bash find \. -type f/)]);
    expect(toolsOf(nextStep(conversation([explored])))).toEqual([
      `Read ${CWD}/package.json`,
      `Read ${CWD}/src/greet.js`,
      `Read ${CWD}/test/greet.test.js`,
    ]);
  });

  it('edits the end of the source, anchored on lines that occur once, and writes a test beside the old one', () => {
    const reply = nextStep(conversation([explored, readAll]));

    const [edit, write] = reply.filter((b) => b.type === 'tool_use');
    expect(edit).toMatchObject({
      name: 'Edit',
      input: { file_path: `${CWD}/src/greet.js`, old_string: '  return titles[name] ?? name;\n}' },
    });
    expect(String(edit?.input.new_string)).toContain('export function health()');
    expect(write).toMatchObject({ name: 'Write', input: { file_path: `${CWD}/test/health.test.js` } });
    expect(String(write?.input.content)).toContain("import { health } from '../src/greet.js';");
  });

  it('writes the whole file when the Edit was refused, and does not write the test twice', () => {
    const refused: Done[] = [
      { name: 'Edit', input: { file_path: `${CWD}/src/greet.js` }, result: 'Found 2 matches', isError: true },
      { name: 'Write', input: { file_path: `${CWD}/test/health.test.js` }, result: 'File created' },
    ];

    const reply = nextStep(conversation([explored, readAll, refused]));

    expect(toolsOf(reply)).toEqual([`Write ${CWD}/src/greet.js`]);
    const write = reply.find((b) => b.type === 'tool_use');
    expect(String(write?.input.content)).toBe(
      `${SOURCE}\n/** A liveness answer for health checks. */\nexport function health() {\n  return { status: 'ok' };\n}\n`,
    );
  });

  it('keeps to CommonJS in a CommonJS project', () => {
    const commonJs = [
      read('package.json', '{ "scripts": { "test": "node --test" } }\n'),
      read('src/greet.js', 'function greet(name) {\n  return name;\n}\nmodule.exports = { greet };\n'),
    ];

    const [edit, write] = nextStep(conversation([explored, commonJs])).filter((b) => b.type === 'tool_use');

    expect(String(edit?.input.new_string)).toContain('module.exports.health = health;');
    expect(String(write?.input.content)).toContain("const { health } = require('../src/greet.js');");
  });

  it('runs the tests once the edits are done, and reports a failure with the failing tests', () => {
    const edited: Done[] = [
      { name: 'Edit', input: { file_path: `${CWD}/src/greet.js` }, result: 'updated' },
      { name: 'Write', input: { file_path: `${CWD}/test/health.test.js` }, result: 'created' },
    ];
    expect(toolsOf(nextStep(conversation([explored, readAll, edited])))).toEqual(['Bash npm test']);
    const failed: Done = {
      name: 'Bash',
      input: { command: 'npm test' },
      result: 'Exit code 1\nnot ok 1 - greets by name\n# tests 2\n# pass 1\n# fail 1\nnpm notice',
      isError: true,
    };

    const [summary] = nextStep(conversation([explored, readAll, edited, [failed]]));

    expect(summary).toEqual({
      type: 'text',
      text: 'I added health() to src/greet.js and test/health.test.js, but npm test fails:\n\nnot ok 1 - greets by name\n# tests 2\n# pass 1\n# fail 1',
    });
  });

  it('in plan mode writes the plan file, loads the deferred ExitPlanMode, calls it, then waits', () => {
    const planFile = '/home/pod/.claude/plans/add-a-health-check.md';
    const planMode = `Plan mode is active.\nYou should create your plan at ${planFile} using the Write tool.\nThe following deferred tools are now available via ToolSearch:\nExitPlanMode\nWebFetch`;
    const inPlanMode = (responses: Done[][]) => {
      const request = conversation(responses);
      request.messages.splice(1, 0, { role: 'user', content: planMode });
      return request;
    };

    const plan = nextStep(inPlanMode([explored, readAll])).find((b) => b.type === 'tool_use');
    expect(plan).toMatchObject({ name: 'Write', input: { file_path: planFile } });
    expect(String(plan?.input.content)).toContain('# Plan: Add a health check endpoint');
    const wrote: Done = { name: 'Write', input: { file_path: planFile }, result: 'File created' };
    expect(toolsOf(nextStep(inPlanMode([explored, readAll, [wrote]])))).toEqual([
      'ToolSearch select:ExitPlanMode',
    ]);
    const loaded: Done = {
      name: 'ToolSearch',
      input: { query: 'select:ExitPlanMode' },
      result: 'Tool loaded.',
    };
    expect(toolsOf(nextStep(inPlanMode([explored, readAll, [wrote], [loaded]])))).toEqual([
      'ExitPlanMode undefined',
    ]);
    const refused: Done = { name: 'ExitPlanMode', input: {}, result: 'rejected', isError: true };
    expect(nextStep(inPlanMode([explored, readAll, [wrote], [loaded], [refused]]))).toEqual([
      { type: 'text', text: 'The plan waits for approval; I will not change anything before.' },
    ]);
  });
});

describe('the local model server', () => {
  let model: ModelServer;

  beforeAll(async () => {
    model = await startModelServer();
  });

  afterAll(async () => {
    await model.close();
  });

  const post = (body: unknown, path = '/v1/messages?beta=true') =>
    fetch(`${model.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'any' },
      body: JSON.stringify(body),
    });

  it('streams a response as the Messages API does, with the model asked for and its usage', async () => {
    const res = await post({ ...conversation([]), stream: true });

    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((chunk) => {
        const [event, data] = chunk.split('\n');
        const parsed = JSON.parse(String(data?.slice('data: '.length)));
        expect(event).toBe(`event: ${parsed.type}`);
        return parsed;
      });
    const types = events.map((e) => e.delta?.type ?? e.type);
    expect(types[0]).toBe('message_start');
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(types).toContain('text_delta');
    expect(types).toContain('input_json_delta');
    expect(events[0].message).toMatchObject({ model: 'claude-test-1', role: 'assistant', content: [] });
    const toolStart = events.find((e) => e.content_block?.type === 'tool_use');
    expect(toolStart.content_block).toMatchObject({
      name: 'Bash',
      input: {},
      id: expect.stringMatching(/^toolu_/),
    });
    const json = events
      .filter((e) => e.delta?.type === 'input_json_delta')
      .map((e) => e.delta.partial_json)
      .join('');
    expect(JSON.parse(json).command).toMatch(/^find /);
    const delta = events.at(-2);
    expect(delta.delta.stop_reason).toBe('tool_use');
    expect(delta.usage.output_tokens).toBeGreaterThan(1);
    expect(delta.usage.cache_creation_input_tokens).toBeGreaterThan(0);
  });

  it('answers whole when not asked to stream, and refuses what it does not speak', async () => {
    const whole = await post(conversation([]));
    expect(await whole.json()).toMatchObject({
      type: 'message',
      model: 'claude-test-1',
      stop_reason: 'tool_use',
    });

    const other = await post(conversation([]), '/v1/complete');
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    const bad = await post({ messages: 'none' });
    expect(bad.status).toBe(400);
    expect(model.stats()).toEqual({ '/v1/messages': 3, '/v1/complete': 1 });
  });
});
