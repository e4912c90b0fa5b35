import { isTerminal, type Run, type RunStatus } from '../shared/domain/run.js';
import type { StepView } from '../shared/schemas/wire.js';

/** How the CLI writes runs, steps and money for people. Pure: the clock comes in as `now`. */

/** Exit codes of `runs watch` (and `dispatch --watch`) by the status the run ended in. */
export const EXIT_CODES: Readonly<Record<RunStatus, number | undefined>> = {
  COMPLETED: 0,
  DONE: 0,
  FAILED: 1,
  DEAD_LETTER: 1,
  CANCELLED: 2,
  STOPPED: 2,
  ABANDONED: 2,
  PR_REJECTED: 2,
  QUEUED: undefined,
  PROVISIONING: undefined,
  RUNNING: undefined,
  AWAITING_APPROVAL: undefined,
  RETRYING: undefined,
};

/** 0 for a run that did its work, 1 for one that failed, 2 for one that was ended otherwise. */
export const exitCodeFor = (status: RunStatus): number => {
  const code = EXIT_CODES[status];
  if (code === undefined) throw new Error(`${status} is not an outcome`);
  return code;
};

const usd = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const count = new Intl.NumberFormat('en-US');

/** Micro-USD as dollars: four decimals under a dollar, where runs mostly are, else cents. */
export const formatUsd = (microUsd: number): string => {
  const dollars = microUsd / 1_000_000;
  return Math.abs(dollars) < 1 ? `$${dollars.toFixed(4)}` : `$${usd.format(dollars)}`;
};

export const formatCount = (n: number): string => count.format(n);

export const formatDuration = (ms: number): string => {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  const seconds = Math.floor(ms / 1000);
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s).padStart(2, '0')}s`;
};

/** `12s ago`, `5m ago`, `3h ago`, `2d ago` */
export const formatAgo = (iso: string, now: Date): string => {
  const seconds = Math.max(0, Math.floor((now.getTime() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
};

/** `2026-12-01 10:22:01Z` */
export const formatTime = (iso: string): string => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

/** How long the run has worked: its recorded duration, or since it started while it goes on. */
export const runDurationMs = (run: Run, now: Date): number | undefined => {
  if (run.durationMs !== undefined) return run.durationMs;
  if (!run.startedAt) return undefined;
  const end = run.completedAt ? Date.parse(run.completedAt) : now.getTime();
  return end - Date.parse(run.startedAt);
};

export interface TokenTotals {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

export const tokenTotals = (run: Pick<Run, 'usage'>): TokenTotals =>
  Object.values(run.usage ?? {}).reduce(
    (sum, u) => ({
      input: sum.input + u.inputTokens,
      output: sum.output + u.outputTokens,
      cacheRead: sum.cacheRead + u.cacheReadTokens,
      cacheWrite: sum.cacheWrite + u.cacheWriteTokens,
    }),
    { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
  );

/** `1,200 in · 300 out` and the cache's tokens when there are any. */
export const formatTokens = (t: TokenTotals): string =>
  [
    `${formatCount(t.input)} in`,
    `${formatCount(t.output)} out`,
    ...(t.cacheRead > 0 ? [`${formatCount(t.cacheRead)} cache read`] : []),
    ...(t.cacheWrite > 0 ? [`${formatCount(t.cacheWrite)} cache write`] : []),
  ].join(' · ');

/** Colour for people at a terminal; nothing when the output is piped or NO_COLOR is set. */
export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  status(status: RunStatus): string;
}

const ansi = (code: number) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;

export const plainStyle: Style = { bold: (s) => s, dim: (s) => s, status: (s) => s };

export const colourStyle: Style = {
  bold: ansi(1),
  dim: ansi(2),
  status: (status) => {
    const code = EXIT_CODES[status];
    if (code === 0) return ansi(32)(status);
    if (code === 1) return ansi(31)(status);
    if (code === 2) return ansi(33)(status);
    return ansi(36)(status);
  },
};

export const styleFor = (stream: { isTTY?: boolean }, env: Record<string, string | undefined>): Style =>
  stream.isTTY && !env.NO_COLOR && env.TERM !== 'dumb' ? colourStyle : plainStyle;

/** Columns padded to their widest cell, two spaces apart; the last one is not padded. */
export const table = (headers: string[], rows: string[][]): string[] => {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) =>
        i === cells.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell)),
      )
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
};

// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape sequences colour adds
const visibleLength = (s: string): number => s.replace(/\u001b\[\d+m/g, '').length;

export const RUN_COLUMNS = ['RUN', 'ITEM', 'POD', 'STATUS', 'PHASE', 'STARTED', 'DURATION', 'COST'];

export const runRow = (run: Run, now: Date, style: Style = plainStyle): string[] => {
  const duration = runDurationMs(run, now);
  return [
    run.runId,
    run.itemId,
    run.podId,
    style.status(run.status),
    run.phase ?? '-',
    run.startedAt ? formatAgo(run.startedAt, now) : '-',
    duration === undefined ? '-' : formatDuration(duration),
    formatUsd(run.cost?.totalUsd ?? 0),
  ];
};

export const runsTable = (runs: Run[], now: Date, style: Style = plainStyle): string[] =>
  runs.length === 0
    ? ['no runs']
    : table(
        RUN_COLUMNS,
        runs.map((run) => runRow(run, now, style)),
      );

/** The first line of a text, cut to `max` characters. */
export const firstLine = (text: string, max = 120): string => {
  const line = (text.split('\n').find((l) => l.trim() !== '') ?? '').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

/** `#12 tool_call Bash  ls -la`: the kind, the tool, the first line of the content. */
export const stepLine = (step: StepView, style: Style = plainStyle): string => {
  const head = [`#${step.seq}`, step.kind, ...(step.tool ? [step.tool] : [])].join(' ');
  const text =
    firstLine(step.content) || (step.args === undefined ? '' : firstLine(JSON.stringify(step.args)));
  return text ? `${style.dim(head)}  ${text}` : style.dim(head);
};

/** `COMPLETED (completed)`, or the status alone while the run goes on. */
export const statusWithReason = (run: Run, style: Style = plainStyle): string =>
  run.exitReason && isTerminal(run.status)
    ? `${style.status(run.status)} (${run.exitReason})`
    : style.status(run.status);

/** The run, field by field, for `runs show`. */
export const runDetails = (run: Run, now: Date, style: Style = plainStyle): string[] => {
  const rows: [string, string][] = [
    ['run', `${style.bold(run.runId)}  ${statusWithReason(run, style)}`],
    ['project', run.projectId],
    ['item', run.itemId],
    ['pod', `${run.podId} (${run.mode})`],
    [
      'source',
      run.replayOf
        ? `${run.source} of ${run.replayOf} · ${run.attribution}`
        : `${run.source} · ${run.attribution}`,
    ],
    ['phase', run.phase ?? '-'],
    ['created', `${formatTime(run.createdAt)} (${formatAgo(run.createdAt, now)})`],
  ];
  if (run.startedAt) rows.push(['started', formatTime(run.startedAt)]);
  if (run.completedAt) rows.push(['completed', formatTime(run.completedAt)]);
  const duration = runDurationMs(run, now);
  if (duration !== undefined) rows.push(['duration', formatDuration(duration)]);
  for (const [model, u] of Object.entries(run.usage ?? {})) {
    rows.push([
      'tokens',
      `${model}: ${formatTokens({ input: u.inputTokens, output: u.outputTokens, cacheRead: u.cacheReadTokens, cacheWrite: u.cacheWriteTokens })} · ${formatUsd(u.costMicroUsd)}`,
    ]);
  }
  const c = run.cost;
  if (c) {
    rows.push([
      'cost',
      `${formatUsd(c.totalUsd)} (tokens ${formatUsd(c.tokenUsd)} · cpu ${formatUsd(c.sandboxCpuUsd)} · memory ${formatUsd(c.sandboxMemoryUsd)} · fee ${formatUsd(c.feeUsd)})`,
    ]);
  }
  if (run.pullRequest) rows.push(['pull request', `${run.pullRequest.url} (${run.pullRequest.state})`]);
  if (run.gitHubIssue) rows.push(['issue', run.gitHubIssue.url]);
  if (run.pendingApproval) {
    const p = run.pendingApproval;
    rows.push([
      'checkpoint',
      `${p.name}: ${firstLine(p.summary)} (waiting since ${formatTime(p.requestedAt)})`,
    ]);
  }
  const message = run.message ?? run.result?.message;
  if (message) rows.push(['message', firstLine(message, 300)]);
  if (run.repos?.length) rows.push(['repos', run.repos.join(' ')]);
  rows.push(['history', (run.history ?? []).map((h) => h.status).join(' > ')]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
};
