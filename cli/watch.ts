import { createInterface } from 'node:readline';
import { isTerminal, PHASES, type Phase, type Run } from '../shared/domain/run.js';
import type { FollowEvent } from './follow.js';
import {
  firstLine,
  formatDuration,
  formatTokens,
  formatUsd,
  plainStyle,
  runDurationMs,
  type Style,
  statusWithReason,
  stepLine,
  type TokenTotals,
  tokenTotals,
} from './format.js';

/**
 * What `runs watch` shows of the events a follower sends: the run's header, its status changes, the
 * phases it went through, each step, tokens and cost as they grow, and the checkpoints it waits at.
 */
export class WatchRenderer {
  private last: Run | undefined;
  private readonly phases: Phase[] = [];
  private shownCheckpoint: number | undefined;

  constructor(
    private readonly out: (line: string) => void,
    private readonly err: (line: string) => void,
    private readonly now: () => Date = () => new Date(),
    private readonly style: Style = plainStyle,
  ) {}

  onEvent(event: FollowEvent): void {
    switch (event.type) {
      case 'run':
        this.onRun(event.run);
        break;
      case 'step':
        this.out(`  ${stepLine(event.step, this.style)}`);
        break;
      case 'retrying':
        this.err(`${event.message}; trying again in ${formatDuration(event.delayMs)}`);
        break;
    }
  }

  private onRun(run: Run): void {
    const before = this.last;
    this.last = run;
    const s = this.style;
    if (!before) {
      this.out(`${s.bold(run.runId)}  ${run.itemId} on ${run.podId} (${run.mode})`);
    }
    // a status before what happened in it; a pause or the end after everything else
    const statusLast = isTerminal(run.status) || run.status === 'AWAITING_APPROVAL';
    if (run.status !== before?.status && !statusLast) this.onStatus(run);
    if (run.phase && run.phase !== before?.phase) {
      this.phases.push(run.phase);
      const progress = phaseProgress(this.phases);
      this.out(
        progress === run.phase ? `phase ${s.bold(run.phase)}` : `phase ${s.bold(run.phase)}  ${progress}`,
      );
    }
    const tokens = tokenTotals(run);
    const cost = run.cost?.totalUsd ?? 0;
    const grew =
      before && (!sameTokens(tokens, tokenTotals(before)) || cost !== (before.cost?.totalUsd ?? 0));
    if (grew) {
      const used = tokens.input + tokens.output + tokens.cacheRead + tokens.cacheWrite > 0;
      this.out(used ? `tokens ${formatTokens(tokens)} · cost ${formatUsd(cost)}` : `cost ${formatUsd(cost)}`);
    }
    if (run.pullRequest && run.pullRequest.url !== before?.pullRequest?.url) {
      this.out(`pull request ${run.pullRequest.url}`);
    }
    // a new checkpoint shows even when the poll missed the run going on between two of them
    const newCheckpoint =
      run.status === 'AWAITING_APPROVAL' && run.pendingApproval?.seq !== this.shownCheckpoint;
    if ((run.status !== before?.status || newCheckpoint) && statusLast) this.onStatus(run);
  }

  private onStatus(run: Run): void {
    const s = this.style;
    const pending = run.pendingApproval;
    if (run.status === 'AWAITING_APPROVAL' && pending && pending.seq !== this.shownCheckpoint) {
      this.shownCheckpoint = pending.seq;
      this.out(`status ${s.status(run.status)} at checkpoint ${s.bold(pending.name)}`);
      for (const line of pending.summary.trim().split('\n')) this.out(`  ${line}`);
      return;
    }
    const parts = [`status ${statusWithReason(run, s)}`];
    if (isTerminal(run.status)) {
      const duration = runDurationMs(run, this.now());
      if (duration !== undefined) parts.push(formatDuration(duration));
      parts.push(formatUsd(run.cost?.totalUsd ?? 0));
      const message = run.message ?? run.result?.message;
      if (message) parts.push(firstLine(message, 200));
    }
    this.out(parts.join(' · '));
  }
}

const sameTokens = (a: TokenTotals, b: TokenTotals) =>
  a.input === b.input &&
  a.output === b.output &&
  a.cacheRead === b.cacheRead &&
  a.cacheWrite === b.cacheWrite;

/** The path of phases so far against the path still ahead: `STARTED > PLANNING > [EXECUTING] > COMMITTING > PR_RAISED`. */
export const phaseProgress = (seen: Phase[]): string => {
  const current = seen.at(-1);
  if (!current) return '';
  if (current === 'FAILED' || current === 'COMPLETED') return seen.join(' > ');
  const ahead = PHASES.slice(PHASES.indexOf(current) + 1).filter((p) => p !== 'FAILED' && p !== 'COMPLETED');
  return [...seen.slice(0, -1), `[${current}]`, ...ahead].join(' > ');
};

export type Choice = 'approve' | 'cancel';

/** What a person typed, as a decision: a/approve/y/yes or c/cancel/n/no; anything else is none. */
export const parseChoice = (answer: string): Choice | undefined => {
  const word = answer.trim().toLowerCase();
  if (['a', 'approve', 'y', 'yes'].includes(word)) return 'approve';
  if (['c', 'cancel', 'n', 'no'].includes(word)) return 'cancel';
  return undefined;
};

export interface PromptStreams {
  input: NodeJS.ReadableStream;
  output: { write(text: string): unknown };
}

/**
 * Asks on `output` until a line of `input` is a decision. Resolves with none when the input ends or
 * the signal aborts (the checkpoint was decided elsewhere, or the watch ended).
 */
export const askChoice = (
  { input, output }: PromptStreams,
  question: string,
  signal?: AbortSignal,
): Promise<Choice | undefined> =>
  new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(undefined);
      return;
    }
    const lines = createInterface({ input, terminal: false });
    let settled = false;
    const finish = (choice: Choice | undefined) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      lines.close();
      resolve(choice);
    };
    const onAbort = () => finish(undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    lines.on('line', (line) => {
      const choice = parseChoice(line);
      if (choice) finish(choice);
      else output.write(`please answer approve or cancel (a/c): `);
    });
    lines.on('close', () => finish(undefined));
    output.write(question);
  });
