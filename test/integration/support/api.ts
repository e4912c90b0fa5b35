import { inject } from 'vitest';
import { isTerminal, type Run } from '../../../shared/domain/run.js';

/** A small client for the local cloud's HTTP API, as a user would call it. */
export const endpoints = () => inject('endpoints');

export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export const api = async <T = unknown>(
  method: string,
  path: string,
  options: { body?: unknown; rawBody?: string; token?: string | null; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> => {
  const e = endpoints();
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? e.token : options.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined = options.rawBody;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  const res = await fetch(`${e.apiUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
};

export const dispatch = async (request: Record<string, unknown> = {}, headers?: Record<string, string>) => {
  const e = endpoints();
  return api<Run>('POST', `/v1/projects/${e.projectId}/runs`, {
    body: {
      itemId: 'ITEM-1',
      podId: e.scriptedPodId,
      mode: 'autopilot',
      prompt: 'Add a health check',
      ...request,
    },
    headers,
  });
};

export const getRun = async (runId: string) => (await api<Run>('GET', `/v1/runs/${runId}`)).body;

/** Poll the run until `done` says so; returns every distinct status seen, in order, and the last run. */
export const waitForRun = async (
  runId: string,
  done: (run: Run) => boolean,
  timeoutMs = 60_000,
): Promise<{ run: Run; statuses: string[] }> => {
  const statuses: string[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await getRun(runId);
    if (statuses.at(-1) !== run.status) statuses.push(run.status);
    if (done(run)) return { run, statuses };
    if (Date.now() > deadline) {
      throw new Error(
        `run ${runId} did not get there in ${timeoutMs} ms; statuses ${statuses.join(' > ')}; last ${JSON.stringify(run)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
};

export const waitForTerminal = (runId: string, timeoutMs?: number) =>
  waitForRun(runId, (run) => isTerminal(run.status), timeoutMs);

/**
 * A run whose pod hangs (`failure: 'hang'`), once the pod has sent all it will: RUNNING with its task,
 * its last seq unchanged for `quietMs`. A test that plays the pod takes over only then: a batch the
 * pod still had in flight would be refused with the new token, and the pod would end the run.
 */
export const waitForQuietPod = async (runId: string, quietMs = 1500, timeoutMs = 30_000): Promise<Run> => {
  const deadline = Date.now() + timeoutMs;
  let lastSeq = -1;
  let since = Date.now();
  for (;;) {
    const run = await getRun(runId);
    if (run.status === 'RUNNING' && run.taskArn) {
      if (run.lastSeq !== lastSeq) {
        lastSeq = run.lastSeq;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        return run;
      }
    }
    if (Date.now() > deadline)
      throw new Error(`run ${runId}'s pod did not go quiet; last ${JSON.stringify(run)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
