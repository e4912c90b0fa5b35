import type { AgentStepInput } from '../agent.js';

/**
 * Turns what the Claude Agent SDK yields into the run's step events, message by message. Kept apart
 * from the SDK itself (it reads only the plain shapes below) so recorded message sequences can be
 * translated in unit tests.
 *
 * - assistant text → an `assistant` step; a tool use → a `tool_call` step (tool name, arguments);
 * - a tool result (in a user message) → a `tool_result` step, named after its call;
 * - usage: the SDK's assistant messages arrive before their response's `message_delta`, so their
 *   output count is a placeholder. Each response's true usage comes from the stream events (input
 *   and cache counts in `message_start`, output in `message_delta`): one `usage` event per response.
 */

/** How much of a tool's input or output a step keeps: a step is read by people, not replayed. */
export const STEP_CONTENT_MAX_CHARS = 20_000;

interface Block {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  input?: unknown;
  tool_use_id?: string;
  content?: unknown;
  is_error?: boolean;
}

interface StreamUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
}

/** The parts of the SDK's messages the translation reads. */
export type SdkMessageShape =
  | {
      type: 'assistant';
      message: { model: string; content: Block[] | string };
      parent_tool_use_id?: string | null;
    }
  | { type: 'user'; message: { content: Block[] | string }; parent_tool_use_id?: string | null }
  | {
      type: 'stream_event';
      event:
        | { type: 'message_start'; message: { id: string; model: string; usage: StreamUsage } }
        | { type: 'message_delta'; usage: StreamUsage }
        | { type: string };
    }
  | { type: string };

export class ClaudeCodeEvents {
  private readonly toolNames = new Map<string, string>();
  /** the response being streamed: its model and what `message_start` counted */
  private response: { model: string; usage: StreamUsage } | undefined;

  /** The events one SDK message makes; none for the messages that carry no step or usage. */
  translate(message: SdkMessageShape): AgentStepInput[] {
    switch (message.type) {
      case 'assistant':
        return this.assistant(message as Extract<SdkMessageShape, { type: 'assistant' }>);
      case 'user':
        return this.user(message as Extract<SdkMessageShape, { type: 'user' }>);
      case 'stream_event':
        return this.stream(message as Extract<SdkMessageShape, { type: 'stream_event' }>);
      default:
        return [];
    }
  }

  private assistant(message: Extract<SdkMessageShape, { type: 'assistant' }>): AgentStepInput[] {
    const { model } = message.message;
    return blocksOf(message.message.content).flatMap((block): AgentStepInput[] => {
      if (block.type === 'text' && block.text?.trim()) {
        return [{ type: 'step', kind: 'assistant', content: cut(block.text), model }];
      }
      if (block.type === 'tool_use' && block.name) {
        if (block.id) this.toolNames.set(block.id, block.name);
        return [
          {
            type: 'step',
            kind: 'tool_call',
            content: cut(describeCall(block.input)),
            tool: block.name,
            args: block.input,
          },
        ];
      }
      return [];
    });
  }

  private user(message: Extract<SdkMessageShape, { type: 'user' }>): AgentStepInput[] {
    return blocksOf(message.message.content).flatMap((block): AgentStepInput[] => {
      if (block.type !== 'tool_result') return [];
      const tool = (block.tool_use_id && this.toolNames.get(block.tool_use_id)) || undefined;
      const text = textOf(block.content);
      const content = cut(block.is_error && !/^error/i.test(text) ? `Error: ${text}` : text);
      return [{ type: 'step', kind: 'tool_result', content, ...(tool ? { tool } : {}) }];
    });
  }

  private stream(message: Extract<SdkMessageShape, { type: 'stream_event' }>): AgentStepInput[] {
    const { event } = message;
    if (event.type === 'message_start' && 'message' in event) {
      this.response = { model: event.message.model, usage: event.message.usage };
      return [];
    }
    if (event.type === 'message_delta' && 'usage' in event && this.response) {
      const { model, usage: start } = this.response;
      this.response = undefined;
      return [
        {
          type: 'usage',
          model,
          inputTokens: start.input_tokens ?? 0,
          outputTokens: event.usage.output_tokens ?? 0,
          cacheReadTokens: start.cache_read_input_tokens ?? 0,
          cacheWriteTokens: start.cache_creation_input_tokens ?? 0,
        },
      ];
    }
    return [];
  }
}

const blocksOf = (content: Block[] | string): Block[] =>
  typeof content === 'string' ? [{ type: 'text', text: content }] : content;

const textOf = (content: unknown): string => {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: Block) => (part.type === 'text' ? (part.text ?? '') : `[${part.type}]`))
      .join('\n');
  }
  return content === undefined ? '' : JSON.stringify(content);
};

/** A call as a person reads it: a command as it is, other inputs as JSON. */
const describeCall = (input: unknown): string => {
  if (input && typeof input === 'object' && 'command' in input && typeof input.command === 'string') {
    return input.command;
  }
  return JSON.stringify(input ?? {});
};

const cut = (text: string) =>
  text.length <= STEP_CONTENT_MAX_CHARS
    ? text
    : `${text.slice(0, STEP_CONTENT_MAX_CHARS)}\n… cut: ${text.length - STEP_CONTENT_MAX_CHARS} more characters`;
