import { useEffect, useRef, useState } from 'preact/hooks';
import type { ServerMessage } from '../../../shared/schemas/stream.js';
import type { LogLine, LogPage } from '../../../shared/schemas/wire.js';
import { api } from '../api.js';
import { ErrorNote, Loading } from '../components.js';
import { live } from '../stream.js';

type LogMessage = Extract<ServerMessage, { type: 'log' }>;

const PAGE_SIZE = 500;
const TAIL_MS = 2000;

const REASONS = {
  not_started: 'The sandbox has not written anything yet.',
  expired: 'This log has expired.',
};

const time = (timestamp: number) => new Date(timestamp).toISOString().slice(11, 23);

/**
 * The sandbox log: the newest page first, older pages on demand ("Load older"), and new lines as
 * they are written (followed over the WebSocket stream from the newest page's cursor, or asked for
 * every two seconds where there is no stream).
 */
export const LogViewer = ({ runId, ended }: { runId: string; ended: boolean }) => {
  const [lines, setLines] = useState<LogLine[] | undefined>();
  const [olderCursor, setOlderCursor] = useState<string | null>(null);
  const [reason, setReason] = useState<LogPage['reason']>();
  const [error, setError] = useState<unknown>();
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [tail, setTail] = useState(true);
  const afterCursor = useRef<string | null>(null);

  const readNewest = async () => {
    const page = await api.get<LogPage>(`/v1/runs/${runId}/logs`, { limit: PAGE_SIZE });
    setLines(page.items);
    setOlderCursor(page.nextCursor);
    setReason(page.reason);
    afterCursor.current = page.afterCursor;
  };

  useEffect(() => {
    setLines(undefined);
    setError(undefined);
    readNewest().catch(setError);
  }, [runId]);

  useEffect(() => {
    if (!tail || lines === undefined) return;
    let current = true;
    /** log messages that came before the one they continue: two may cross in flight */
    const early = new Map<string, LogMessage>();
    const append = (more: LogLine[]) => {
      if (current && more.length) setLines((list) => [...(list ?? []), ...more]);
    };
    const readNewer = async () => {
      if (afterCursor.current === null) return readNewest();
      const page = await api.get<LogPage>(`/v1/runs/${runId}/logs`, {
        after: afterCursor.current,
        limit: PAGE_SIZE,
      });
      append(page.items);
      afterCursor.current = page.afterCursor;
    };
    // new lines come over the stream (followLogs from the last cursor, again after a dropped
    // connection), or by asking for the lines after it when there is no stream
    const subscription = live({
      message: () => ({
        action: 'followLogs',
        runId,
        ...(afterCursor.current ? { after: afterCursor.current } : {}),
      }),
      onMessage: (message: ServerMessage) => {
        if (message.type === 'following-logs' && message.runId === runId) {
          afterCursor.current ??= message.cursor;
          return;
        }
        if (message.type !== 'log' || message.runId !== runId) return;
        early.set(message.from, message);
        for (
          let next = early.get(afterCursor.current ?? '');
          next;
          next = early.get(afterCursor.current ?? '')
        ) {
          early.delete(next.from);
          afterCursor.current = next.cursor;
          append(next.lines);
        }
      },
      poll: readNewer,
      pollEveryMs: TAIL_MS,
    });
    return () => {
      current = false;
      subscription.close();
    };
  }, [runId, tail, lines === undefined]);

  const loadOlder = async () => {
    if (!olderCursor) return;
    setLoadingOlder(true);
    setError(undefined);
    try {
      const page = await api.get<LogPage>(`/v1/runs/${runId}/logs`, {
        cursor: olderCursor,
        limit: PAGE_SIZE,
      });
      setLines((list) => [...page.items, ...(list ?? [])]);
      setOlderCursor(page.nextCursor);
    } catch (err) {
      setError(err);
    } finally {
      setLoadingOlder(false);
    }
  };

  return (
    <section aria-labelledby="logs-title" class="logs">
      <h2 id="logs-title">Log</h2>
      <div class="log-tools">
        {olderCursor && (
          <button type="button" class="load-more" disabled={loadingOlder} onClick={loadOlder}>
            {loadingOlder ? 'Loading…' : 'Load older'}
          </button>
        )}
        {lines !== undefined && lines.length > 0 && !olderCursor && (
          <span class="sub">From the first line.</span>
        )}
        {!ended && (
          <label class="inline">
            <input type="checkbox" checked={tail} onChange={(e) => setTail(e.currentTarget.checked)} /> Follow
            new lines
          </label>
        )}
      </div>
      {error !== undefined && <ErrorNote error={error} />}
      {lines === undefined && error === undefined && <Loading what="the log" />}
      {lines !== undefined && lines.length === 0 && (
        <p class="empty">{(reason && REASONS[reason]) ?? 'No log lines yet.'}</p>
      )}
      {lines !== undefined && lines.length > 0 && (
        // biome-ignore lint/a11y/noNoninteractiveTabindex: the log scrolls, so the keyboard must reach it
        <pre class="log" role="log" tabIndex={0} aria-label="Log lines">
          {lines.map((line, i) => (
            <span key={i} class="log-line">
              <span class="log-time">{time(line.timestamp)}</span> {line.message}
              {'\n'}
            </span>
          ))}
        </pre>
      )}
    </section>
  );
};
