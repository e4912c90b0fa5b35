import { randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { ExitReason } from '../../shared/domain/run.js';
import { type DemoScript, demoScriptSchema } from '../../shared/schemas/demo.js';
import { type AgentContext, AgentCrash } from './agent.js';

/** The model the demo agent's assistant steps name: it calls none. */
const DEMO_MODEL = 'demo-model';

/**
 * A scripted agent that walks the phases a real one would (clone, plan, execute steps, commit, open a
 * pull request) as `config.demo` says, so every path of the run lifecycle can be driven without a
 * model. Token usage is reported per EXECUTING step, one `usage` event per entry of `demo.usage`, so
 * a run's totals are exactly `steps × usage`.
 */
export const runDemoAgent = async (ctx: AgentContext): Promise<void> => {
  const script = demoScriptSchema.parse(ctx.config.demo ?? {});
  const { signal } = ctx;
  const repo = repoOf(ctx.config.repos[0]);
  const phase = (
    name: 'STARTED' | 'PLANNING' | 'EXECUTING' | 'COMMITTING' | 'PR_RAISED' | 'COMPLETED' | 'FAILED',
  ) => {
    ctx.log(`agent: phase ${name}`);
    ctx.emit({ type: 'phase', phase: name });
  };
  // No delay is no timer: Node clamps a zero timeout to a millisecond, which would cap the pace at a
  // thousand steps a second; yielding once lets the reporter's requests go on between steps.
  const pause = () =>
    script.stepDelayMs > 0
      ? sleep(script.stepDelayMs, undefined, { signal })
      : setImmediate(undefined, { signal });

  phase('STARTED');
  for (const url of ctx.config.repos) ctx.log(`agent: cloning ${url}`);
  await pause();

  await ctx.proceed();
  phase('PLANNING');
  const plan = planFor(ctx.config.prompt, script);
  ctx.emit({ type: 'step', kind: 'assistant', content: plan, model: DEMO_MODEL });
  if (script.checkpoints.includes('plan')) {
    ctx.log('agent: checkpoint plan');
    await ctx.checkpoint('plan', `Plan for ${ctx.config.itemId}: ${script.steps} steps`, plan);
  }

  await ctx.proceed();
  phase('EXECUTING');
  for (let index = 0; index < script.steps; index++) {
    await ctx.proceed();
    emitStep(ctx, script, index);
    if (index === 0 && script.failure) return fail(ctx, script.failure);
    if (index + 1 < script.steps) await pause();
  }
  if (script.steps === 0 && script.failure) return fail(ctx, script.failure);
  if (script.bigStepBytes > 0) {
    ctx.emit({
      type: 'step',
      kind: 'assistant',
      content: bigContent(script.bigStepBytes),
      model: DEMO_MODEL,
    });
  }
  if (script.logLines > 0) await writeLogLines(ctx.stdout, script.logLines, signal);

  await ctx.proceed();
  phase('COMMITTING');
  const sha = randomBytes(20).toString('hex');
  ctx.emit({ type: 'artifact', kind: 'commit', url: `https://github.com/${repo}/commit/${sha}`, sha });
  ctx.log(`agent: committed ${sha}`);
  if (script.checkpoints.includes('commit')) {
    ctx.log('agent: checkpoint commit');
    await ctx.checkpoint(
      'commit',
      `Commit ${sha.slice(0, 7)} ready to push`,
      `${script.steps} steps on ${repo}`,
    );
  }

  if (script.pullRequest) {
    await ctx.proceed();
    phase('PR_RAISED');
    const number = randomInt(1, 10_000);
    const url = `https://github.com/${repo}/pull/${number}`;
    ctx.emit({ type: 'artifact', kind: 'pull_request', url, number });
    ctx.log(`agent: opened ${url}`);
  }

  phase('COMPLETED');
  ctx.emit({ type: 'result', outcome: 'completed' });
  await ctx.flush();
};

type Failure = NonNullable<DemoScript['failure']>;

const fail = async (ctx: AgentContext, failure: Failure): Promise<void> => {
  if (failure === 'crash') {
    // what was reported so far reaches the backend; the process then dies without a result
    await ctx.flush();
    throw new AgentCrash('demo: simulated crash');
  }
  if (failure === 'hang') {
    ctx.warn('agent: hanging (demo): no more heartbeats');
    ctx.stopHeartbeats();
    await ctx.flush();
    // a timer keeps the process alive until it is killed
    await sleep(2 ** 31 - 1, undefined, { signal: ctx.signal });
    return;
  }
  const exitReason: ExitReason = failure;
  const message = `demo: simulated ${failure.replaceAll('_', ' ')}`;
  ctx.warn(`agent: ${message}`);
  ctx.emit({ type: 'phase', phase: 'FAILED' });
  ctx.emit({ type: 'result', outcome: 'failed', exitReason, message });
  await ctx.flush();
};

const STEP_KINDS = ['assistant', 'tool_call', 'tool_result'] as const;
const COMMANDS = ['ls -la', 'rg -n "TODO" src', 'npm test -- --run', 'git diff --stat'];

const emitStep = (ctx: AgentContext, script: DemoScript, index: number) => {
  const kind = STEP_KINDS[index % STEP_KINDS.length] ?? 'assistant';
  const command = COMMANDS[Math.floor(index / STEP_KINDS.length) % COMMANDS.length] ?? 'ls';
  ctx.log(`agent: step ${index + 1}/${script.steps} ${kind}`);
  if (kind === 'assistant') {
    ctx.emit({
      type: 'step',
      kind,
      content: `Step ${index + 1}: next I will run \`${command}\`.`,
      model: DEMO_MODEL,
    });
  } else if (kind === 'tool_call') {
    ctx.emit({ type: 'step', kind, content: command, tool: 'bash', args: { command } });
  } else {
    ctx.emit({ type: 'step', kind, content: `$ ${command}\n(exit 0)`, tool: 'bash' });
  }
  for (const usage of script.usage) ctx.emit({ type: 'usage', ...usage });
};

const planFor = (prompt: string, script: DemoScript) =>
  [
    `Plan for: ${prompt.slice(0, 500)}`,
    '1. Read the relevant code.',
    `2. Make the change in ${script.steps} steps.`,
    '3. Run the tests.',
    script.pullRequest ? '4. Commit and open a pull request.' : '4. Commit.',
  ].join('\n');

const bigContent = (bytes: number) => {
  const sentence = 'This is a deliberately long assistant message from the demo agent. ';
  return sentence.repeat(Math.ceil(bytes / sentence.length)).slice(0, bytes);
};

/** `owner/name` of a repository given as `owner/name`, an https URL or an ssh address. */
export const repoOf = (repo: string | undefined): string => {
  const match = repo?.match(/([\w.-]+)[/:]([\w.-]+?)(?:\.git)?\/?$/);
  return match ? `${match[1]}/${match[2]}` : 'demo/demo';
};

const LINES_PER_WRITE = 500;

/** Numbered lines, written as fast as the reader takes them and no faster. */
const writeLogLines = async (out: NodeJS.WritableStream, count: number, signal: AbortSignal) => {
  for (let first = 1; first <= count; first += LINES_PER_WRITE) {
    signal.throwIfAborted();
    let text = '';
    const last = Math.min(count, first + LINES_PER_WRITE - 1);
    for (let n = first; n <= last; n++) text += `line ${String(n).padStart(6, '0')} demo agent output\n`;
    if (!out.write(text)) await once(out, 'drain', { signal });
  }
};
