import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody } from './emulators/json-protocol.js';

/**
 * The local model: a scripted stand-in for the Anthropic Messages API, so the real Claude Code loop
 * runs offline. It is not a language model. On each `POST /v1/messages` it reads the conversation it
 * is given (the working directory the CLI states, the prompt, the tool calls so far and their
 * results) and answers the next step of one fixed coding session on a small Node project:
 *
 *   1. explore  Bash: list the working directory's files
 *   2. read     Read package.json, the first source file and the first test file (one response)
 *   3. edit     Edit the source file to export `health()`, and Write a test for it (one response);
 *               when the Edit fails, Write the whole file instead
 *   4. test     Bash: `npm test`
 *   5. finish   a short summary that says whether the tests passed
 *
 * In plan mode (the CLI's reminder says "Plan mode is active" and names the plan file), steps 1 and 2
 * run, then it Writes the plan to that file, loads `ExitPlanMode` with ToolSearch when the tool is
 * deferred, and calls it. Once the plan is approved (in the same turn, or the session resumed in
 * another mode) it goes on from step 3; while the call stands refused, it ends its turn saying so.
 *
 * Answers stream as the API does (SSE: message_start, content_block_start/delta/stop with text_delta
 * or input_json_delta, message_delta with stop_reason and usage, message_stop), or come whole when
 * the request does not ask to stream. Usage is estimated at four characters a token: what the
 * previous request already sent counts as a cache read, the newest message as input.
 */

export interface ModelServerOptions {
  port?: number;
  host?: string;
  /** one line per answered request */
  log?: (line: string) => void;
}

export interface ModelServer {
  url: string;
  port: number;
  /** requests answered since start, by path */
  stats(): Record<string, number>;
  close(): Promise<void>;
}

/** A content block of the request: only the fields the script reads. */
interface Block {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  input?: Record<string, unknown>;
  tool_use_id?: string;
  content?: unknown;
  is_error?: boolean;
}

interface Message {
  role: string;
  content: string | Block[];
}

export interface MessagesRequest {
  model: string;
  messages: Message[];
  system?: string | { type: string; text?: string }[];
  tools?: { name: string; defer_loading?: boolean }[];
  stream?: boolean;
}

/** What the model says next: text and tool calls, as the content of one response. */
export type Reply = (
  | { type: 'text'; text: string }
  | { type: 'tool_use'; name: string; input: Record<string, unknown> }
)[];

interface ToolCall {
  name: string;
  input: Record<string, unknown>;
  result?: { text: string; isError: boolean };
}

/** the commands the script runs */
const LIST = "find . -type f -not -path './node_modules/*' -not -path './.git/*' | sort";
const TEST_COMMAND = 'npm test';
const SOURCE = /\.(c|m)?[jt]s$/;
const TEST = /(^|\/)(test|tests|__tests__)\/|\.(test|spec)\.[cm]?[jt]s$/;

const PLAN_FILE = /(\/\S+\/plans\/[\w.-]+\.md)/;
const REMINDER = /<system-reminder>[\s\S]*?<\/system-reminder>/g;

const blocksOf = (m: Message): Block[] =>
  typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;

const textOf = (content: unknown): string =>
  typeof content === 'string'
    ? content
    : Array.isArray(content)
      ? content.map((b: { text?: unknown }) => (typeof b.text === 'string' ? b.text : '')).join('\n')
      : '';

/** The conversation as the script needs it: what the CLI said, what was asked, what was done. */
const readConversation = (request: MessagesRequest) => {
  const calls = new Map<string, ToolCall>();
  const notes: string[] = [textOf(request.system)];
  let prompt = '';
  for (const message of request.messages) {
    for (const block of blocksOf(message)) {
      if (block.type === 'tool_use' && block.id && block.name)
        calls.set(block.id, { name: block.name, input: block.input ?? {} });
      else if (block.type === 'tool_result' && block.tool_use_id) {
        const call = calls.get(block.tool_use_id);
        const text = textOf(block.content);
        // the CLI appends its reminders (plan mode exited, tokens left) to tool results
        notes.push(text);
        if (call) call.result = { text: text.replace(REMINDER, '').trim(), isError: block.is_error === true };
      } else if (message.role !== 'assistant' && typeof block.text === 'string') {
        notes.push(block.text);
        // the person's words: the first user text that is not one of the CLI's reminders
        if (!prompt && message.role === 'user' && !block.text.startsWith('<system-reminder>'))
          prompt = block.text;
      }
    }
  }
  const said = notes.join('\n');
  const cwd = /Primary working directory: (\S+)/.exec(said)?.[1];
  // tools named only, whose schema ToolSearch must load before they can be called
  const deferred = new Set([
    ...(/deferred tools are now available[^\n]*\n((?:[A-Za-z]\w*\n?)+)/.exec(said)?.[1]?.split('\n') ?? []),
    ...(request.tools ?? []).filter((t) => t.defer_loading).map((t) => t.name),
  ]);
  return {
    calls: [...calls.values()],
    said,
    cwd,
    prompt: prompt.trim(),
    tools: new Set(request.tools?.map((t) => t.name)),
    deferred,
  };
};

type Conversation = ReturnType<typeof readConversation>;

/** Read prints `cat -n` lines: the file's text is what follows each line number's tab. */
const fileText = (readResult: string) =>
  readResult
    .split('\n')
    .filter((line) => /^\s*\d+\t/.test(line))
    .map((line) => line.replace(/^\s*\d+\t/, ''))
    .join('\n');

const relative = (file: string) => file.replace(/^\.\//, '');

/** The project's files, from the listing of step 1. */
const projectFiles = (listing: string) => {
  const files = listing
    .split('\n')
    .map((l) => relative(l.trim()))
    .filter(Boolean);
  const code = files.filter((f) => SOURCE.test(f) && !f.startsWith('.'));
  return {
    packageJson: files.includes('package.json'),
    source: code.find((f) => !TEST.test(f)),
    test: code.find((f) => TEST.test(f)),
  };
};

/** The change the script makes: a `health()` function, in the module style the file already uses. */
const change = (
  sourceFile: string,
  sourceText: string,
  testFile: string | undefined,
  packageText: string,
) => {
  const esm =
    /^\s*export\s/m.test(sourceText) ||
    /"type"\s*:\s*"module"/.test(packageText) ||
    sourceFile.endsWith('.mjs');
  const addition = esm
    ? "\n/** A liveness answer for health checks. */\nexport function health() {\n  return { status: 'ok' };\n}\n"
    : "\n/** A liveness answer for health checks. */\nfunction health() {\n  return { status: 'ok' };\n}\nmodule.exports.health = health;\n";
  const testDir = testFile?.includes('/') ? testFile.slice(0, testFile.lastIndexOf('/')) : 'test';
  const ext = /\.[cm]?[jt]s$/.exec(testFile ?? sourceFile)?.[0] ?? '.js';
  const depth = testDir.split('/').length;
  const importPath = `${'../'.repeat(depth)}${sourceFile}`;
  const test = esm
    ? `import assert from 'node:assert/strict';\nimport { test } from 'node:test';\nimport { health } from '${importPath}';\n\ntest('health() says ok', () => {\n  assert.deepEqual(health(), { status: 'ok' });\n});\n`
    : `const assert = require('node:assert/strict');\nconst { test } = require('node:test');\nconst { health } = require('${importPath}');\n\ntest('health() says ok', () => {\n  assert.deepEqual(health(), { status: 'ok' });\n});\n`;
  return { addition, testFile: `${testDir}/health.test${ext}`, test };
};

/** The shortest run of whole lines ending the file that occurs once in it: an Edit anchor the tool accepts. */
const uniqueEnding = (text: string) => {
  const lines = text.replace(/\n*$/, '').split('\n');
  for (let n = 1; n <= lines.length; n++) {
    const ending = lines.slice(-n).join('\n');
    if (ending.trim() && text.indexOf(ending) === text.lastIndexOf(ending)) return ending;
  }
  return undefined;
};

/** Plan mode holds from the CLI's "Plan mode is active" reminder until it says plan mode was exited. */
const inPlanMode = (c: Conversation) =>
  c.said.lastIndexOf('Plan mode is active') > c.said.toLowerCase().lastIndexOf('exited plan mode');

/** The lines of a `node --test` report worth repeating: the failures and the counts. */
const testReport = (output: string) =>
  output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^not ok \d+|^# (tests|pass|fail) \d+/.test(l))
    .join('\n') || output.split('\n').slice(-5).join('\n');

const say = (text: string): Reply => [{ type: 'text', text }];
const call = (name: string, input: Record<string, unknown>) => ({ type: 'tool_use' as const, name, input });

/** The next step of the session, decided from what the conversation holds so far. */
export const nextStep = (request: MessagesRequest): Reply => {
  const c = readConversation(request);
  const missing = ['Bash', 'Read', 'Write'].filter((tool) => !c.tools.has(tool));
  if (missing.length)
    return say(`I need the ${missing.join(', ')} tools, which this request does not offer.`);
  if (!c.cwd) return say('I cannot tell which directory to work in.');
  const at = (file: string) => `${c.cwd}/${file}`;
  const last = (name: string, input: (i: Record<string, unknown>) => boolean = () => true) =>
    c.calls.findLast((done) => done.name === name && input(done.input))?.result;
  const ran = (command: string) => last('Bash', (i) => i.command === command);
  const read = (file: string) => last('Read', (i) => i.file_path === at(file));
  const changed = (file: string) =>
    c.calls.some(
      (done) =>
        (done.name === 'Edit' || done.name === 'Write') &&
        done.input.file_path === at(file) &&
        done.result?.isError === false,
    );

  // 1. explore
  const listing = ran(LIST);
  if (!listing)
    return [
      ...say('I will look at the project first.'),
      call('Bash', { command: LIST, description: "List the project's files" }),
    ];
  const files = projectFiles(listing.text);
  if (!files.source) return say(`I found no source file to change in ${c.cwd}.`);

  // 2. read
  const sourceRead = read(files.source);
  if (!sourceRead) {
    const toRead = [files.packageJson && 'package.json', files.source, files.test].filter(
      (f): f is string => typeof f === 'string',
    );
    return [
      ...say(`Reading ${toRead.join(', ')}.`),
      ...toRead.map((f) => call('Read', { file_path: at(f) })),
    ];
  }
  const source = fileText(sourceRead.text);
  const planned = change(files.source, source, files.test, fileText(read('package.json')?.text ?? ''));

  // plan mode: the plan file, ExitPlanMode (loaded first when deferred), then wait for approval
  if (inPlanMode(c)) {
    if (last('ExitPlanMode')) return say('The plan waits for approval; I will not change anything before.');
    const planFile = PLAN_FILE.exec(c.said)?.[1];
    if (planFile && !last('Write', (i) => i.file_path === planFile)) {
      const plan = `# Plan: ${c.prompt.split('\n')[0]}\n\n1. Add \`health()\` to \`${files.source}\`, returning \`{ status: 'ok' }\`.\n2. Add \`${planned.testFile}\` to test it.\n3. Run \`${TEST_COMMAND}\`.\n`;
      return [
        ...say('I have what I need; here is the plan.'),
        call('Write', { file_path: planFile, content: plan }),
      ];
    }
    if (
      c.deferred.has('ExitPlanMode') &&
      !last('ToolSearch', (i) => String(i.query).includes('ExitPlanMode'))
    )
      return [call('ToolSearch', { query: 'select:ExitPlanMode' })];
    return [call('ExitPlanMode', {})];
  }

  // 3. edit
  const edits: Reply = [];
  if (!changed(files.source)) {
    const anchor = uniqueEnding(source);
    // after a refused Edit, write the whole file, as the CLI's own error suggests
    edits.push(
      anchor && c.tools.has('Edit') && !last('Edit')?.isError
        ? call('Edit', {
            file_path: at(files.source),
            old_string: anchor,
            new_string: `${anchor}\n${planned.addition}`,
          })
        : call('Write', {
            file_path: at(files.source),
            content: `${source.replace(/\n*$/, '\n')}${planned.addition}`,
          }),
    );
  }
  if (!changed(planned.testFile))
    edits.push(call('Write', { file_path: at(planned.testFile), content: planned.test }));
  if (edits.length) return [...say(`Adding health() to ${files.source} and a test for it.`), ...edits];

  // 4. test
  const tests = ran(TEST_COMMAND);
  if (!tests) return [call('Bash', { command: TEST_COMMAND, description: 'Run the tests' })];

  // 5. finish
  const report = testReport(tests.text);
  return say(
    tests.isError
      ? `I added health() to ${files.source} and ${planned.testFile}, but ${TEST_COMMAND} fails:\n\n${report}`
      : `Added health() to ${files.source}, returning { status: 'ok' }, with a test in ${planned.testFile}. ${TEST_COMMAND} passes:\n\n${report}`,
  );
};

const tokens = (value: unknown) => Math.ceil(JSON.stringify(value ?? '').length / 4);

/** Estimated usage: the prefix the previous request sent is read from cache, the rest is new. */
const usageOf = (request: MessagesRequest, reply: unknown) => {
  const base = tokens(request.system) + tokens(request.tools);
  const earlier = request.messages.slice(0, -1);
  const first = !earlier.some((m) => m.role === 'assistant');
  const seen = base + tokens(request.messages.slice(0, -2));
  return {
    input_tokens: tokens(request.messages.at(-1)),
    cache_creation_input_tokens: first ? base + tokens(earlier) : tokens(request.messages.at(-2)),
    cache_read_input_tokens: first ? 0 : seen,
    output_tokens: tokens(reply),
  };
};

const id = (prefix: string) => `${prefix}_local_${randomBytes(12).toString('hex')}`;

/** Splits text into a few pieces, so a client sees a real stream of deltas. */
const pieces = (text: string, size = 40) => {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length ? out : [''];
};

const sendStream = (res: ServerResponse, message: ReturnType<typeof messageOf>) => {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'request-id': message.id,
  });
  const event = (type: string, data: object) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  const { content, usage, stop_reason, ...head } = message;
  event('message_start', {
    message: {
      ...head,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1 },
    },
  });
  content.forEach((block, index) => {
    if (block.type === 'text') {
      event('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const text of pieces(block.text))
        event('content_block_delta', { index, delta: { type: 'text_delta', text } });
    } else {
      event('content_block_start', { index, content_block: { ...block, input: {} } });
      for (const partial_json of pieces(JSON.stringify(block.input)))
        event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } });
    }
    event('content_block_stop', { index });
  });
  event('message_delta', { delta: { stop_reason, stop_sequence: null }, usage });
  event('message_stop', {});
  res.end();
};

const messageOf = (request: MessagesRequest, reply: Reply) => {
  const content = reply.map((block) => (block.type === 'tool_use' ? { ...block, id: id('toolu') } : block));
  return {
    id: id('msg'),
    type: 'message' as const,
    role: 'assistant' as const,
    model: request.model,
    content,
    stop_reason: content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: usageOf(request, content),
  };
};

const sendError = (res: ServerResponse, status: number, type: string, message: string) =>
  res
    .writeHead(status, { 'content-type': 'application/json' })
    .end(JSON.stringify({ type: 'error', error: { type, message } }));

const outline = (reply: Reply) =>
  reply
    .map((b) =>
      b.type === 'text'
        ? 'text'
        : `${b.name}(${String(b.input.command ?? b.input.file_path ?? b.input.query ?? '')})`,
    )
    .join(' ');

export const startModelServer = async (options: ModelServerOptions = {}): Promise<ModelServer> => {
  const host = options.host ?? '127.0.0.1';
  const counts: Record<string, number> = {};
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    counts[path] = (counts[path] ?? 0) + 1;
    try {
      const body = await readBody(req);
      if (req.method !== 'POST' || path !== '/v1/messages')
        return sendError(
          res,
          404,
          'not_found_error',
          `The local model answers POST /v1/messages, not ${req.method} ${path}`,
        );
      const request = JSON.parse(body) as MessagesRequest;
      if (!request.model || !Array.isArray(request.messages))
        return sendError(res, 400, 'invalid_request_error', 'model and messages are required');
      const reply = nextStep(request);
      options.log?.(`model: ${request.messages.length} messages -> ${outline(reply)}`);
      const message = messageOf(request, reply);
      if (request.stream) return sendStream(res, message);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(message));
    } catch (err) {
      if (!res.headersSent) sendError(res, 400, 'invalid_request_error', String(err));
      else res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    stats: () => ({ ...counts }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
