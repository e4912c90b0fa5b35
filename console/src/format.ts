import type { RunStatus } from '../../shared/domain/run.js';

/** How figures read in the console. Money is micro-USD integers (DESIGN §2). */

export const usd = (microUsd: number | undefined) => {
  if (microUsd === undefined) return '—';
  const dollars = microUsd / 1_000_000;
  return dollars !== 0 && Math.abs(dollars) < 0.01 ? `$${dollars.toFixed(4)}` : `$${dollars.toFixed(2)}`;
};

export const count = (n: number) => n.toLocaleString('en-US');

export const duration = (ms: number | undefined) => {
  if (ms === undefined) return '—';
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
};

/** A run's time so far, or its whole duration once it has ended. */
export const runDuration = (run: { startedAt?: string; completedAt?: string; durationMs?: number }) => {
  if (run.durationMs !== undefined) return duration(run.durationMs);
  if (!run.startedAt) return '—';
  const end = run.completedAt ? Date.parse(run.completedAt) : Date.now();
  return duration(end - Date.parse(run.startedAt));
};

const timeFormat = new Intl.DateTimeFormat('en-GB', {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

export const when = (iso: string | number | undefined) =>
  iso === undefined ? '—' : timeFormat.format(new Date(iso));

export const STATUS_LABELS: Record<RunStatus, string> = {
  QUEUED: 'Queued',
  PROVISIONING: 'Provisioning',
  RUNNING: 'Running',
  AWAITING_APPROVAL: 'Awaiting approval',
  RETRYING: 'Retrying',
  COMPLETED: 'Completed',
  DONE: 'Done',
  FAILED: 'Failed',
  CANCELLED: 'Cancelled',
  STOPPED: 'Stopped',
  ABANDONED: 'Abandoned',
  PR_REJECTED: 'PR rejected',
  DEAD_LETTER: 'Dead letter',
};

/** `PR_RAISED` → `PR raised` */
export const phaseLabel = (phase: string | undefined) =>
  phase ? (phase.charAt(0) + phase.slice(1).toLowerCase()).replace('_', ' ').replace('Pr ', 'PR ') : '—';
