import type { Approval } from '../domain/approval.js';
import type { Run } from '../domain/run.js';
import type { Step } from '../domain/steps.js';
import type { Account, Pod, Project } from '../domain/tenancy.js';
import type { ServerMessage } from './stream.js';

/**
 * What the API answers, as its clients (the CLI and the console) read it: the domain's records as they
 * travel. The clients share only these and the request schemas with the backend (DESIGN §5).
 */

export type { Account, Approval, Pod, Project, Run, ServerMessage };

/** A step as `GET /v1/runs/{runId}/steps` shows it. */
export type StepView = Omit<Step, 'args' | 'fullContent'> & {
  args?: unknown;
  argsPreview?: string;
  fullContent?: { href: string; bytes: number };
};

export interface RunPage {
  items: Run[];
  nextCursor: string | null;
}

export interface StepPage {
  items: StepView[];
  /** the `after` of the next page; null when no more steps are recorded yet */
  nextAfter: number | null;
}

export interface LogLine {
  /** epoch milliseconds */
  timestamp: number;
  message: string;
}

export interface LogPage {
  items: LogLine[];
  /** older lines */
  nextCursor: string | null;
  /** newer lines; null when no more can come */
  afterCursor: string | null;
  reason?: 'not_started' | 'expired';
}

/** `POST /v1/runs/{runId}/approve` and `/cancel` */
export interface DecisionAnswer {
  approval: Approval;
  run: Run;
}

/** `POST /v1/stream/tickets`: a single-use ticket, in `url`, to connect to the run's stream within a minute */
export interface StreamTicket {
  ticket: string;
  url: string;
  expiresAt: string;
}

/** `GET /v1/account/spend?window=`: what the account spent over the trailing window, against its cap. */
export type { AccountSpend } from '../usecases/spend.js';
