import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { PHASES, type Phase, type RunStatus } from '../../shared/domain/run.js';
import { messageOf } from './api.js';
import { phaseLabel, STATUS_LABELS } from './format.js';

/** What every page is built from: status as colour and words, and the loading, empty and error states. */

export const StatusBadge = ({ status }: { status: RunStatus }) => (
  <span class={`status status-${status.toLowerCase()}`}>{STATUS_LABELS[status]}</span>
);

/** The phases a run goes through, FAILED aside: it replaces whichever phase the run failed in. */
const PROGRESS = PHASES.filter((phase) => phase !== 'FAILED');

export const PhaseBar = ({ phase, failed }: { phase: Phase | undefined; failed: boolean }) => {
  const reached = phase === undefined ? -1 : phase === 'FAILED' ? -1 : PROGRESS.indexOf(phase);
  return (
    <div class="phase-bar">
      <div
        role="progressbar"
        aria-label="Phase"
        aria-valuemin={0}
        aria-valuemax={PROGRESS.length}
        aria-valuenow={reached + 1}
        aria-valuetext={phaseLabel(phase)}
        class="phase-track"
      >
        {PROGRESS.map((step, i) => (
          <span key={step} class={i <= reached ? 'phase-step reached' : 'phase-step'} />
        ))}
      </div>
      <p class={failed || phase === 'FAILED' ? 'phase-name failed' : 'phase-name'}>
        Phase: <strong data-phase={phase ?? ''}>{phaseLabel(phase)}</strong>
      </p>
    </div>
  );
};

export const Loading = ({ what }: { what: string }) => (
  <p class="loading" role="status">
    Loading {what}…
  </p>
);

export const Empty = ({ children }: { children: ComponentChildren }) => <p class="empty">{children}</p>;

export const ErrorNote = ({ error, retry }: { error: unknown; retry?: () => void }) => (
  <div class="error" role="alert">
    <p>{messageOf(error)}</p>
    {retry && (
      <button type="button" onClick={retry}>
        Try again
      </button>
    )}
  </div>
);

export type Loaded<T> =
  | { state: 'loading' }
  | { state: 'error'; error: unknown }
  | { state: 'ready'; value: T };

/** A read the page starts when `key` changes; `reload` reads again, `set` replaces what was read. */
export const useLoad = <T,>(load: () => Promise<T>, key: string) => {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let current = true;
    setLoaded({ state: 'loading' });
    load().then(
      (value) => current && setLoaded({ state: 'ready', value }),
      (error: unknown) => current && setLoaded({ state: 'error', error }),
    );
    return () => {
      current = false;
    };
  }, [key, attempt]);
  const reload = useCallback(() => setAttempt((n) => n + 1), []);
  const set = useCallback((value: T) => setLoaded({ state: 'ready', value }), []);
  return { loaded, reload, set };
};

export const Show = <T,>({
  loaded,
  what,
  retry,
  children,
}: {
  loaded: Loaded<T>;
  what: string;
  retry?: () => void;
  children: (value: T) => ComponentChildren;
}) => {
  if (loaded.state === 'loading') return <Loading what={what} />;
  if (loaded.state === 'error') return <ErrorNote error={loaded.error} retry={retry} />;
  return <>{children(loaded.value)}</>;
};
