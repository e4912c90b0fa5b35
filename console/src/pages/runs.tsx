import { useEffect, useState } from 'preact/hooks';
import { RUN_SOURCES, type Run, type RunStatus } from '../../../shared/domain/run.js';
import type { Pod, RunPage } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { Empty, ErrorNote, Loading, StatusBadge, useLoad } from '../components.js';
import { phaseLabel, runDuration, usd, when } from '../format.js';
import { Link, navigate, type Place } from '../router.js';
import { live, type Subscription } from '../stream.js';

/** The status filter chips, each the statuses it stands for. */
export const CHIPS: { label: string; statuses: RunStatus[] }[] = [
  { label: 'Queued', statuses: ['QUEUED'] },
  { label: 'Running', statuses: ['PROVISIONING', 'RUNNING', 'RETRYING'] },
  { label: 'Awaiting approval', statuses: ['AWAITING_APPROVAL'] },
  { label: 'Completed', statuses: ['COMPLETED'] },
  { label: 'Done', statuses: ['DONE'] },
  { label: 'Failed', statuses: ['FAILED', 'CANCELLED', 'STOPPED'] },
  { label: 'Abandoned', statuses: ['ABANDONED'] },
  { label: 'PR rejected', statuses: ['PR_REJECTED'] },
  { label: 'Dead letter', statuses: ['DEAD_LETTER'] },
];

const PAGE_SIZE = 25;
const POLL_MS = 5000;

interface Filters {
  statuses: RunStatus[];
  podId: string;
  source: string;
}

const filtersOf = (query: URLSearchParams): Filters => ({
  statuses: (query.get('status') ?? '').split(',').filter(Boolean) as RunStatus[],
  podId: query.get('podId') ?? '',
  source: query.get('source') ?? '',
});

const matches = (run: Run, filters: Filters, projectId: string | undefined) =>
  (filters.statuses.length === 0 || filters.statuses.includes(run.status)) &&
  (!filters.podId || run.podId === filters.podId) &&
  (!filters.source || run.source === filters.source) &&
  (!projectId || run.projectId === projectId);

/** Newest first: run ids are ULIDs, which sort by creation time. */
const newestFirst = (a: Run, b: Run) => (a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0);

export const RunsPage = ({ place, projectId }: { place: Place; projectId?: string }) => {
  const filters = filtersOf(place.query);
  const listPath = projectId ? `/v1/projects/${encodeURIComponent(projectId)}/runs` : '/v1/runs';
  const query = {
    status: filters.statuses.join(','),
    podId: filters.podId,
    source: filters.source,
    limit: PAGE_SIZE,
  };
  const key = JSON.stringify([listPath, query]);
  const [runs, setRuns] = useState<Run[] | undefined>();
  const [nextCursor, setNextCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>();
  const [loadingMore, setLoadingMore] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const pods = useLoad(() => api.get<{ items: Pod[] }>('/v1/pods'), 'pods');

  useEffect(() => {
    let current = true;
    let subscription: Subscription | undefined;
    setRuns(undefined);
    setError(undefined);
    // a run that changes is read again; one that is new and matches the filters joins the list
    const upsert = (run: Run) =>
      setRuns((list) => {
        if (!list) return list;
        const at = list.findIndex((r) => r.runId === run.runId);
        if (at >= 0) return list.map((r, i) => (i === at ? run : r));
        return matches(run, filters, projectId) ? [run, ...list].sort(newestFirst) : list;
      });
    const readNewest = async () => {
      const page = await api.get<RunPage>(listPath, query);
      for (const run of page.items) upsert(run);
    };
    api.get<RunPage>(listPath, query).then(
      (page) => {
        if (!current) return;
        setRuns(page.items);
        setNextCursor(page.nextCursor);
        // followed once the first page is drawn, so its ticket does not hold the page up; what
        // changed in between is read again once the stream follows
        subscription = live({
          message: () => ({ action: 'followRuns', ...(projectId ? { projectId } : {}) }),
          onMessage: (message) => {
            if (message.type === 'following-runs') void readNewest().catch(() => undefined);
            if (message.type !== 'run') return;
            api.get<Run>(`/v1/runs/${message.runId}`).then(upsert, () => undefined);
          },
          poll: readNewest,
          pollEveryMs: POLL_MS,
        });
      },
      (err: unknown) => current && setError(err),
    );
    return () => {
      current = false;
      subscription?.close();
    };
  }, [key, attempt]);

  const loadMore = async () => {
    if (!nextCursor) return;
    setLoadingMore(true);
    try {
      const page = await api.get<RunPage>(listPath, { ...query, cursor: nextCursor });
      setRuns((list) => {
        const seen = new Set(list?.map((r) => r.runId));
        return [...(list ?? []), ...page.items.filter((r) => !seen.has(r.runId))];
      });
      setNextCursor(page.nextCursor);
    } catch (err) {
      setError(err);
    } finally {
      setLoadingMore(false);
    }
  };

  const setFilters = (next: Partial<Filters>) => {
    const merged = { ...filters, ...next };
    const search = new URLSearchParams();
    if (merged.statuses.length) search.set('status', merged.statuses.join(','));
    if (merged.podId) search.set('podId', merged.podId);
    if (merged.source) search.set('source', merged.source);
    const text = search.toString();
    navigate(`${place.path}${text ? `?${text}` : ''}`, { replace: true });
  };

  const toggleChip = (chip: (typeof CHIPS)[number]) => {
    const on = chip.statuses.every((s) => filters.statuses.includes(s));
    setFilters({
      statuses: on
        ? filters.statuses.filter((s) => !chip.statuses.includes(s))
        : [...filters.statuses, ...chip.statuses.filter((s) => !filters.statuses.includes(s))],
    });
  };

  return (
    <section>
      <h1>{projectId ? `Runs of ${projectId}` : 'Runs'}</h1>
      <div class="filters">
        <fieldset class="chips">
          <legend>Status</legend>
          {CHIPS.map((chip) => (
            <button
              key={chip.label}
              type="button"
              class="chip"
              aria-pressed={chip.statuses.every((s) => filters.statuses.includes(s))}
              onClick={() => toggleChip(chip)}
            >
              {chip.label}
            </button>
          ))}
        </fieldset>
        <div class="field">
          <label for="filter-pod">Pod</label>
          <select
            id="filter-pod"
            value={filters.podId}
            onChange={(e) => setFilters({ podId: e.currentTarget.value })}
          >
            <option value="">All pods</option>
            {pods.loaded.state === 'ready' &&
              pods.loaded.value.items.map((pod) => (
                <option key={pod.podId} value={pod.podId}>
                  {pod.name} ({pod.podId})
                </option>
              ))}
            {filters.podId && pods.loaded.state !== 'ready' && (
              <option value={filters.podId}>{filters.podId}</option>
            )}
          </select>
        </div>
        <div class="field">
          <label for="filter-source">Source</label>
          <select
            id="filter-source"
            value={filters.source}
            onChange={(e) => setFilters({ source: e.currentTarget.value })}
          >
            <option value="">All sources</option>
            {RUN_SOURCES.map((source) => (
              <option key={source} value={source}>
                {source}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error !== undefined && <ErrorNote error={error} retry={() => setAttempt((n) => n + 1)} />}
      {runs === undefined && error === undefined && <Loading what="runs" />}
      {runs?.length === 0 && (
        <Empty>
          No runs
          {filters.statuses.length || filters.podId || filters.source ? ' match these filters' : ' yet'}.{' '}
          <Link href={projectId ? `/dispatch?projectId=${projectId}` : '/dispatch'}>Dispatch one</Link>.
        </Empty>
      )}
      {runs !== undefined && runs.length > 0 && (
        <table class="runs">
          <thead>
            <tr>
              <th scope="col">Item</th>
              <th scope="col">Pod</th>
              <th scope="col">Status</th>
              <th scope="col">Phase</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
              <th scope="col">Cost</th>
              <th scope="col">Pull request</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => (
              <tr key={run.runId} data-run-id={run.runId}>
                <td data-label="Item">
                  <Link href={`/runs/${run.runId}`}>{run.itemId}</Link>
                  {!projectId && <span class="sub">{run.projectId}</span>}
                </td>
                <td data-label="Pod">{run.podId}</td>
                <td data-label="Status">
                  <StatusBadge status={run.status} />
                </td>
                <td data-label="Phase">{phaseLabel(run.phase)}</td>
                <td data-label="Started">{when(run.startedAt ?? run.createdAt)}</td>
                <td data-label="Duration">{runDuration(run)}</td>
                <td data-label="Cost">{usd(run.cost.totalUsd)}</td>
                <td data-label="Pull request">
                  {run.pullRequest ? (
                    <a href={run.pullRequest.url}>#{run.pullRequest.number ?? 'PR'}</a>
                  ) : (
                    '—'
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {runs !== undefined && nextCursor && (
        <button type="button" class="load-more" disabled={loadingMore} onClick={loadMore}>
          {loadingMore ? 'Loading…' : 'Load more'}
        </button>
      )}
      {runs !== undefined && runs.length > 0 && !nextCursor && <p class="end">That is every run.</p>}
    </section>
  );
};
