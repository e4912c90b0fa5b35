import { describe, expect, it } from 'vitest';
import { podFromStorage } from '../../shared/domain/tenancy.js';
import { podConfig } from '../../shared/usecases/agent.js';
import { podFactory, runFactory, snapshotFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';

const settings = { heartbeatSeconds: 60, controlPollMs: 3000, pausedCapCheckMs: 60_000 };

const pod = podFactory({
  agent: { kind: 'claude-code', model: 'claude-sonnet-4-5', maxTurns: 20 },
  hooks: { postClone: { command: 'npm ci', timeoutSeconds: 120 } },
  checkpoints: ['commit'],
  env: { CI: '1' },
  secrets: { ANTHROPIC_API_KEY: 'execution-runs/pods/anthropic' },
});

const configOf = async (
  mode: 'autopilot' | 'supervised',
  snapshot = snapshotFactory({ pod, ref: 'main' }),
) => {
  const run = runFactory({ mode, status: 'RUNNING', attribution: 'carol' });
  const runs = new MemoryRuns().put(run, {}, snapshot);
  return podConfig(runs, run, settings);
};

describe('the config a pod fetches', () => {
  it('carries the pod’s agent, hooks, variables and the run’s ref and dispatcher', async () => {
    expect(await configOf('supervised')).toMatchObject({
      podId: 'pod-1',
      ref: 'main',
      dispatcher: { userId: 'alice' },
      agent: pod.agent,
      hooks: pod.hooks,
      checkpoints: ['commit'],
      env: { CI: '1' },
    });
  });

  it('names the secret variables and nothing of their secrets', async () => {
    const config = await configOf('supervised');
    expect(config.secretVariables).toEqual(['ANTHROPIC_API_KEY']);
    expect(JSON.stringify(config)).not.toContain('execution-runs/pods/anthropic');
  });

  it('has no checkpoints in autopilot, whatever the pod says', async () => {
    expect((await configOf('autopilot')).checkpoints).toEqual([]);
  });

  it('names the run’s attribution as the dispatcher of a run frozen before dispatchers were recorded', async () => {
    const { dispatcher: _, ...old } = snapshotFactory({ pod });
    expect((await configOf('autopilot', old)).dispatcher).toEqual({ userId: 'carol' });
  });
});

describe('a pod read back from storage', () => {
  it('runs Claude Code with its model, with the defaults, when it was saved before agents were configurable', () => {
    const { agent: _a, hooks: _h, checkpoints: _c, env: _e, secrets: _s, ...rest } = podFactory();
    expect(podFromStorage({ ...rest, model: 'claude-opus-4-1' })).toEqual({
      ...rest,
      agent: { kind: 'claude-code', model: 'claude-opus-4-1' },
      hooks: {},
      checkpoints: ['plan', 'commit'],
      env: {},
      secrets: {},
    });
  });

  it('keeps what a pod saved with its agent has', () => {
    expect(podFromStorage(pod)).toEqual(pod);
  });
});
