import { useEffect, useRef, useState } from 'preact/hooks';
import { isTerminal, type Run } from '../../../shared/domain/run.js';
import type { Project } from '../../../shared/domain/tenancy.js';
import type { ServerMessage } from '../../../shared/schemas/stream.js';
import type { StepView } from '../../../shared/schemas/wire.js';
import { ApiError, api } from '../api.js';
import { ErrorNote, Loading, PhaseBar, StatusBadge } from '../components.js';
import { count, duration, runDuration, STATUS_LABELS, usd, when } from '../format.js';
import { Link, navigate } from '../router.js';
import type { Session } from '../session.js';
import { live } from '../stream.js';
import { LogViewer } from './logs.js';
import { StepTimeline } from './steps.js';

const POLL_MS = 2000;

/** The run's duration, counting up each second while it is open (only this redraws). */
const Duration = ({ run }: { run: Run }) => {
  const [, setTick] = useState(0);
  const ended = isTerminal(run.status);
  useEffect(() => {
    if (ended) return;
    const timer = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, [ended]);
  return <>{runDuration(run)}</>;
};

/** What the agent sent with its checkpoint (the plan, the change), read once per checkpoint. */
const CheckpointDetails = ({ runId, seq }: { runId: string; seq: number }) => {
  const [checkpoint, setCheckpoint] = useState<{ details?: string; detailsTruncated?: boolean }>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    setCheckpoint(undefined);
    setError(undefined);
    api
      .get<{ details?: string; detailsTruncated?: boolean }>(`/v1/runs/${runId}/checkpoint`)
      .then(setCheckpoint, setError);
  }, [runId, seq]);
  if (error !== undefined) return <ErrorNote error={error} />;
  if (!checkpoint) return <Loading what="the checkpoint's details" />;
  if (!checkpoint.details) return null;
  return (
    <details class="checkpoint-details" open>
      <summary>Details{checkpoint.detailsTruncated && ' (cut)'}</summary>
      <pre>{checkpoint.details}</pre>
    </details>
  );
};

/** The frozen config the run executed, read when opened: it is long and rarely needed. */
const FrozenConfig = ({ runId }: { runId: string }) => {
  const [config, setConfig] = useState<unknown>();
  const [error, setError] = useState<unknown>();
  const [open, setOpen] = useState(false);
  const read = () => {
    setError(undefined);
    api.get<unknown>(`/v1/runs/${runId}/config`).then(setConfig, setError);
  };
  return (
    <details
      class="config"
      onToggle={(event) => {
        setOpen(event.currentTarget.open);
        if (event.currentTarget.open && config === undefined) read();
      }}
    >
      <summary>Frozen config</summary>
      {error !== undefined && <ErrorNote error={error} retry={read} />}
      {open && config === undefined && error === undefined && <Loading what="the config" />}
      {config !== undefined && <pre class="code">{JSON.stringify(config, null, 2)}</pre>}
    </details>
  );
};

/** What the caller may do to the run: project admins (and account admins) decide, stop, close, replay, redrive. */
const actionsFor = (run: Run, isAdmin: boolean) => ({
  decide: isAdmin && run.status === 'AWAITING_APPROVAL',
  stop: isAdmin && !isTerminal(run.status),
  done: isAdmin && isTerminal(run.status) && run.status !== 'DONE',
  replay: isAdmin,
  redrive: isAdmin && run.status === 'DEAD_LETTER',
});

export const RunPage = ({ runId, session }: { runId: string; session: Session }) => {
  const [run, setRun] = useState<Run | undefined>();
  const [error, setError] = useState<unknown>();
  const [project, setProject] = useState<Project | undefined>();
  const [liveSteps, setLiveSteps] = useState<StepView[]>([]);
  const [actionError, setActionError] = useState<unknown>();
  const [busy, setBusy] = useState<string | undefined>();
  const refresh = useRef<() => void>(() => undefined);

  useEffect(() => {
    let current = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setRun(undefined);
    setError(undefined);
    setLiveSteps([]);
    const read = () =>
      api.get<Run>(`/v1/runs/${runId}`).then(
        (value) => current && setRun(value),
        (err: unknown) => current && setError(err),
      );
    // feed events come in bursts: the run is read once per burst
    refresh.current = () => {
      clearTimeout(timer);
      timer = setTimeout(read, 150);
    };
    void read();
    let lastSeq = 0;
    let caughtUp = false;
    const subscription = live({
      message: () => ({ action: 'follow', runId, after: lastSeq }),
      onMessage: (message: ServerMessage) => {
        if (message.type === 'caught-up') {
          caughtUp = true;
          refresh.current();
          return;
        }
        if (message.type !== 'event' || message.seq <= lastSeq) return;
        lastSeq = message.seq;
        if (!caughtUp) return;
        if (message.kind === 'step') setLiveSteps((steps) => [...steps, message.data as unknown as StepView]);
        else refresh.current();
      },
      poll: read,
      pollEveryMs: POLL_MS,
    });
    return () => {
      current = false;
      clearTimeout(timer);
      subscription.close();
    };
  }, [runId]);

  const projectId = run?.projectId;
  useEffect(() => {
    if (!projectId) return;
    api.get<Project>(`/v1/projects/${projectId}`).then(setProject, () => setProject(undefined));
  }, [projectId]);

  if (error) {
    const notFound = error instanceof ApiError && (error.status === 404 || error.status === 400);
    return (
      <section>
        <h1>{notFound ? 'Run not found' : 'The run could not be read'}</h1>
        {notFound ? (
          <p class="empty">
            There is no run {runId} in your account. <Link href="/runs">See all runs</Link>.
          </p>
        ) : (
          <ErrorNote error={error} retry={() => refresh.current()} />
        )}
      </section>
    );
  }
  if (!run) return <Loading what="the run" />;

  const role =
    session.accountRole === 'admin'
      ? 'admin'
      : project?.members.find((m) => m.userId === session.userId)?.role;
  const can = actionsFor(run, role === 'admin');

  const act = async (action: string, confirmText?: string) => {
    if (confirmText && !confirm(confirmText)) return;
    setBusy(action);
    setActionError(undefined);
    try {
      const answer = await api.post<Run | { run: Run }>(`/v1/runs/${run.runId}/${action}`);
      const changed = 'run' in answer ? answer.run : answer;
      if (action === 'replay') navigate(`/runs/${changed.runId}`);
      else setRun(changed);
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(undefined);
    }
  };

  const commit = run.artifacts.findLast((a) => a.kind === 'commit');
  const models = Object.entries(run.usage);

  return (
    <article class="run">
      <p class="crumbs">
        <Link href="/runs">Runs</Link> › <Link href={`/projects/${run.projectId}/runs`}>{run.projectId}</Link>
      </p>
      <header class="run-head">
        <h1>
          {run.itemId} <StatusBadge status={run.status} />
        </h1>
        <p class="sub">
          {run.runId} · {run.podId} · {run.mode}
        </p>
        <PhaseBar phase={run.phase} failed={run.status === 'FAILED'} />
        <div class="actions">
          {can.stop && (
            <button
              type="button"
              disabled={!!busy}
              onClick={() => act('stop', 'Stop this run? Its sandbox is torn down.')}
            >
              Stop
            </button>
          )}
          {can.done && (
            <button type="button" disabled={!!busy} onClick={() => act('done')}>
              Done
            </button>
          )}
          {can.replay && (
            <button type="button" disabled={!!busy} onClick={() => act('replay')}>
              Replay
            </button>
          )}
          {can.redrive && (
            <button type="button" disabled={!!busy} onClick={() => act('redrive')}>
              Redrive
            </button>
          )}
        </div>
        {actionError !== undefined && <ErrorNote error={actionError} />}
      </header>

      {run.pendingApproval && run.status === 'AWAITING_APPROVAL' && (
        <section class="checkpoint" aria-labelledby="checkpoint-title">
          <h2 id="checkpoint-title">Checkpoint: {run.pendingApproval.name}</h2>
          <p class="summary">{run.pendingApproval.summary}</p>
          <CheckpointDetails runId={run.runId} seq={run.pendingApproval.seq} />
          <p class="sub">
            Asked {when(run.pendingApproval.requestedAt)}
            {run.pendingApproval.expiresAt && `; expires ${when(run.pendingApproval.expiresAt)}`}
          </p>
          {can.decide ? (
            <div class="actions">
              <button type="button" class="primary" disabled={!!busy} onClick={() => act('approve')}>
                Approve
              </button>
              <button
                type="button"
                disabled={!!busy}
                onClick={() => act('cancel', 'Cancel this run at its checkpoint?')}
              >
                Cancel
              </button>
            </div>
          ) : (
            <p>A project admin decides this checkpoint.</p>
          )}
        </section>
      )}

      <div class="panels">
        <section aria-labelledby="details-title">
          <h2 id="details-title">Details</h2>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              {STATUS_LABELS[run.status]}
              {run.exitReason && ` (${run.exitReason.replace(/_/g, ' ')})`}
            </dd>
            {run.message && (
              <>
                <dt>Message</dt>
                <dd>{run.message}</dd>
              </>
            )}
            <dt>Created</dt>
            <dd>{when(run.createdAt)}</dd>
            <dt>Started</dt>
            <dd>{when(run.startedAt)}</dd>
            <dt>Completed</dt>
            <dd>{when(run.completedAt)}</dd>
            <dt>Duration</dt>
            <dd>
              <Duration run={run} />
            </dd>
            <dt>Pull request</dt>
            <dd>
              {run.pullRequest ? (
                <a href={run.pullRequest.url} class="pull-request">
                  #{run.pullRequest.number} ({run.pullRequest.state})
                </a>
              ) : (
                '—'
              )}
            </dd>
            {commit && (
              <>
                <dt>Commit</dt>
                <dd>
                  <a href={commit.url} class="commit">
                    {commit.sha?.slice(0, 12) ?? 'commit'}
                  </a>
                </dd>
              </>
            )}
            <dt>Source</dt>
            <dd>
              {run.source} · {run.attribution}
              {run.replayOf && (
                <>
                  {' '}
                  · replay of <Link href={`/runs/${run.replayOf}`}>{run.replayOf}</Link>
                </>
              )}
            </dd>
            <dt>Repositories</dt>
            <dd>{run.repos.length ? run.repos.join(', ') : '—'}</dd>
            <dt>Attempt</dt>
            <dd>{run.attempt}</dd>
          </dl>
        </section>

        <section aria-labelledby="cost-title">
          <h2 id="cost-title">Cost</h2>
          <dl class="facts">
            <dt>Tokens</dt>
            <dd>{usd(run.cost.tokenUsd)}</dd>
            <dt>Sandbox CPU</dt>
            <dd>{usd(run.cost.sandboxCpuUsd)}</dd>
            <dt>Sandbox memory</dt>
            <dd>{usd(run.cost.sandboxMemoryUsd)}</dd>
            <dt>Fee</dt>
            <dd>{usd(run.cost.feeUsd)}</dd>
            <dt>Total</dt>
            <dd class="total">{usd(run.cost.totalUsd)}</dd>
          </dl>
          {models.length > 0 && (
            <div class="scroll">
              <table>
                <caption>Tokens per model</caption>
                <thead>
                  <tr>
                    <th scope="col">Model</th>
                    <th scope="col">Input</th>
                    <th scope="col">Output</th>
                    <th scope="col">Cache read</th>
                    <th scope="col">Cache write</th>
                    <th scope="col">Cost</th>
                  </tr>
                </thead>
                <tbody>
                  {models.map(([model, usage]) => (
                    <tr key={model}>
                      <th scope="row">{model}</th>
                      <td>{count(usage.inputTokens)}</td>
                      <td>{count(usage.outputTokens)}</td>
                      <td>{count(usage.cacheReadTokens)}</td>
                      <td>{count(usage.cacheWriteTokens)}</td>
                      <td>{usd(usage.costMicroUsd)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>

        <section aria-labelledby="history-title">
          <h2 id="history-title">Status history</h2>
          <ol class="history">
            {run.history.map((change, i) => (
              <li key={`${change.status}-${change.at}`}>
                <StatusBadge status={change.status} /> {when(change.at)}
                {i > 0 && (
                  <span class="sub">
                    {' '}
                    (+{duration(Date.parse(change.at) - Date.parse(run.history[i - 1]?.at ?? change.at))})
                  </span>
                )}
              </li>
            ))}
          </ol>
          {run.approvals && run.approvals.length > 0 && (
            <>
              <h3>Checkpoints</h3>
              <ul class="history">
                {run.approvals.map((approval) => (
                  <li key={`${approval.seq}`}>
                    {approval.name}: {approval.decision}
                    {approval.by && ` by ${approval.by}`} {when(approval.at)}
                  </li>
                ))}
              </ul>
            </>
          )}
        </section>
      </div>

      <FrozenConfig runId={run.runId} />
      <StepTimeline runId={run.runId} live={liveSteps} />
      <LogViewer runId={run.runId} ended={isTerminal(run.status)} />
      {busy && (
        <p class="sr-only" role="status">
          {busy}…
        </p>
      )}
    </article>
  );
};
