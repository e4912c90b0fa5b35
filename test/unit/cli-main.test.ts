import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configPath, resolveSettings } from '../../cli/config.js';
import { runCli } from '../support/cli.js';
import { runFactory } from '../support/factories.js';

const RUN_ID = 'run_01J0000000000000000000000A';
const ok = (body: unknown) => () => ({ body });

describe('runs: errors', () => {
  it('says a refused token in one line, with what to do', async () => {
    const { code, stdout, stderr } = await runCli(['list'], () => ({
      status: 401,
      body: { message: 'Unauthorized' },
    }));
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe('not signed in or the token expired: run "runs login --api URL --token TOKEN"\n');
  });

  it('shows the API’s error message as it is', async () => {
    const { code, stderr } = await runCli(['stop', RUN_ID], () => ({
      status: 409,
      body: {
        error: { code: 'TransitionRefused', message: `run ${RUN_ID} cannot move to STOPPED from DONE` },
      },
    }));
    expect(code).toBe(1);
    expect(stderr).toBe(`run ${RUN_ID} cannot move to STOPPED from DONE\n`);
  });

  it('names the URL it could not reach', async () => {
    const { code, stderr } = await runCli(['show', RUN_ID], () => {
      throw Object.assign(new TypeError('fetch failed'), {
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
      });
    });
    expect(code).toBe(1);
    expect(stderr).toBe(
      `could not reach http://api.test/v1/runs/${RUN_ID}: connect ECONNREFUSED 127.0.0.1:9\n`,
    );
  });

  it('says what an answer without the API’s error body was', async () => {
    const { stderr } = await runCli(['show', RUN_ID], () => ({ status: 502, body: 'Bad Gateway' }));
    expect(stderr).toBe(`HTTP 502 from GET http://api.test/v1/runs/${RUN_ID}\n`);
  });

  it('refuses what is not a run id before asking anything', async () => {
    const { code, stderr, requests } = await runCli(['watch', 'run-1'], ok({}));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^"run-1" is not a run id: run_ followed by a 26-character ULID/);
    expect(stderr.split('\n')).toHaveLength(2);
    expect(requests).toEqual([]);
  });

  it('keeps commander’s complaints to one line', async () => {
    const { code, stderr } = await runCli(['lst'], ok({}));
    expect(code).toBe(1);
    expect(stderr).toBe("error: unknown command 'lst' (Did you mean list?)\n");
  });

  it('says how to sign in when nothing says where the API is', async () => {
    const { code, stderr } = await runCli(['list'], ok({}), { env: { RUNS_CONFIG: '/nonexistent/x.json' } });
    expect(code).toBe(1);
    expect(stderr).toBe('not signed in: run "runs login --api URL --token TOKEN"\n');
  });
});

describe('runs dispatch', () => {
  it('posts the request with the CLI as its source, and prints the run id and status', async () => {
    const { code, stdout, requests } = await runCli(
      [
        'dispatch',
        '--project',
        'p1',
        '--pod',
        'pod-1',
        '--item',
        'ITEM-1',
        '--prompt',
        'Add a check',
        '--repo',
        'https://github.com/o/a.git',
        '--repo',
        'https://github.com/o/b.git',
        '--idempotency-key',
        'k-1',
      ],
      () => ({ status: 202, body: runFactory({ runId: RUN_ID }) }),
    );
    expect(code).toBe(0);
    expect(stdout).toBe(`${RUN_ID}  QUEUED\n`);
    expect(requests[0]).toMatchObject({
      method: 'POST',
      path: '/v1/projects/p1/runs',
      body: {
        itemId: 'ITEM-1',
        podId: 'pod-1',
        mode: 'autopilot',
        prompt: 'Add a check',
        repos: ['https://github.com/o/a.git', 'https://github.com/o/b.git'],
        source: 'cli',
      },
    });
    expect(requests[0]?.headers.get('idempotency-key')).toBe('k-1');
    expect(requests[0]?.headers.get('authorization')).toBe('Bearer token-1');
  });

  it('checks the request against the wire contract first, naming the flags', async () => {
    const { code, stderr, requests } = await runCli(
      ['dispatch', '--project', 'p1', '--pod', 'pod-1', '--item', 'bad item', '--prompt', 'x', '--ref', '..'],
      ok({}),
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^--item: letters, digits, _ \. - \(at most 128\); --ref: a git branch, tag or commit/,
    );
    expect(requests).toEqual([]);
  });

  it('wants one prompt: text or a file', async () => {
    const { stderr } = await runCli(['dispatch', '--project', 'p', '--pod', 'x', '--item', 'i'], ok({}));
    expect(stderr).toBe('give the prompt with either --prompt TEXT or --prompt-file FILE\n');
  });

  it('prints one JSON document with --json', async () => {
    const run = runFactory({ runId: RUN_ID });
    const { stdout } = await runCli(
      ['dispatch', '--project', 'p', '--pod', 'x', '--item', 'i', '--prompt', 'y', '--json'],
      () => ({ status: 202, body: run }),
    );
    expect(JSON.parse(stdout)).toEqual(run);
  });
});

describe('runs list', () => {
  const page = (ids: string[], nextCursor: string | null) => ({
    items: ids.map((id) => runFactory({ runId: `run_01J00000000000000000000${id}` })),
    nextCursor,
  });

  it('asks with the filters given and prints a table, and the next cursor on stderr', async () => {
    const { stdout, stderr, requests } = await runCli(
      ['list', '--status', 'failed,dead_letter', '--pod', 'pod-1', '--project', 'p1', '--limit', '2'],
      ok(page(['00A', '00B'], 'c-2')),
    );
    expect(requests[0]).toMatchObject({
      path: '/v1/projects/p1/runs',
      query: { status: 'FAILED,DEAD_LETTER', podId: 'pod-1', limit: '2' },
    });
    expect(stdout.split('\n')[0]).toMatch(/^RUN +ITEM +POD +STATUS +PHASE +STARTED +DURATION +COST$/);
    expect(stdout.trim().split('\n')).toHaveLength(3);
    expect(stderr).toBe('more: --cursor c-2\n');
  });

  it('follows the cursors to the end with --all', async () => {
    const pages: Record<string, ReturnType<typeof page>> = {
      '': page(['00A'], 'c-2'),
      'c-2': page(['00B'], 'c-3'),
      'c-3': page(['00C'], null),
    };
    const { stdout, requests } = await runCli(['list', '--all', '--json'], (r) => ({
      body: pages[r.query.cursor ?? ''],
    }));
    expect(requests.map((r) => r.query)).toEqual([
      { limit: '100' },
      { limit: '100', cursor: 'c-2' },
      { limit: '100', cursor: 'c-3' },
    ]);
    const listed = JSON.parse(stdout);
    expect(listed.items.map((r: { runId: string }) => r.runId.slice(-3))).toEqual(['00A', '00B', '00C']);
    expect(listed.nextCursor).toBeNull();
  });

  it('refuses a status that does not exist before asking', async () => {
    const { code, stderr } = await runCli(['list', '--status', 'FAILED,BROKEN'], ok({}));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^--status: Invalid option: expected one of "QUEUED"/);
  });
});

describe('runs steps, logs and the actions', () => {
  it('follows the step pages with --all', async () => {
    const { stdout, requests } = await runCli(['steps', RUN_ID, '--all'], (r) =>
      r.query.after === '0'
        ? { body: { items: [{ seq: 3, kind: 'assistant', content: 'one', at: '' }], nextAfter: 3 } }
        : {
            body: {
              items: [{ seq: 5, kind: 'tool_call', tool: 'bash', content: 'ls', at: '' }],
              nextAfter: null,
            },
          },
    );
    expect(requests.map((r) => r.query.after)).toEqual(['0', '3']);
    expect(stdout).toBe('#3 assistant  one\n#5 tool_call bash  ls\n');
  });

  it('prints the newest log lines', async () => {
    const { stdout, requests } = await runCli(['logs', RUN_ID, '--limit', '2'], () => ({
      body: {
        items: [
          { timestamp: 1, message: 'a' },
          { timestamp: 2, message: 'b' },
        ],
        nextCursor: 'x',
        afterCursor: 'y',
      },
    }));
    expect(requests[0]?.query).toEqual({ limit: '2' });
    expect(stdout).toBe('a\nb\n');
  });

  it('follows the log with after= until the run has ended and nothing more comes', async () => {
    const pages = [
      { items: [{ timestamp: 1, message: 'one' }], nextCursor: null, afterCursor: 'a1' },
      { items: [{ timestamp: 2, message: 'two' }], nextCursor: null, afterCursor: 'a2' },
      { items: [{ timestamp: 3, message: 'three' }], nextCursor: null, afterCursor: 'a3' },
      { items: [], nextCursor: null, afterCursor: 'a3' },
      { items: [], nextCursor: null, afterCursor: 'a3' },
    ];
    const statuses = ['RUNNING', 'COMPLETED', 'COMPLETED', 'COMPLETED'] as const;
    let runs = 0;
    const { stdout, requests } = await runCli(['logs', RUN_ID, '--follow'], (r) =>
      r.path.endsWith('/logs')
        ? { body: pages.shift() }
        : {
            body: runFactory({
              runId: RUN_ID,
              status: statuses[runs++] ?? 'COMPLETED',
              completedAt: '2026-01-01T01:00:00.000Z',
            }),
          },
    );
    expect(stdout).toBe('one\ntwo\nthree\n');
    expect(requests.filter((r) => r.path.endsWith('/logs')).map((r) => r.query.after)).toEqual([
      undefined,
      'a1',
      'a2',
      'a3',
      'a3',
    ]);
  });

  it('follows the log as JSON lines with --follow --json', async () => {
    const pages = [{ items: [{ timestamp: 1, message: 'one' }], nextCursor: null, afterCursor: null }];
    const { stdout } = await runCli(['logs', RUN_ID, '--follow', '--json'], () => ({ body: pages.shift() }));
    expect(stdout).toBe('{"timestamp":1,"message":"one"}\n');
  });

  it.each([
    ['stop', 'STOPPED', `${RUN_ID}  STOPPED`],
    ['done', 'DONE', `${RUN_ID}  DONE`],
    ['redrive', 'QUEUED', `${RUN_ID}  QUEUED`],
  ])('%s posts to the run and prints its status', async (action, status, line) => {
    const { code, stdout, requests } = await runCli([action, RUN_ID], () => ({
      body: runFactory({ runId: RUN_ID, status: status as never }),
    }));
    expect(code).toBe(0);
    expect(requests[0]).toMatchObject({ method: 'POST', path: `/v1/runs/${RUN_ID}/${action}` });
    expect(stdout).toBe(`${line}\n`);
  });

  it('replay prints the new run', async () => {
    const replay = 'run_01J0000000000000000000000B';
    const { stdout } = await runCli(['replay', RUN_ID], () => ({
      status: 202,
      body: runFactory({ runId: replay }),
    }));
    expect(stdout).toBe(`${replay}  QUEUED  (replay of ${RUN_ID})\n`);
  });

  it('approve prints the decision', async () => {
    const { stdout } = await runCli(['approve', RUN_ID], () => ({
      body: {
        approval: { checkpoint: { name: 'plan' }, decision: { decision: 'approved' } },
        run: runFactory({ status: 'RUNNING' }),
      },
    }));
    expect(stdout).toBe(`approved checkpoint plan of ${RUN_ID}; the run is RUNNING\n`);
  });
});

describe('runs watch: exit codes', () => {
  it.each([
    ['COMPLETED', 0],
    ['DONE', 0],
    ['FAILED', 1],
    ['DEAD_LETTER', 1],
    ['CANCELLED', 2],
    ['STOPPED', 2],
    ['ABANDONED', 2],
    ['PR_REJECTED', 2],
  ])('exits by the outcome: %s → %i', async (status, expected) => {
    const { code, stdout } = await runCli(['watch', RUN_ID], (r) =>
      r.path.endsWith('/steps')
        ? { body: { items: [], nextAfter: null } }
        : { body: runFactory({ runId: RUN_ID, status: status as never }) },
    );
    expect(code).toBe(expected);
    expect(stdout).toContain(`status ${status}`);
  });

  it('prints only the ended run with --json', async () => {
    const run = runFactory({ runId: RUN_ID, status: 'FAILED' });
    const { code, stdout } = await runCli(['watch', RUN_ID, '--json'], (r) =>
      r.path.endsWith('/steps')
        ? { body: { items: [{ seq: 1, kind: 'assistant', content: 'x', at: '' }], nextAfter: null } }
        : { body: run },
    );
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toEqual(run);
  });
});

describe('runs login and the config file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'runs-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('checks the token, then saves it readable only by its owner', async () => {
    const file = path.join(dir, 'nested', 'config.json');
    const { code, stdout, requests } = await runCli(
      ['login', '--api', 'https://api.example.com/', '--token', 'tok-2'],
      ok({ accountId: 'acct-1' }),
      { env: { RUNS_CONFIG: file } },
    );
    expect(code).toBe(0);
    expect(requests[0]).toMatchObject({ method: 'GET', path: '/v1/account' });
    expect(requests[0]?.headers.get('authorization')).toBe('Bearer tok-2');
    expect(stdout).toBe(`signed in to https://api.example.com as account acct-1; saved to ${file}\n`);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      apiUrl: 'https://api.example.com',
      token: 'tok-2',
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
  });

  it('keeps a file written before at 0600 when it replaces it', async () => {
    const file = path.join(dir, 'config.json');
    await writeFile(file, '{}', { mode: 0o644 });
    await runCli(['login', '--api', 'https://a.example.com', '--token', 't'], ok({ accountId: 'a' }), {
      env: { RUNS_CONFIG: file },
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('refuses a token the API refuses, and saves nothing', async () => {
    const file = path.join(dir, 'config.json');
    const { code, stderr } = await runCli(
      ['login', '--api', 'https://a.example.com', '--token', 'bad'],
      () => ({ status: 401 }),
      {
        env: { RUNS_CONFIG: file },
      },
    );
    expect(code).toBe(1);
    expect(stderr).toBe('https://a.example.com refused the token (401): nothing was saved\n');
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses what is not an http(s) URL', async () => {
    const { stderr } = await runCli(['login', '--api', 'ftp://x', '--token', 't'], ok({}));
    expect(stderr).toBe('--api: "ftp://x" is not an http(s) URL\n');
  });

  it('reads the saved settings, and the environment overrides them', async () => {
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ apiUrl: 'https://saved.example.com', token: 'saved' }));
    expect(await resolveSettings({ RUNS_CONFIG: file })).toEqual({
      apiUrl: 'https://saved.example.com',
      token: 'saved',
    });
    expect(await resolveSettings({ RUNS_CONFIG: file, RUNS_TOKEN: 'env' })).toEqual({
      apiUrl: 'https://saved.example.com',
      token: 'env',
    });
    expect(
      await resolveSettings({
        RUNS_CONFIG: file,
        RUNS_API_URL: 'http://env.example.com/',
        RUNS_TOKEN: 'env',
      }),
    ).toEqual({
      apiUrl: 'http://env.example.com',
      token: 'env',
    });
    await writeFile(file, 'not json');
    await expect(resolveSettings({ RUNS_CONFIG: file })).rejects.toThrow(`${file} is not valid JSON`);
  });

  it('finds the file by RUNS_CONFIG, XDG_CONFIG_HOME or the home folder', () => {
    expect(configPath({ RUNS_CONFIG: '/a/b.json', XDG_CONFIG_HOME: '/x' })).toBe('/a/b.json');
    expect(configPath({ XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/x/runs/config.json');
    expect(configPath({ XDG_CONFIG_HOME: 'relative', HOME: '/h' })).toBe('/h/.config/runs/config.json');
    expect(configPath({ HOME: '/h' })).toBe('/h/.config/runs/config.json');
  });
});
