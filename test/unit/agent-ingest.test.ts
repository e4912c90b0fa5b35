import { beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import type { Run } from '../../shared/domain/run.js';
import type {
  DirectoryRepository,
  RunSecrets,
  SpendLedger,
  StepContentStore,
  TaskSignals,
} from '../../shared/ports.js';
import type { AgentEvent } from '../../shared/schemas/agent-events.js';
import {
  type AgentDeps,
  authenticateAgent,
  exchangeLaunchCode,
  ingestEvents,
} from '../../shared/usecases/agent.js';
import { hashSecret, parkPod } from '../../shared/usecases/lifecycle.js';
import { runFactory, snapshotFactory } from '../support/factories.js';
import { MemoryActiveRuns } from '../support/memory-active-runs.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryConnections } from '../support/memory-stream.js';

const NOW = new Date('2026-01-01T00:10:00.000Z');
const at = NOW.toISOString();
const settings = { heartbeatSeconds: 60, controlPollMs: 10_000, pausedCapCheckMs: 60_000 };
const RUN_ID = 'run_01J0000000000000000000000A';

let runs: MemoryRuns;
let signals: TaskSignals & {
  succeedTask: ReturnType<typeof vi.fn>;
  failTask: ReturnType<typeof vi.fn>;
  heartbeat: ReturnType<typeof vi.fn>;
};
let deps: AgentDeps;

beforeEach(() => {
  runs = new MemoryRuns();
  signals = {
    succeedTask: vi.fn(async () => 'sent' as const),
    failTask: vi.fn(async () => 'sent' as const),
    heartbeat: vi.fn(async () => 'sent' as const),
  };
  deps = {
    runs,
    ledger: { settle: vi.fn(), hourlySpend: vi.fn(async () => []) } as unknown as SpendLedger,
    signals,
    clock: { now: () => NOW },
    stepContent: {} as StepContentStore,
    directory: { getAccount: vi.fn(async () => undefined) } as unknown as DirectoryRepository,
    pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' },
    slots: new MemoryActiveRuns(),
  };
});

const seed = (over: Partial<Run>, secrets: RunSecrets = { podTaskToken: 'pod-wait' }) =>
  runs.put(runFactory({ runId: RUN_ID, status: 'RUNNING', ...over }), secrets, snapshotFactory());

/** A batch as the Agent API gets it: the run and its secrets read once, then ingested. */
const send = async (events: AgentEvent[]) => {
  const read = await runs.getWithSecrets(RUN_ID);
  if (!read) throw new Error('no run');
  return ingestEvents(deps, settings, read, events);
};

const checkpoint: AgentEvent = { seq: 3, at, type: 'checkpoint', name: 'plan', summary: 'the plan' };
const result: AgentEvent = { seq: 4, at, type: 'result', outcome: 'completed' };
const CHECKPOINT_SIGNAL = { outcome: 'checkpoint', checkpoint: { seq: 3, name: 'plan' } };

describe('a checkpoint in a supervised run', () => {
  it('pauses the run with the checkpoint’s write, ends the pod wait with it, and tells the pod to wait', async () => {
    seed({ mode: 'supervised' });
    const answer = await send([checkpoint]);
    expect(answer.control).toEqual({ action: 'wait', reason: 'awaiting approval', pollAfterMs: 10_000 });
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'AWAITING_APPROVAL',
      pendingApproval: { seq: 3, name: 'plan', summary: 'the plan', requestedAt: at },
    });
    expect(runs.batches).toHaveLength(1);
    expect(signals.succeedTask).toHaveBeenCalledWith('pod-wait', CHECKPOINT_SIGNAL);
  });

  it('is never skipped when the signal failed: the pod’s retry of the batch completes it', async () => {
    seed({ mode: 'supervised' });
    signals.succeedTask.mockRejectedValueOnce(new Error('Step Functions throttled'));
    await expect(send([checkpoint])).rejects.toThrow('throttled');
    // the pause was written with the checkpoint, so the retry, a duplicate, still finds it owed
    const retry = await send([checkpoint]);
    expect(retry).toMatchObject({ accepted: 0, duplicates: 1, control: { action: 'wait' } });
    expect(signals.succeedTask).toHaveBeenLastCalledWith('pod-wait', CHECKPOINT_SIGNAL);
  });

  it('is never skipped when the write failed: nothing was written, and the retry pauses', async () => {
    seed({ mode: 'supervised' });
    const write = vi
      .spyOn(runs, 'recordBatch')
      .mockRejectedValueOnce(new Error('ProvisionedThroughputExceeded'));
    await expect(send([checkpoint])).rejects.toThrow('Throughput');
    expect(runs.stored(RUN_ID).status).toBe('RUNNING');
    write.mockRestore();
    expect((await send([checkpoint])).control.action).toBe('wait');
    expect(runs.stored(RUN_ID).status).toBe('AWAITING_APPROVAL');
  });

  it('is left for the pod wait to pick up when its token is not parked yet', async () => {
    seed({ mode: 'supervised' }, {});
    await send([checkpoint]);
    expect(signals.succeedTask).not.toHaveBeenCalled();
    const logStreams = new MemoryConnections();
    await parkPod(
      { ...deps, logStreams },
      { runId: RUN_ID, taskArn: 'arn:aws:ecs:r:1:task/c/t', taskToken: 'late-pod-wait' },
    );
    expect(signals.succeedTask).toHaveBeenCalledWith('late-pod-wait', CHECKPOINT_SIGNAL);
    // the pod's log stream is known to be this run's, for the lines its subscription delivers
    expect(await logStreams.runOfLogStream('pod/pod/t')).toBe(RUN_ID);
  });

  it('no longer signals once the approval was requested: the token then is the approval’s', async () => {
    seed({
      mode: 'supervised',
      status: 'AWAITING_APPROVAL',
      seqs: [[1, 3]],
      lastSeq: 3,
      pendingApproval: { seq: 3, name: 'plan', summary: 's', requestedAt: at, approvalId: 'a1' },
    });
    const answer = await send([checkpoint, { seq: 5, at, type: 'heartbeat' }]);
    expect(answer.control.action).toBe('wait');
    expect(signals.succeedTask).not.toHaveBeenCalled();
    expect(signals.heartbeat).not.toHaveBeenCalled();
  });

  it('passes in autopilot: the run goes on and nothing is signalled', async () => {
    seed({ mode: 'autopilot' });
    const answer = await send([checkpoint]);
    expect(answer.control).toEqual({ action: 'continue' });
    expect(runs.stored(RUN_ID).status).toBe('RUNNING');
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });
});

describe('the pod’s result', () => {
  it('ends the pod wait, and a retried batch sends it again rather than losing it', async () => {
    seed({});
    signals.succeedTask.mockRejectedValueOnce(new Error('network'));
    await expect(send([result])).rejects.toThrow('network');
    expect(runs.stored(RUN_ID).result).toEqual({ outcome: 'completed' });
    await send([result]);
    expect(signals.succeedTask).toHaveBeenLastCalledWith('pod-wait', { outcome: 'completed' });
  });
});

describe('a batch', () => {
  it('starts a provisioned run with its first event, recording what it carries once', async () => {
    seed({ status: 'PROVISIONING' });
    const events: AgentEvent[] = [
      { seq: 1, at, type: 'phase', phase: 'STARTED' },
      { seq: 2, at, type: 'step', kind: 'assistant', content: 'hello' },
    ];
    expect(await send(events)).toMatchObject({ accepted: 2, duplicates: 0, control: { action: 'continue' } });
    expect(await send(events)).toMatchObject({ accepted: 0, duplicates: 2 });
    expect(runs.stored(RUN_ID)).toMatchObject({ status: 'RUNNING', startedAt: at, phase: 'STARTED' });
    expect(runs.batches).toHaveLength(1);
  });

  it('keeps the heartbeat of a running pod wait alive', async () => {
    seed({});
    await send([{ seq: 1, at, type: 'heartbeat' }]);
    expect(signals.heartbeat).toHaveBeenCalledWith('pod-wait');
    await send([{ seq: 2, at, type: 'phase', phase: 'PLANNING' }]);
    expect(signals.heartbeat).toHaveBeenCalledTimes(1);
  });

  it('is planned again from what is stored when the run moved on while it was written', async () => {
    seed({ mode: 'supervised' });
    const read = await runs.getWithSecrets(RUN_ID);
    // a stop lands between the read and the batch's write
    runs.stored(RUN_ID).status = 'STOPPED';
    runs.stored(RUN_ID).version += 1;
    const answer = await ingestEvents(deps, settings, read as NonNullable<typeof read>, [checkpoint]);
    expect(answer.control).toEqual({ action: 'stop', reason: 'the run is STOPPED' });
    expect(runs.stored(RUN_ID).status).toBe('STOPPED');
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });
});

describe('the pod’s credentials', () => {
  const taskArn = 'arn:aws:ecs:us-east-1:123456789012:task/pods/abc';

  it('are a token for the one-time launch code, for the run’s own task only, once', async () => {
    seed({ status: 'PROVISIONING', taskArn }, { launchCodeHash: hashSecret('the-code') });
    await expect(
      exchangeLaunchCode(runs, RUN_ID, { code: 'the-code', taskArn: `${taskArn}x` }),
    ).rejects.toMatchObject({ code: 'Unauthorized' });
    const { token } = await exchangeLaunchCode(runs, RUN_ID, { code: 'the-code', taskArn });
    expect(token.startsWith(`${RUN_ID}.`)).toBe(true);
    expect((await authenticateAgent(runs, RUN_ID, `Bearer ${token}`)).run.runId).toBe(RUN_ID);
    await expect(exchangeLaunchCode(runs, RUN_ID, { code: 'the-code', taskArn })).rejects.toMatchObject({
      code: 'Unauthorized',
    });
  });

  it('ask the pod to come back while its task is not recorded yet, and refuse a run that takes no pod', async () => {
    seed({ status: 'PROVISIONING' }, { launchCodeHash: hashSecret('the-code') });
    await expect(exchangeLaunchCode(runs, RUN_ID, { code: 'the-code', taskArn })).rejects.toMatchObject({
      code: 'ServiceUnavailable',
    });
    runs.stored(RUN_ID).status = 'QUEUED';
    await expect(exchangeLaunchCode(runs, RUN_ID, { code: 'the-code', taskArn })).rejects.toMatchObject({
      code: 'Unauthorized',
    });
  });

  it('stop working when the run ends', async () => {
    seed({ status: 'RUNNING' }, { agentTokenHash: hashSecret(`${RUN_ID}.secret`) });
    await expect(authenticateAgent(runs, RUN_ID, `Bearer ${RUN_ID}.secret`)).resolves.toBeDefined();
    await expect(authenticateAgent(runs, RUN_ID, `Bearer ${RUN_ID}.other`)).rejects.toMatchObject({
      code: 'Unauthorized',
    });
    await expect(authenticateAgent(runs, RUN_ID, 'Bearer run_other.secret')).rejects.toMatchObject({
      code: 'Unauthorized',
    });
    await expect(authenticateAgent(runs, RUN_ID, undefined)).rejects.toMatchObject({ code: 'Unauthorized' });
    runs.stored(RUN_ID).status = 'COMPLETED';
    await expect(authenticateAgent(runs, RUN_ID, `Bearer ${RUN_ID}.secret`)).rejects.toThrow(/ended/);
  });
});
