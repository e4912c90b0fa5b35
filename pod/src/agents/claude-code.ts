import path from 'node:path';
import type { CanUseTool, Options, SDKResultMessage } from '@anthropic-ai/claude-agent-sdk';
import type { PodRunConfig } from '../../../shared/schemas/agent-events.js';
import type { Agent, AgentOutcome } from '../agent.js';
import { ClaudeCodeEvents, type SdkMessageShape } from './claude-code-events.js';

type ClaudeCodeConfig = Extract<PodRunConfig['agent'], { kind: 'claude-code' }>;

/** Tools that change files: while planning, only the plan file may be written. */
const EDITING_TOOLS = new Set(['Write', 'Edit', 'MultiEdit', 'NotebookEdit']);
const PLAN_APPROVED = 'The plan is approved: carry it out now.';

/**
 * The Claude Code loop, through the Claude Agent SDK, in the run's first clone. It always starts in
 * plan mode: the model explores, writes its plan and calls ExitPlanMode, whose permission request is
 * held while the runtime takes the plan (in supervised mode, until a person approves it); then the
 * same query goes on with edits accepted. A model that ends its turn with a plan but without calling
 * ExitPlanMode gets its session resumed once the plan is taken. Where the model is reached (the local
 * model, the Anthropic API with a key, Amazon Bedrock with the task role) is the environment's.
 */
export const claudeCodeAgent =
  (agent: ClaudeCodeConfig): Agent =>
  async (task, io) => {
    // loaded when a run needs it: a pod of another kind starts a tenth of a second sooner without it
    const { query } = await import('@anthropic-ai/claude-agent-sdk');
    const configDir = path.join(task.home, '.claude');
    const plansDir = path.join(configDir, 'plans');
    const events = new ClaudeCodeEvents();
    const abort = new AbortController();
    const onAbort = () => abort.abort(io.signal.reason);
    io.signal.addEventListener('abort', onAbort, { once: true });
    let planning = true;
    let lastText = '';
    let lastToolFailed = false;

    const canUseTool: CanUseTool = async (tool, input) => {
      if (tool === 'ExitPlanMode') {
        const plan = typeof input.plan === 'string' && input.plan.trim() ? input.plan : lastText;
        await io.planned(plan || 'The agent gave no plan.');
        planning = false;
        return {
          behavior: 'allow',
          updatedInput: input,
          updatedPermissions: [{ type: 'setMode', mode: 'acceptEdits', destination: 'session' }],
        };
      }
      if (planning && EDITING_TOOLS.has(tool) && !isWithin(plansDir, filePathOf(input))) {
        return {
          behavior: 'deny',
          message: 'Plan mode: nothing but the plan file may change before the plan is approved.',
        };
      }
      // the pod's allowed tools were let through without asking: what asks is not among them
      if (agent.allowedTools) return { behavior: 'deny', message: `This pod does not allow ${tool} here.` };
      return { behavior: 'allow', updatedInput: input };
    };

    const options: Options = {
      cwd: task.cwd,
      additionalDirectories: task.clones.slice(1).map((clone) => clone.path),
      model: agent.model,
      ...(agent.maxTurns === undefined ? {} : { maxTurns: agent.maxTurns }),
      // ExitPlanMode must always ask: that is where the plan is taken
      ...(agent.allowedTools
        ? { allowedTools: agent.allowedTools.filter((tool) => tool !== 'ExitPlanMode') }
        : {}),
      permissionMode: 'plan',
      canUseTool,
      includePartialMessages: true,
      settingSources: [],
      abortController: abort,
      env: {
        ...task.env,
        CLAUDE_CONFIG_DIR: configDir,
        // without it the CLI reaches for api.anthropic.com whatever the base URL says
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_TELEMETRY: '1',
        DISABLE_AUTOUPDATER: '1',
        DISABLE_ERROR_REPORTING: '1',
        npm_config_update_notifier: 'false',
        // Claude Code's background calls use a small model of its own choosing; on Bedrock the task
        // role may invoke only the deployment's models, so they use the pod's model too
        ...(task.env.CLAUDE_CODE_USE_BEDROCK
          ? { ANTHROPIC_DEFAULT_HAIKU_MODEL: agent.model, ANTHROPIC_SMALL_FAST_MODEL: agent.model }
          : {}),
      },
      stderr: (data) => {
        for (const line of data.split('\n')) if (line.trim()) io.log(`claude-code: ${line}`);
      },
    };

    const runQuery = async (prompt: string, queryOptions: Options) => {
      let sessionId: string | undefined;
      let result: SDKResultMessage | undefined;
      let thrown: unknown;
      try {
        for await (const message of query({ prompt, options: queryOptions })) {
          if (message.type === 'system' && message.subtype === 'init') sessionId = message.session_id;
          if (message.type === 'result') result = message;
          if (message.type === 'assistant' && message.parent_tool_use_id === null) {
            const texts = blocksText(message.message.content as unknown[]);
            if (texts) lastText = texts;
          }
          if (message.type === 'user' && Array.isArray(message.message.content)) {
            const results = (message.message.content as { type: string; is_error?: boolean }[]).filter(
              (block) => block.type === 'tool_result',
            );
            if (results.length) lastToolFailed = results.some((block) => block.is_error === true);
          }
          for (const event of events.translate(message as SdkMessageShape)) io.emit(event);
        }
      } catch (err) {
        if (io.signal.aborted) throw io.signal.reason;
        thrown = err;
      }
      return { sessionId, result, thrown };
    };

    try {
      let outcome = await runQuery(task.config.prompt, options);
      if (planning && outcome.result?.subtype === 'success' && outcome.sessionId) {
        // planned in words without calling ExitPlanMode: its last answer is the plan
        await io.planned(outcome.result.result || lastText || 'The agent gave no plan.');
        planning = false;
        outcome = await runQuery(PLAN_APPROVED, {
          ...options,
          resume: outcome.sessionId,
          permissionMode: 'acceptEdits',
        });
      }
      return outcomeOf(outcome.result, outcome.thrown, lastToolFailed, agent.maxTurns);
    } finally {
      io.signal.removeEventListener('abort', onAbort);
    }
  };

const outcomeOf = (
  result: SDKResultMessage | undefined,
  thrown: unknown,
  lastToolFailed: boolean,
  maxTurns: number | undefined,
): AgentOutcome => {
  if (result?.subtype === 'success' && !result.is_error) {
    return {
      outcome: 'done',
      summary: result.result,
      turns: result.num_turns,
      durationMs: result.duration_ms,
    };
  }
  const stats = result ? { turns: result.num_turns, durationMs: result.duration_ms } : {};
  if (result?.subtype === 'error_max_turns') {
    return {
      outcome: 'failed',
      exitReason: 'error',
      message: `Claude Code used its ${maxTurns} turns without finishing`,
      ...stats,
    };
  }
  const why = thrown instanceof Error ? thrown.message : result ? (result.subtype as string) : 'no result';
  if (lastToolFailed) {
    return {
      outcome: 'failed',
      exitReason: 'tool_call_failed',
      message: `Claude Code stopped after a failed tool call: ${why}`,
      ...stats,
    };
  }
  return { outcome: 'failed', exitReason: 'error', message: `Claude Code failed: ${why}`, ...stats };
};

const blocksText = (content: unknown[]): string =>
  content
    .flatMap((block) => {
      const b = block as { type?: string; text?: string };
      return b.type === 'text' && b.text ? [b.text] : [];
    })
    .join('\n');

const filePathOf = (input: Record<string, unknown>): string =>
  String(input.file_path ?? input.notebook_path ?? input.path ?? '');

const isWithin = (dir: string, file: string) =>
  file !== '' && !path.relative(dir, path.resolve(dir, file)).startsWith('..');
