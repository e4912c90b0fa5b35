import { once } from 'node:events';
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { type DemoScript, demoScriptSchema } from '../../../shared/schemas/demo.js';
import { type Agent, AgentCrash, type AgentIo, type AgentOutcome, type AgentTask } from '../agent.js';

/** The model the demo agent's assistant steps name: it calls none. */
const DEMO_MODEL = 'demo-model';

/**
 * A scripted agent, so every path of the run's life can be driven without a model: it plans, emits
 * the steps and usage `config.demo` says, edits one file of the first clone, and ends as the script
 * says. Token usage is reported per step, one `usage` event per entry of `demo.usage`, so a run's
 * totals are exactly `steps × usage`.
 */
export const runDemoAgent: Agent = async (task, io) => {
  const script = demoScriptSchema.parse(task.config.demo ?? {});
  const { signal } = io;
  // No delay is no timer: Node clamps a zero timeout to a millisecond, which would cap the pace at a
  // thousand steps a second; yielding once lets the reporter's requests go on between steps.
  const pause = () =>
    script.stepDelayMs > 0
      ? sleep(script.stepDelayMs, undefined, { signal })
      : setImmediate(undefined, { signal });

  const plan = planFor(task.config.prompt, script);
  io.emit({ type: 'step', kind: 'assistant', content: plan, model: DEMO_MODEL });
  await pause();
  await io.planned(plan);

  for (let index = 0; index < script.steps; index++) {
    emitStep(io, script, index);
    if (index === 0 && script.failure) return fail(io, script.failure);
    if (index + 1 < script.steps) await pause();
  }
  if (script.steps === 0 && script.failure) return fail(io, script.failure);
  if (script.bigStepBytes > 0) {
    io.emit({ type: 'step', kind: 'assistant', content: bigContent(script.bigStepBytes), model: DEMO_MODEL });
  }
  if (script.logLines > 0) await writeLogLines(io.stdout, script, signal);
  const edited = script.edit ? await edit(task) : undefined;
  return { outcome: 'done', summary: edited ? `Added a line to ${edited}.` : 'Changed nothing.' };
};

const edit = async (task: AgentTask): Promise<string | undefined> => {
  const clone = task.clones[0];
  if (!clone) return undefined;
  const file = 'DEMO_AGENT.md';
  await appendFile(path.join(clone.path, file), `- ${task.config.itemId}: ${task.config.runId}\n`);
  return file;
};

type Failure = NonNullable<DemoScript['failure']>;

const fail = async (io: AgentIo, failure: Failure): Promise<AgentOutcome> => {
  if (failure === 'crash') {
    // what was reported so far reaches the backend; the process then dies without a result
    await io.flush();
    throw new AgentCrash('demo: simulated crash');
  }
  if (failure === 'hang') {
    io.warn('agent: hanging (demo): no more heartbeats');
    io.stopHeartbeats();
    await io.flush();
    // a timer keeps the process alive until it is killed
    await sleep(2 ** 31 - 1, undefined, { signal: io.signal });
    throw new Error('demo: woke from a hang');
  }
  return {
    outcome: 'failed',
    exitReason: failure,
    message: `demo: simulated ${failure.replaceAll('_', ' ')}`,
  };
};

const STEP_KINDS = ['assistant', 'tool_call', 'tool_result'] as const;
const COMMANDS = ['ls -la', 'rg -n "TODO" src', 'npm test -- --run', 'git diff --stat'];

const emitStep = (io: AgentIo, script: DemoScript, index: number) => {
  const kind = STEP_KINDS[index % STEP_KINDS.length] ?? 'assistant';
  const command = COMMANDS[Math.floor(index / STEP_KINDS.length) % COMMANDS.length] ?? 'ls';
  io.log(`agent: step ${index + 1}/${script.steps} ${kind}`);
  if (kind === 'assistant') {
    io.emit({
      type: 'step',
      kind,
      content: `Step ${index + 1}: next I will run \`${command}\`.`,
      model: DEMO_MODEL,
    });
  } else if (kind === 'tool_call') {
    io.emit({ type: 'step', kind, content: command, tool: 'bash', args: { command } });
  } else {
    io.emit({ type: 'step', kind, content: `$ ${command}\n(exit 0)`, tool: 'bash' });
  }
  for (const usage of script.usage) io.emit({ type: 'usage', ...usage });
};

const planFor = (prompt: string, script: DemoScript) =>
  [
    `Plan for: ${prompt.slice(0, 500)}`,
    '1. Read the relevant code.',
    `2. Make the change in ${script.steps} steps.`,
    '3. Run the tests.',
  ].join('\n');

const bigContent = (bytes: number) => {
  const sentence = 'This is a deliberately long assistant message from the demo agent. ';
  return sentence.repeat(Math.ceil(bytes / sentence.length)).slice(0, bytes);
};

/** Numbered lines, `logLinesPerWrite` at a time with `logDelayMs` between, as fast as the reader takes them and no faster. */
const writeLogLines = async (out: NodeJS.WritableStream, script: DemoScript, signal: AbortSignal) => {
  const count = script.logLines;
  const perWrite = script.logLinesPerWrite;
  for (let first = 1; first <= count; first += perWrite) {
    signal.throwIfAborted();
    if (first > 1 && script.logDelayMs > 0) await sleep(script.logDelayMs, undefined, { signal });
    let text = '';
    const last = Math.min(count, first + perWrite - 1);
    for (let n = first; n <= last; n++) text += `line ${String(n).padStart(6, '0')} demo agent output\n`;
    if (!out.write(text)) await once(out, 'drain', { signal });
  }
};
