import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import type { ServerMessage, StepPage } from '../../shared/schemas/wire.js';
import { api, dispatch, endpoints, waitForRun, waitForTerminal } from './support/api.js';
import { type StreamProxy, startStreamProxy } from './support/stream-proxy.js';

/** The `runs` CLI as people run it: its shim in a process of its own, against the local cloud. */

const SHIM = path.resolve(import.meta.dirname, '../../cli/runs.js');

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  /** each piece of stdout with when it came, in ms since the start */
  chunks: { at: number; text: string }[];
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runs-cli-it-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const runs = (args: string[], env: Record<string, string | undefined> = {}): Promise<Outcome> => {
  const e = endpoints();
  const { RUNS_API_URL: _url, RUNS_TOKEN: _token, RUNS_CONFIG: _config, ...inherited } = process.env;
  const child = spawn(process.execPath, [SHIM, ...args], {
    env: {
      ...inherited,
      NO_COLOR: '1',
      RUNS_API_URL: e.apiUrl,
      RUNS_TOKEN: e.token,
      RUNS_CONFIG: path.join(dir, 'unused', 'config.json'),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const started = Date.now();
  const outcome: Outcome = { code: null, stdout: '', stderr: '', chunks: [] };
  child.stdout.on('data', (d: Buffer) => {
    outcome.stdout += d.toString();
    outcome.chunks.push({ at: Date.now() - started, text: d.toString() });
  });
  child.stderr.on('data', (d: Buffer) => {
    outcome.stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`runs ${args.join(' ')} did not end in 100 s:\n${outcome.stdout}\n${outcome.stderr}`));
    }, 100_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      outcome.code = code;
      resolve(outcome);
    });
  });
};

/** `runs dispatch` of the scripted pod with the demo script `demo`, in a file as `--config-file` takes it. */
const dispatchArgs = async (demo: Record<string, unknown>, ...more: string[]) => {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ demo }));
  const e = endpoints();
  return [
    'dispatch',
    '--project',
    e.projectId,
    '--pod',
    e.scriptedPodId,
    '--item',
    'CLI-1',
    '--prompt',
    'Add a health check',
    '--config-file',
    file,
    ...more,
  ];
};

const runIdIn = (text: string): string => {
  const id = /run_[0-9A-HJKMNP-TV-Z]{26}/.exec(text)?.[0];
  if (!id) throw new Error(`no run id in:\n${text}`);
  return id;
};

const allSteps = async (runId: string) =>
  (await api<StepPage>('GET', `/v1/runs/${runId}/steps?limit=100`)).body.items;

/** the seqs of the steps a watch printed, in the order it printed them */
const shownSteps = (stdout: string) =>
  stdout
    .split('\n')
    .flatMap((line) => /^ {2}#(\d+) /.exec(line)?.[1] ?? [])
    .map(Number);

type EventMessage = Extract<ServerMessage, { type: 'event' }>;
const eventsIn = (messages: ServerMessage[]) => messages.filter((m): m is EventMessage => m.type === 'event');

/** The last seq of the events that came with every seq before it. */
const contiguous = (events: EventMessage[]) => {
  const seqs = new Set(events.map((e) => e.seq));
  let through = 0;
  while (seqs.has(through + 1)) through++;
  return through;
};

/** The run's terminal status event (the pull request's details may be fed after it). */
const endOf = (events: EventMessage[]) =>
  events.find((e) => e.kind === 'status' && e.data.status === 'COMPLETED');

describe('runs dispatch --watch', () => {
  // the local cloud behind a proxy that shows what went over its WebSocket API, and can cut it
  let proxy: StreamProxy | undefined;
  const proxied = async () => {
    proxy = await startStreamProxy(endpoints());
    return proxy;
  };
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  it('follows a run that completes over the stream, showing each step once, and exits 0', async () => {
    const through = await proxied();
    const { code, stdout, stderr } = await runs(
      await dispatchArgs({ steps: 3, stepDelayMs: 100 }, '--watch'),
      { RUNS_API_URL: through.url },
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const runId = runIdIn(stdout);
    const run = (await api<Run>('GET', `/v1/runs/${runId}`)).body;
    expect(run).toMatchObject({ status: 'COMPLETED', source: 'cli', itemId: 'CLI-1' });
    expect(stdout).toContain('status COMPLETED (completed)');
    const shown = shownSteps(stdout);
    expect(shown).toEqual((await allSteps(runId)).map((s) => s.seq));
    expect(shown.length).toBeGreaterThanOrEqual(4);

    // one ticket, one connection: it followed the run from the start to its terminal status
    expect(through.tickets).toEqual([201]);
    expect(through.connections).toHaveLength(1);
    const [connection] = through.connections;
    expect(connection?.sent).toEqual([{ action: 'follow', runId, after: 0 }]);
    const events = eventsIn(connection?.received ?? []);
    // every seq once, in order (whatever order they came in), none missing up to the run's end
    expect(new Set(events.map((e) => e.seq)).size).toBe(events.length);
    const end = endOf(events);
    expect(contiguous(events)).toBeGreaterThanOrEqual(end?.seq ?? Number.POSITIVE_INFINITY);
    expect(events.filter((e) => e.kind === 'step').map((e) => e.data.seq)).toEqual(shown);
  });

  it('follows the run again from the last seq it got when its connection is cut, each step once', async () => {
    const through = await proxied();
    const watching = runs(await dispatchArgs({ steps: 40, stepDelayMs: 100 }, '--watch'), {
      RUNS_API_URL: through.url,
    });
    // cut the first connection once it has passed five steps on
    await vi.waitFor(
      () => {
        const steps = eventsIn(through.connections[0]?.received ?? []).filter((e) => e.kind === 'step');
        expect(steps.length).toBeGreaterThanOrEqual(5);
      },
      { timeout: 60_000, interval: 20 },
    );
    const [first] = through.connections;
    await first?.cut();
    const { code, stdout, stderr } = await watching;

    expect(code).toBe(0);
    const runId = runIdIn(stdout);
    const steps = await allSteps(runId);
    expect(steps.length).toBeGreaterThanOrEqual(40);
    expect(shownSteps(stdout)).toEqual(steps.map((s) => s.seq));
    expect(stderr).toContain('the stream closed the connection (1006); trying again in 500ms\n');
    // a new ticket, and a follow from the last seq the cut connection had passed on
    expect(through.tickets.length).toBeGreaterThanOrEqual(2);
    expect(through.tickets.every((status) => status === 201)).toBe(true);
    const had = contiguous(eventsIn(first?.received ?? []));
    expect(had).toBeGreaterThan(0);
    const follows = through.connections.flatMap((c) => c.sent.filter((m) => m.action === 'follow'));
    expect(follows.slice(0, 2)).toEqual([
      { action: 'follow', runId, after: 0 },
      { action: 'follow', runId, after: had },
    ]);
    // and what it got on the new connection went on from there to the run's end, none missing
    const rest = through.connections.slice(1).flatMap((c) => eventsIn(c.received));
    expect(rest[0]?.seq).toBe(had + 1);
    const end = endOf(rest);
    expect(contiguous([...eventsIn(first?.received ?? []), ...rest])).toBeGreaterThanOrEqual(
      end?.seq ?? Number.POSITIVE_INFINITY,
    );
  });

  it('exits 1 for a run that fails, saying why', async () => {
    const { code, stdout } = await runs(
      await dispatchArgs({ steps: 1, stepDelayMs: 10, failure: 'error' }, '--watch'),
    );
    expect(code).toBe(1);
    expect(stdout).toMatch(/status FAILED \(error\) · .* · demo: simulated error/);
  });

  it('exits 2 for a run that was stopped', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 2000, stepDelayMs: 50 } } });
    await waitForRun(body.runId, (r) => r.status === 'RUNNING');
    const stopped = await runs(['stop', body.runId]);
    expect(stopped).toMatchObject({ code: 0, stdout: `${body.runId}  STOPPED\n` });
    const watched = await runs(['watch', body.runId]);
    expect(watched.code).toBe(2);
    expect(watched.stdout).toContain('status STOPPED');
  });
});

describe('runs logs --follow', () => {
  it('prints the lines as the sandbox writes them, each once, and ends with the run', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 24, stepDelayMs: 250 } } });
    const { code, stdout, stderr, chunks } = await runs(['logs', body.runId, '--follow']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(new Set(lines).size).toBe(lines.length);
    const steps = lines.filter((l) => l.startsWith('agent: step '));
    expect(steps).toEqual(
      Array.from({ length: 24 }, (_, i) => expect.stringMatching(new RegExp(`^agent: step ${i + 1}/24 `))),
    );
    // printed over the six seconds the agent writes for, not all at the end
    const when = (text: string) => chunks.find((c) => c.text.includes(text))?.at ?? Number.NaN;
    expect(when('agent: step 24/24') - when('agent: step 1/24')).toBeGreaterThan(2000);
    expect((await waitForTerminal(body.runId)).run.status).toBe('COMPLETED');
  });
});

describe('runs list', () => {
  it('prints valid JSON with --json, every run in it FAILED with --status FAILED', async () => {
    const { body } = await dispatch({ config: { demo: { steps: 0, failure: 'tool_call_failed' } } });
    await waitForTerminal(body.runId);
    const { code, stdout } = await runs([
      'list',
      '--status',
      'FAILED',
      '--project',
      endpoints().projectId,
      '--all',
      '--json',
    ]);
    expect(code).toBe(0);
    const listed = JSON.parse(stdout) as { items: Run[]; nextCursor: string | null };
    expect(listed.items.map((r) => r.runId)).toContain(body.runId);
    expect(listed.items.every((r) => r.status === 'FAILED')).toBe(true);
    expect(listed.nextCursor).toBeNull();
  });

  it('prints a table of runs', async () => {
    const { code, stdout } = await runs(['list', '--limit', '3']);
    expect(code).toBe(0);
    const [header, ...rows] = stdout.trimEnd().split('\n');
    expect(header).toMatch(/^RUN +ITEM +POD +STATUS +PHASE +STARTED +DURATION +COST$/);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThanOrEqual(3);
    for (const row of rows) expect(row).toMatch(/^run_\w{26} /);
  });
});

describe('runs: errors', () => {
  it('says a bad token in exactly one line on stderr, and exits non-zero', async () => {
    const { code, stdout, stderr } = await runs(['list'], { RUNS_TOKEN: 'not-a-token' });
    expect(code).not.toBe(0);
    expect(stdout).toBe('');
    expect(stderr).toBe('not signed in or the token expired: run "runs login --api URL --token TOKEN"\n');
  });

  it('names the URL it could not reach', async () => {
    const { code, stderr } = await runs(['list'], { RUNS_API_URL: 'http://127.0.0.1:9' });
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/^could not reach http:\/\/127\.0\.0\.1:9\/v1\/runs: .+\n$/);
  });

  it('shows the API’s own message for a run it does not have', async () => {
    const missing = 'run_01J0000000000000000000000A';
    const { code, stderr } = await runs(['show', missing]);
    expect(code).not.toBe(0);
    expect(stderr).toBe(`run ${missing} was not found\n`);
  });
});

describe('runs login', () => {
  it('refuses a bad token, and saves a good one in a file only its owner can read', async () => {
    const file = path.join(dir, 'home', 'runs', 'config.json');
    const env = { RUNS_CONFIG: file, RUNS_API_URL: undefined, RUNS_TOKEN: undefined };
    const e = endpoints();

    const refused = await runs(['login', '--api', e.apiUrl, '--token', 'not-a-token'], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toBe(`${e.apiUrl} refused the token (401): nothing was saved\n`);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });

    const signedIn = await runs(['login', '--api', e.apiUrl, '--token', e.token], env);
    expect(signedIn.code).toBe(0);
    expect(signedIn.stdout).toContain(`signed in to ${e.apiUrl} as account ${e.accountId}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ apiUrl: e.apiUrl, token: e.token });

    // the saved settings are what the next command uses
    const listed = await runs(['list', '--limit', '1', '--json'], env);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).items).toHaveLength(1);
  });
});
