import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { Endpoints } from '../../infra/local/cloud.js';
import { git } from '../support/git.js';
import { endpoints } from './support/api.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

/** Start another local cloud, as `npm start` would, on free ports. */
const startCloud = async (stateDir: string, extra: string[] = []) => {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', 'infra/local/main.ts', '--base-port', '0', '--state-dir', stateDir, ...extra],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
    child.stdout?.on('data', () => {
      if (output.includes('The local cloud is running.')) resolve();
    });
  });
  const e = JSON.parse(await readFile(path.join(stateDir, 'endpoints.json'), 'utf8')) as Endpoints;
  const stop = async (signal: NodeJS.Signals = 'SIGINT') => {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  };
  return { e, stop };
};

const call = async (e: Endpoints, method: string, route: string, body?: unknown) => {
  const res = await fetch(`${e.apiUrl}${route}`, {
    method,
    headers: { authorization: `Bearer ${e.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await res.json()) as Record<string, unknown>;
};

/** Processes running the pod bundle of this state dir. */
const podProcesses = (stateDir: string) => {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(path.join(stateDir, 'pod.mjs')));
};

describe('npm start', () => {
  it('says clearly which port is busy and how to choose others, and exits 1', async () => {
    // The running local cloud holds its DynamoDB port; ask a second one to start right there.
    const busy = Number(new URL(endpoints().services.dynamodb).port);
    const stateDir = await mkdtemp(path.join(tmpdir(), 'busy-port-'));
    const outcome = await run(
      process.execPath,
      ['--import', 'tsx', 'infra/local/main.ts', '--base-port', String(busy - 1), '--state-dir', stateDir],
      { cwd: ROOT, timeout: 60_000 },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toContain('already in use');
    expect(outcome.stderr).toContain('--base-port');
  });

  it('stops every pod on Ctrl-C, and with --persist keeps its runs and git repositories for the next start', async () => {
    const stateDir = await mkdtemp(path.join(tmpdir(), 'persist-'));
    const first = await startCloud(stateDir, ['--persist']);
    const run = await call(first.e, 'POST', `/v1/projects/${first.e.projectId}/runs`, {
      itemId: 'PERSIST-1',
      podId: first.e.scriptedPodId,
      mode: 'autopilot',
      prompt: 'long',
      config: { demo: { steps: 5000, stepDelayMs: 50 } },
    });
    await expect.poll(() => podProcesses(stateDir).length, { timeout: 20_000 }).toBe(1);
    // a branch pushed to the demo repository, with a token minted by the git server
    const minted = await fetch(`${first.e.services.git}/_local/tokens`, {
      method: 'POST',
      body: JSON.stringify({ repos: ['demo/demo-app.git'], ttlSeconds: 3600 }),
    });
    const credential = {
      username: 'x-access-token',
      password: ((await minted.json()) as { token: string }).token,
    };
    const clone = path.join(stateDir, 'clone');
    await git(['clone', '--quiet', first.e.demoRepo, clone], { cwd: stateDir, credential });
    await git(['push', '--quiet', 'origin', 'main:refs/heads/kept'], { cwd: clone, credential });
    await first.stop('SIGINT');
    expect(podProcesses(stateDir)).toEqual([]);

    const second = await startCloud(stateDir, ['--persist']);
    try {
      const again = await call(second.e, 'GET', `/v1/runs/${run.runId}`);
      expect(again.runId).toBe(run.runId);
      expect(again.itemId).toBe('PERSIST-1');
      // Its execution did not survive the stop, so the run was ended rather than left RUNNING.
      expect(again.status).toBe('STOPPED');
      // The repositories and tokens were kept; the demo project names this start's git server.
      const { stdout } = await git(['ls-remote', second.e.demoRepo], { cwd: stateDir, credential });
      expect(stdout).toContain('refs/heads/kept');
      const project = await call(second.e, 'GET', `/v1/projects/${second.e.projectId}`);
      expect(project.repos).toEqual([second.e.demoRepo]);
    } finally {
      await second.stop('SIGTERM');
    }
  });
});
