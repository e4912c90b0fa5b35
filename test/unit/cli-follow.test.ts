import { describe, expect, it } from 'vitest';
import type { ApiReader, CallOptions } from '../../cli/client.js';
import { ApiError, NetworkError } from '../../cli/errors.js';
import { backoffMs, type FollowEvent, PollingFollower } from '../../cli/follow.js';
import type { Run, RunStatus } from '../../shared/domain/run.js';
import type { StepPage, StepView } from '../../shared/schemas/wire.js';
import { runFactory } from '../support/factories.js';

const RUN_ID = 'run_01J0000000000000000000000A';

/** An API that answers reads with `answer`. */
const reader = (answer: (path: string, options?: CallOptions) => Promise<unknown>): ApiReader => ({
  get: answer as ApiReader['get'],
});

const step = (seq: number): StepView => ({
  seq,
  at: '2026-01-01T00:00:00.000Z',
  kind: 'assistant',
  content: `step ${seq}`,
});

/**
 * The API as a script of polls: each poll answers the run in the next status and the steps recorded
 * by then; `fail` makes a poll's requests fail with that error instead.
 */
const scriptedApi = (polls: { status: RunStatus; steps: number[]; fail?: Error }[]) => {
  let poll = -1;
  const afters: number[] = [];
  const api = reader(async (path, options) => {
    if (!path.endsWith('/steps')) poll = Math.min(poll + 1, polls.length - 1);
    const now = polls[poll];
    if (!now) throw new Error('no poll');
    if (now.fail) throw now.fail;
    if (!path.endsWith('/steps')) {
      // the run's version moves when its status does
      const version = polls
        .slice(0, poll + 1)
        .filter((p, i) => i === 0 || p.status !== polls[i - 1]?.status).length;
      return runFactory({ runId: RUN_ID, status: now.status, version });
    }
    const after = Number(options?.query?.after ?? 0);
    afters.push(after);
    const limit = Number(options?.query?.limit ?? 100);
    const items = now.steps.filter((seq) => seq > after).map(step);
    const page: StepPage = {
      items: items.slice(0, limit),
      nextAfter: items.length > limit ? (items[limit - 1]?.seq ?? null) : null,
    };
    return page;
  });
  return { api, afters };
};

const follow = async (api: ApiReader, options = {}) => {
  const events: FollowEvent[] = [];
  const sleeps: number[] = [];
  const follower = new PollingFollower(api, {
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
  const status = await follower.follow(RUN_ID, (e) => {
    events.push(e);
  });
  return { status, events, sleeps };
};

const shown = (events: FollowEvent[]) =>
  events.map((e) =>
    e.type === 'run' ? e.run.status : e.type === 'step' ? `#${e.step.seq}` : `retry ${e.delayMs}`,
  );

describe('PollingFollower', () => {
  it('sends each status change and each step once, in order, and ends with the terminal status', async () => {
    const { api, afters } = scriptedApi([
      { status: 'QUEUED', steps: [] },
      { status: 'RUNNING', steps: [3, 5] },
      { status: 'RUNNING', steps: [3, 5, 7] },
      { status: 'COMPLETED', steps: [3, 5, 7, 9] },
    ]);
    const { status, events, sleeps } = await follow(api);
    expect(status).toBe('COMPLETED');
    // the last steps before the run that ended, so the end comes last
    expect(shown(events)).toEqual(['QUEUED', 'RUNNING', '#3', '#5', '#7', '#9', 'COMPLETED']);
    // each steps request resumes after the last seq sent
    expect(afters).toEqual([0, 0, 5, 7]);
    expect(sleeps).toEqual([500, 500, 500]);
  });

  it('sends a run that waits at a checkpoint after the steps that led there', async () => {
    const { api } = scriptedApi([
      { status: 'RUNNING', steps: [] },
      { status: 'AWAITING_APPROVAL', steps: [3] },
      { status: 'AWAITING_APPROVAL', steps: [3] },
      { status: 'RUNNING', steps: [3, 5] },
      { status: 'COMPLETED', steps: [3, 5] },
    ]);
    const { events } = await follow(api);
    expect(shown(events)).toEqual(['RUNNING', '#3', 'AWAITING_APPROVAL', 'RUNNING', '#5', 'COMPLETED']);
  });

  it('does not send a run that did not change', async () => {
    let calls = 0;
    const api = reader(async (path) => {
      if (path.endsWith('/steps')) return { items: [], nextAfter: null };
      calls++;
      return runFactory({ status: calls < 4 ? 'RUNNING' : 'FAILED', version: calls < 4 ? 1 : 2 });
    });
    const { events } = await follow(api);
    expect(shown(events)).toEqual(['RUNNING', 'FAILED']);
  });

  it('reads every page of steps a poll finds', async () => {
    const { api, afters } = scriptedApi([{ status: 'FAILED', steps: [1, 2, 3, 4, 5] }]);
    const { events } = await follow(api, { pageSize: 2 });
    expect(shown(events)).toEqual(['#1', '#2', '#3', '#4', '#5', 'FAILED']);
    expect(afters).toEqual([0, 2, 4]);
  });

  it('survives failed requests, retrying with a growing delay, and sends nothing twice', async () => {
    const down = new NetworkError('could not reach http://api/v1/runs/x: connect ECONNREFUSED');
    const { api } = scriptedApi([
      { status: 'RUNNING', steps: [1] },
      { status: 'RUNNING', steps: [], fail: down },
      { status: 'RUNNING', steps: [], fail: new ApiError('Service Unavailable', 503) },
      { status: 'RUNNING', steps: [], fail: down },
      { status: 'RUNNING', steps: [1, 2] },
      { status: 'STOPPED', steps: [1, 2] },
    ]);
    const { status, events, sleeps } = await follow(api);
    expect(status).toBe('STOPPED');
    expect(shown(events)).toEqual([
      'RUNNING',
      '#1',
      'retry 500',
      'retry 1000',
      'retry 2000',
      '#2',
      'STOPPED',
    ]);
    expect(sleeps).toEqual([500, 500, 1000, 2000, 500]);
    const retry = events.find((e) => e.type === 'retrying');
    expect(retry).toMatchObject({ message: down.message });
  });

  it('waits as long as a 429’s Retry-After asks before asking again', async () => {
    const { api } = scriptedApi([
      { status: 'RUNNING', steps: [], fail: new ApiError('over its rate', 429, 'TooManyRequests', {}, 7000) },
      { status: 'COMPLETED', steps: [] },
    ]);
    const { events, sleeps } = await follow(api);
    expect(shown(events)).toEqual(['retry 7000', 'COMPLETED']);
    expect(sleeps).toEqual([7000]);
  });

  it('never sends a step twice, even when a page repeats steps it had', async () => {
    let polls = 0;
    const api = reader(async (path) => {
      if (path.endsWith('/steps')) return { items: [1, 2, 3].slice(0, polls + 1).map(step), nextAfter: null };
      polls++;
      return runFactory({ status: polls < 3 ? 'RUNNING' : 'COMPLETED', version: polls < 3 ? 1 : 2 });
    });
    const { events } = await follow(api);
    expect(shown(events)).toEqual(['RUNNING', '#1', '#2', '#3', 'COMPLETED']);
  });

  it('backs off up to a maximum', () => {
    expect([0, 1, 2, 3, 10].map((n) => backoffMs(n, 500, 3000))).toEqual([500, 1000, 2000, 3000, 3000]);
  });

  it('gives up on an error that will not pass: not signed in, not found', async () => {
    const { api } = scriptedApi([
      { status: 'RUNNING', steps: [], fail: new ApiError('run x was not found', 404) },
    ]);
    await expect(follow(api)).rejects.toThrow('run x was not found');
  });

  it('stops when aborted', async () => {
    const { api } = scriptedApi([{ status: 'RUNNING', steps: [] }]);
    const controller = new AbortController();
    const follower = new PollingFollower(api, { intervalMs: 5 });
    const following = follower.follow(RUN_ID, () => controller.abort(), controller.signal);
    await expect(following).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('waits for a run that is slow to change', async () => {
    const runs: Run['status'][] = ['QUEUED', 'QUEUED', 'QUEUED', 'CANCELLED'];
    const { api } = scriptedApi(runs.map((status) => ({ status, steps: [] })));
    const { status, events } = await follow(api);
    expect(status).toBe('CANCELLED');
    expect(shown(events)).toEqual(['QUEUED', 'CANCELLED']);
  });
});
