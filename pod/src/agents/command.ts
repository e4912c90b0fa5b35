import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  AGENT_PROTOCOL_VERSION,
  type AgentMessage,
  agentMessageSchema,
  type RuntimeMessage,
} from '../../../shared/schemas/agent-protocol.js';
import type { Agent, AgentOutcome } from '../agent.js';

/** How much of an offending line the failure names. */
const SHOWN_CHARS = 300;

/**
 * A team's own agent: an executable in the image that speaks the JSON-lines agent protocol
 * (shared/schemas/agent-protocol.ts). It runs in the first clone with the run's variables, in a
 * process group of its own that is killed when the run ends. A line that is not a protocol message,
 * or an exit before `done` or `failed`, fails the run with `error`: the runtime never waits on an
 * agent that has stopped making sense.
 */
export const commandAgent =
  (command: string[]): Agent =>
  (task, io) =>
    new Promise<AgentOutcome>((resolve, reject) => {
      const [program = '', ...args] = command;
      io.log(`agent: ${command.join(' ')}`);
      const child = spawn(program, args, {
        cwd: task.cwd,
        env: task.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
      let settled = false;
      const kill = () => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const settle = (outcome: AgentOutcome | Error) => {
        if (settled) return;
        settled = true;
        io.signal.removeEventListener('abort', onAbort);
        kill();
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const onAbort = () =>
        settle(io.signal.reason instanceof Error ? io.signal.reason : new Error('aborted'));
      io.signal.addEventListener('abort', onAbort, { once: true });

      const send = (message: RuntimeMessage) => {
        if (!child.stdin.destroyed) child.stdin.write(`${JSON.stringify(message)}\n`);
      };
      // an agent that stops reading its input must not crash the pod with EPIPE
      child.stdin.on('error', () => undefined);
      const protocolError = (message: string) => {
        io.warn(`agent: ${message}`);
        settle({ outcome: 'failed', exitReason: 'error', message });
      };

      // one message at a time: `plan` waits for the runtime before the next line is taken
      let queue = Promise.resolve();
      const handle = async (message: AgentMessage) => {
        switch (message.type) {
          case 'step':
          case 'usage':
            io.emit(message);
            return;
          case 'plan':
            await io.planned(message.plan);
            send({ type: 'continue' });
            return;
          case 'done':
            settle({ outcome: 'done', summary: message.summary });
            return;
          case 'failed':
            settle({ outcome: 'failed', exitReason: message.reason, message: message.message });
            return;
        }
      };
      createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        if (settled || line.trim() === '') return;
        let parsed: ReturnType<typeof agentMessageSchema.safeParse>;
        try {
          parsed = agentMessageSchema.safeParse(JSON.parse(line));
        } catch {
          return protocolError(
            `the agent printed something that is not a protocol message: ${line.slice(0, SHOWN_CHARS)}`,
          );
        }
        if (!parsed.success) {
          return protocolError(
            `the agent sent a message the protocol does not have: ${line.slice(0, SHOWN_CHARS)}`,
          );
        }
        const message = parsed.data;
        queue = queue
          .then(() => (settled ? undefined : handle(message)))
          .catch((err: unknown) => settle(err as Error));
      });
      createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) =>
        io.log(`agent: ${line}`),
      );
      child.once('error', (err) => protocolError(`the agent could not be started: ${err.message}`));
      child.once('close', (code, signal) => {
        // messages already read are handled before the exit is judged
        void queue.then(() =>
          protocolError(`the agent exited (${signal ?? `code ${code}`}) before it reported done or failed`),
        );
      });

      send({
        type: 'task',
        protocol: AGENT_PROTOCOL_VERSION,
        runId: task.config.runId,
        itemId: task.config.itemId,
        prompt: task.config.prompt,
        repos: task.clones,
        workspace: task.workspace,
      });
    });
