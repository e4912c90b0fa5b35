import type { PodRunConfig } from '../../shared/schemas/agent-events.js';
import type { AgentEventInput } from './reporter.js';

/** What the runtime gives an agent: reporting, control and the pod's output. */
export interface AgentContext {
  config: PodRunConfig;
  /** aborted when the backend says stop, the container is stopped, or the run is gone */
  signal: AbortSignal;
  emit(event: AgentEventInput): void;
  flush(): Promise<void>;
  /** Obeys the backend's latest control: returns on continue, waits while told to wait, throws on stop. */
  proceed(): Promise<void>;
  /** Sends a checkpoint at once, then waits for the backend to let the run go on. */
  checkpoint(name: string, summary: string, details?: string): Promise<void>;
  stopHeartbeats(): void;
  /** the pod's stdout, which becomes the task's log stream */
  stdout: NodeJS.WritableStream;
  log(line: string): void;
  warn(line: string): void;
}

export type Agent = (context: AgentContext) => Promise<void>;

/** Thrown to end the process abruptly with exit code 1 and no result, as a crashing agent would. */
export class AgentCrash extends Error {}
