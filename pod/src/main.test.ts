import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildPodBundle } from '../build.js';
import { type FakeAgentApi, type FakeAgentApiOptions, startFakeAgentApi } from './testing/fake-agent-api.js';

let dir: string;
let bundle: string;
const servers: FakeAgentApi[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pod-bundle-'));
  bundle = join(dir, 'pod.mjs');
  await buildPodBundle(bundle);
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const server of servers.splice(0)) await server.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the bundled pod as ECS would: a process with the task's environment. */
const startPod = async (demo: Record<string, unknown>, fake: FakeAgentApiOptions = {}) => {
  const server = await startFakeAgentApi({ ...fake, config: { demo } });
  servers.push(server);
  const child = spawn(process.execPath, [bundle], {
    env: {
      PATH: process.env.PATH ?? '',
      RUN_ID: server.runId,
      AGENT_API_URL: server.url,
      AGENT_LAUNCH_CODE: server.launchCode,
      ECS_CONTAINER_METADATA_URI_V4: server.metadataUri,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const output = { stdout: '', stderr: '' };
  child.stdout?.on('data', (chunk: Buffer) => {
    output.stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString();
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { server, child, output, exited };
};

const eventually = async (check: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('pod process (the bundle the image runs)', () => {
  it('runs the demo to a completed result and exits 0', async () => {
    const { server, output, exited } = await startPod({ steps: 2, stepDelayMs: 1, logLines: 20 });

    const [code] = await exited;

    expect(code).toBe(0);
    expect(server.accepted().at(-1)).toMatchObject({ type: 'result', outcome: 'completed' });
    expect(output.stdout).toContain('line 000020 ');
  });

  it('exits 0 soon after the backend says stop', async () => {
    const { server, exited } = await startPod(
      { steps: 1000, stepDelayMs: 10 },
      { eventsAnswer: (_b, n) => (n >= 2 ? { control: { action: 'stop' } } : {}) },
    );

    const [code, signal] = await exited;

    expect([code, signal]).toEqual([0, null]);
    expect(server.accepted().some((e) => e.type === 'result')).toBe(false);
  });

  it('delivers its queued events and exits 0 on SIGTERM', async () => {
    const { server, child, output, exited } = await startPod({ steps: 1000, stepDelayMs: 10 });
    await eventually(() => output.stdout.includes('step 3/1000'));

    child.kill('SIGTERM');
    const [code, signal] = await exited;
    const steps = server.accepted().filter((e) => e.type === 'step');

    expect([code, signal]).toEqual([0, null]);
    // every step it logged reached the backend, plus the plan
    expect(steps).toHaveLength((output.stdout.match(/step \d+\/1000/g) ?? []).length + 1);
  });

  it('exits 1 without a result when the agent crashes', async () => {
    const { server, exited } = await startPod({ steps: 3, failure: 'crash' });

    const [code] = await exited;

    expect(code).toBe(1);
    expect(server.accepted().some((e) => e.type === 'result')).toBe(false);
  });

  it('exits 1 when its environment is missing', async () => {
    const child = spawn(process.execPath, [bundle], {
      env: { PATH: process.env.PATH ?? '' },
      stdio: 'ignore',
    });
    children.push(child);

    const [code] = await once(child, 'exit');

    expect(code).toBe(1);
  });
});
