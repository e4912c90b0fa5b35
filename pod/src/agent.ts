import type { PodRunConfig } from '../../shared/schemas/agent-events.js';
import type { AgentEventInput } from './reporter.js';

/** An event of the agent's own work, as it reports it: what it said, called and used. */
export type AgentStepInput = Extract<AgentEventInput, { type: 'step' | 'usage' }>;

/** What an agent is given: the run, the folders it works in and the variables it runs with. */
export interface AgentTask {
  config: PodRunConfig;
  /** where it works: the first clone, or the workspace when the run has no repository */
  cwd: string;
  /** every clone, the first being `cwd` */
  clones: { url: string; path: string }[];
  workspace: string;
  /** a home of the run's own, outside the clones */
  home: string;
  /** the pod's variables and secrets, a home of the run's own, PATH; nothing of the runtime's */
  env: Record<string, string>;
}

/** How an agent reports and waits; the runtime around it does everything else. */
export interface AgentIo {
  /** aborted when the run must end: stopped, cancelled, gone, or the container told to stop */
  signal: AbortSignal;
  emit(event: AgentStepInput): void;
  /**
   * The agent has planned without changing any file. Resolves once it may carry the plan out: at
   * once in autopilot, after a person approved it at the `plan` checkpoint in supervised mode.
   */
  planned(plan: string): Promise<void>;
  log(line: string): void;
  warn(line: string): void;
  /** the pod's own output (the log stream), for agents that write much */
  stdout: NodeJS.WritableStream;
  flush(): Promise<void>;
  stopHeartbeats(): void;
}

/** How long the agent worked, for agents that count: its turns and time, shown on the run. */
export interface AgentStats {
  turns?: number;
  durationMs?: number;
}

export type AgentOutcome =
  | ({ outcome: 'done'; summary: string } & AgentStats)
  | ({ outcome: 'failed'; exitReason: 'tool_call_failed' | 'error'; message: string } & AgentStats);

export type Agent = (task: AgentTask, io: AgentIo) => Promise<AgentOutcome>;

/** Thrown to end the process abruptly with exit code 1 and no result, as a crashing agent would. */
export class AgentCrash extends Error {}
