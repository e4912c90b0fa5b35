import { beforeEach, describe, expect, it, vi } from 'vitest';
import { NotFoundError } from '../../shared/domain/errors.js';
import { DEFAULT_PRICE_TABLE } from '../../shared/domain/pricing.js';
import { isTerminal, type Run, type RunStatus } from '../../shared/domain/run.js';
import type {
  DirectoryRepository,
  Orchestrator,
  RunList,
  RunQueue,
  Sandbox,
  SpendLedger,
  TaskSignals,
} from '../../shared/ports.js';
import {
  checkPausedRuns,
  finalizeRun,
  type LifecycleDeps,
  markRetrying,
  onPodStopped,
  reconcileExecution,
  runChecks,
  startRun,
  sweepQueued,
} from '../../shared/usecases/lifecycle.js';
import { gitHubIssueFactory, podFactory, runFactory, snapshotFactory } from '../support/factories.js';
import { MemoryActiveRuns } from '../support/memory-active-runs.js';
import { MemoryRuns } from '../support/memory-runs.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');
const RUN_ID = 'run_01J0000000000000000000000A';
const TASK = 'arn:aws:ecs:us-east-1:1:task/c/t1';

let runs: MemoryRuns;
let deps: LifecycleDeps;
let stopped: string[];
let settled: string[];

beforeEach(() => {
  runs = new MemoryRuns();
  stopped = [];
  settled = [];
  const sandbox: Sandbox = { stop: vi.fn(async (taskArn: string) => void stopped.push(taskArn)) };
  const ledger = {
    settle: vi.fn(async (runId: string) => {
      settled.push(runId);
      return true;
    }),
    hourlySpend: vi.fn(async () => []),
  } satisfies SpendLedger;
  deps = {
    runs,
    ledger,
    list: {
      list: vi.fn(),
      listQueuedBefore: vi.fn(async () => []),
      listAwaitingApproval: vi.fn(async () => []),
      listOpenPullRequests: vi.fn(),
      oldestActive: vi.fn(async () => undefined),
    } as RunList,
    directory: {
      getPod: vi.fn(async () => podFactory()),
      getAccount: vi.fn(async () => ({
        accountId: 'acct-1',
        name: 'a',
        paymentStatus: 'active',
        limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
        updatedAt: 't',
      })),
    } as unknown as DirectoryRepository,
    orchestrator: { start: vi.fn(), describe: vi.fn() } as Orchestrator,
    signals: {
      succeedTask: vi.fn(async () => 'sent' as const),
      failTask: vi.fn(async () => 'sent' as const),
      heartbeat: vi.fn(async () => 'sent' as const),
    } as TaskSignals,
    sandbox,
    queue: { enqueue: vi.fn(async () => undefined) } satisfies RunQueue,
    clock: { now: () => NOW },
    pricing: { table: DEFAULT_PRICE_TABLE, architecture: 'ARM64' },
    slots: new MemoryActiveRuns(),
  };
});

const seed = (status: RunStatus, over: Partial<Run> = {}) =>
  runs.put(runFactory({ runId: RUN_ID, status, ...over }), { podTaskToken: 'wait' }, snapshotFactory());

describe('finalizeRun', () => {
  it.each([
    ['QUEUED', { error: { Error: 'Lambda.Unknown', Cause: 'throttled' } }, 'CANCELLED'],
    [
      'PROVISIONING',
      { checks: { ok: false, exitReason: 'budget_hit' as const, message: 'cap' } },
      'CANCELLED',
    ],
    ['PROVISIONING', { pod: { outcome: 'completed' as const } }, 'COMPLETED'],
    ['RETRYING', { retry: { retry: false, attempt: 3 } }, 'FAILED'],
    ['RUNNING', { error: { Error: 'Run.Stopped' } }, 'STOPPED'],
    ['AWAITING_APPROVAL', { error: { Error: 'Approval.Expired' } }, 'ABANDONED'],
  ] as const)('ends a %s run whatever the path asks for (%j → %s)', async (from, path, to) => {
    seed(from, { taskArn: TASK });
    const { status } = await finalizeRun(deps, { runId: RUN_ID, ...path });
    expect(status).toBe(to);
    expect(runs.stored(RUN_ID).status).toBe(to);
    expect(runs.secrets.get(RUN_ID)?.podTaskToken).toBeUndefined();
    expect(stopped).toEqual([TASK]);
  });

  it('leaves an ended run as it is, and still tears its sandbox down and settles it', async () => {
    seed('STOPPED', { taskArn: TASK, exitReason: 'stopped', startedAt: '2026-01-01T00:59:00.000Z' });
    expect(await finalizeRun(deps, { runId: RUN_ID, pod: { outcome: 'completed' } })).toEqual({
      status: 'STOPPED',
    });
    expect(runs.stored(RUN_ID).exitReason).toBe('stopped');
    expect(stopped).toEqual([TASK]);
    expect(settled).toEqual([RUN_ID]);
  });

  it('stops the task the launch started when the run never recorded it', async () => {
    seed('PROVISIONING');
    await finalizeRun(deps, { runId: RUN_ID, launch: { tasks: [{ TaskArn: 'arn:task/from-launch' }] } });
    expect(stopped).toEqual(['arn:task/from-launch']);
  });

  it('decides again when the run moved on under it', async () => {
    seed('RUNNING');
    const apply = runs.apply.bind(runs);
    vi.spyOn(runs, 'apply').mockImplementationOnce(async (decidedFrom, t) => {
      runs.stored(RUN_ID).status = 'AWAITING_APPROVAL';
      return apply(decidedFrom, t);
    });
    await finalizeRun(deps, { runId: RUN_ID, pod: { outcome: 'completed' } });
    // COMPLETED is no move from AWAITING_APPROVAL: it ends FAILED, saying why
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'FAILED',
      message: expect.stringContaining('AWAITING'),
    });
  });

  it('answers no status for a run that does not exist', async () => {
    expect(await finalizeRun(deps, { runId: 'run_gone' })).toEqual({ status: null });
  });
});

describe('startRun', () => {
  it('ends an open run whose execution is over, and leaves one whose execution runs', async () => {
    seed('RUNNING', { executionArn: 'arn:exec:1', taskArn: TASK });
    vi.mocked(deps.orchestrator.describe).mockResolvedValueOnce({ status: 'RUNNING' });
    await startRun(deps, RUN_ID);
    expect(runs.stored(RUN_ID).status).toBe('RUNNING');
    vi.mocked(deps.orchestrator.describe).mockResolvedValueOnce({ status: 'SUCCEEDED' });
    await startRun(deps, RUN_ID);
    expect(runs.stored(RUN_ID)).toMatchObject({ status: 'FAILED', exitReason: 'error' });
    expect(stopped).toEqual([TASK]);
    expect(deps.orchestrator.start).not.toHaveBeenCalled();
  });

  it('does nothing for a run that has ended or does not exist', async () => {
    seed('COMPLETED');
    await startRun(deps, RUN_ID);
    await startRun(deps, 'run_gone');
    expect(deps.orchestrator.start).not.toHaveBeenCalled();
    expect(deps.orchestrator.describe).not.toHaveBeenCalled();
  });
});

describe("the account's active-run limit", () => {
  const limitedTo = (maxActiveRuns: number, dailyCapMicroUsd = 0) =>
    vi.mocked(deps.directory.getAccount).mockResolvedValue({
      accountId: 'acct-1',
      name: 'a',
      paymentStatus: 'active',
      limits: { dailyCapMicroUsd, monthlyCapMicroUsd: 0, maxActiveRuns },
      updatedAt: 't',
    });
  const queued = (...runIds: string[]) => {
    for (const runId of runIds) runs.put(runFactory({ runId, status: 'QUEUED' }), {}, snapshotFactory());
  };
  const started = () => vi.mocked(deps.orchestrator.start).mock.calls.map(([name]) => name);
  beforeEach(() => {
    vi.mocked(deps.orchestrator.start).mockImplementation(async (name) => ({
      executionArn: `arn:exec:${name}`,
      alreadyExisted: false,
    }));
  });

  it('keeps the run over the limit QUEUED saying why, and starts it when a run ends and frees a slot', async () => {
    limitedTo(2);
    queued('run_1', 'run_2', 'run_3');
    for (const runId of ['run_1', 'run_2', 'run_3']) await startRun(deps, runId);
    expect(started()).toEqual(['run_1', 'run_2']);
    expect(runs.stored('run_3')).toMatchObject({
      status: 'QUEUED',
      waitingFor:
        'waiting for a slot: the account has 2 active runs, its limit; the run starts when one ends',
    });
    expect((await deps.slots.active('acct-1')).map((slot) => slot.runId)).toEqual(['run_1', 'run_2']);

    runs.stored('run_1').status = 'RUNNING';
    await finalizeRun(deps, { runId: 'run_1', pod: { outcome: 'completed' } });
    expect(deps.queue.enqueue).toHaveBeenCalledWith('run_3');
    await startRun(deps, 'run_3');
    expect(started()).toEqual(['run_1', 'run_2', 'run_3']);
    expect((await deps.slots.active('acct-1')).map((slot) => slot.runId)).toEqual(['run_2', 'run_3']);
  });

  it('frees the slot of a run that ended without giving it back when the account is full', async () => {
    limitedTo(1);
    queued('run_1', 'run_2');
    await startRun(deps, 'run_1');
    // run_1 ended, and whatever ended it could not give its slot back
    runs.stored('run_1').status = 'FAILED';
    await startRun(deps, 'run_2');
    expect(started()).toEqual(['run_1', 'run_2']);
    expect((await deps.slots.active('acct-1')).map((slot) => slot.runId)).toEqual(['run_2']);
  });

  it('hands the wake of a run that ended while it waited to the next one waiting', async () => {
    limitedTo(1);
    queued('run_1', 'run_2', 'run_3');
    for (const runId of ['run_1', 'run_2', 'run_3']) await startRun(deps, runId);
    runs.stored('run_2').status = 'STOPPED';
    runs.stored('run_2').history.push({ status: 'STOPPED', at: NOW.toISOString() });
    await startRun(deps, 'run_2');
    expect(deps.queue.enqueue).toHaveBeenCalledWith('run_3');
    expect(started()).toEqual(['run_1']);
  });

  it('gives the slot back when the execution cannot be started, so the retried message takes it again', async () => {
    limitedTo(1);
    queued('run_1');
    vi.mocked(deps.orchestrator.start).mockRejectedValueOnce(new Error('ThrottlingException'));
    await expect(startRun(deps, 'run_1')).rejects.toThrow('ThrottlingException');
    expect(await deps.slots.active('acct-1')).toEqual([]);
    await startRun(deps, 'run_1');
    expect(started()).toEqual(['run_1', 'run_1']);
  });

  it('has the sweeper wake runs waiting for a slot without counting them as lost', async () => {
    limitedTo(1);
    queued('run_1', 'run_2');
    for (const runId of ['run_1', 'run_2']) await startRun(deps, runId);
    vi.mocked(deps.list.listQueuedBefore).mockResolvedValue([
      structuredClone(runs.stored('run_1')),
      structuredClone(runs.stored('run_2')),
    ]);
    expect(await sweepQueued(deps, { staleAfterSeconds: 120, maxRequeues: 3 })).toEqual({
      requeued: 1,
      deadLettered: 0,
      woken: 1,
    });
    expect(runs.stored('run_2').requeues).toBeUndefined();
    expect(deps.queue.enqueue).toHaveBeenCalledWith('run_2');
  });

  it("counts what the account's other active runs have accrued toward its caps before a launch", async () => {
    // another run of 4 vCPU and 30 GB launched an hour ago has accrued 251,046 with its fee
    const other = { runId: 'run_other', cpu: 4096, memoryMiB: 30_720 };
    runs.put(runFactory({ runId: other.runId, status: 'RUNNING' }));
    await deps.slots.take('acct-1', { ...other, since: '2026-01-01T00:00:00.000Z' }, 0);
    limitedTo(0, 251_047);
    seed('QUEUED');
    expect((await runChecks(deps, settingsForChecks, RUN_ID)).ok).toBe(true);
    limitedTo(0, 251_046);
    runs.stored(RUN_ID).status = 'QUEUED';
    expect(await runChecks(deps, settingsForChecks, RUN_ID)).toMatchObject({
      ok: false,
      exitReason: 'budget_hit',
      message: expect.stringMatching(/last 24 hours; its cap is \$0\.251046/),
    });
  });
});

const settingsForChecks = {
  agentApiUrl: 'https://api.example',
  heartbeatSeconds: 60,
  stackTaskDefinitionArn: 'arn:aws:ecs:us-east-1:1:task-definition/pod:3',
};

describe('reconcileExecution', () => {
  it('ends the run of an aborted execution, tearing its sandbox down and settling it', async () => {
    seed('RUNNING', { executionArn: 'arn:exec:1', taskArn: TASK });
    await reconcileExecution(deps, {
      status: 'ABORTED',
      executionArn: 'arn:exec:1',
      input: JSON.stringify({ runId: RUN_ID }),
    });
    expect(runs.stored(RUN_ID)).toMatchObject({ status: 'STOPPED', exitReason: 'stopped' });
    expect(stopped).toEqual([TASK]);
    expect(runs.secrets.get(RUN_ID)?.podTaskToken).toBeUndefined();
  });

  it('tells the GitHub issue of a run it ends how it ended, once', async () => {
    const gitHubIssue = gitHubIssueFactory();
    seed('RUNNING', { executionArn: 'arn:exec:1', gitHubIssue });
    const tellEnded = vi.fn(async (_: Run) => undefined);
    const failed = { status: 'FAILED', executionArn: 'arn:exec:1', input: JSON.stringify({ runId: RUN_ID }) };
    await reconcileExecution({ ...deps, tellEnded }, failed);
    await reconcileExecution({ ...deps, tellEnded }, failed);
    expect(tellEnded).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({ status: 'FAILED', gitHubIssue }),
    );
  });

  it('ignores an earlier execution of a redriven run, and input that names no run', async () => {
    seed('RUNNING', { executionArn: 'arn:exec:1-r1' });
    await reconcileExecution(deps, {
      status: 'FAILED',
      executionArn: 'arn:exec:1',
      input: JSON.stringify({ runId: RUN_ID }),
    });
    await reconcileExecution(deps, { status: 'FAILED', input: 'not json' });
    await reconcileExecution(deps, { status: 'FAILED', input: '{"runId":7}' });
    expect(runs.stored(RUN_ID).status).toBe('RUNNING');
  });
});

describe('sweepQueued', () => {
  const policy = { staleAfterSeconds: 120, maxRequeues: 3 };

  it('re-queues stale queued runs a bounded number of times, then dead-letters them with the reason', async () => {
    seed('QUEUED');
    vi.mocked(deps.list.listQueuedBefore).mockImplementation(async (olderThan) => {
      expect(olderThan).toBe(NOW.getTime() - 120_000);
      const run = runs.stored(RUN_ID);
      return run.status === 'QUEUED' ? [structuredClone(run)] : [];
    });
    const sweeps = [];
    for (let i = 0; i < 5; i++) sweeps.push(await sweepQueued(deps, policy));
    expect(sweeps).toEqual([
      { requeued: 1, deadLettered: 0, woken: 0 },
      { requeued: 1, deadLettered: 0, woken: 0 },
      { requeued: 1, deadLettered: 0, woken: 0 },
      { requeued: 0, deadLettered: 1, woken: 0 },
      { requeued: 0, deadLettered: 0, woken: 0 },
    ]);
    expect(deps.queue.enqueue).toHaveBeenCalledTimes(3);
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'DEAD_LETTER',
      requeues: 3,
      message: expect.stringContaining('no execution was started for it'),
    });
  });
});

describe('checkPausedRuns', () => {
  it('ends the paused runs past their budget, failing the wait each is parked on, and leaves the others', async () => {
    // a pod of 1 vCPU and 2 GB paused an hour has accrued 32,380 + 7,120 and a fee of 10,790
    const over = runFactory({
      runId: 'run_paused_over',
      status: 'AWAITING_APPROVAL',
      startedAt: '2026-01-01T00:00:00.000Z',
      taskArn: TASK,
    });
    const under = runFactory({ ...over, runId: 'run_paused_under' });
    runs.put(
      over,
      { podTaskToken: 'approval-over' },
      snapshotFactory({ pod: podFactory({ runBudgetMicroUsd: 50_290 }) }),
    );
    runs.put(
      under,
      { podTaskToken: 'approval-under' },
      snapshotFactory({ pod: podFactory({ runBudgetMicroUsd: 50_291 }) }),
    );
    vi.mocked(deps.list.listAwaitingApproval).mockResolvedValue([over, under]);

    expect(await checkPausedRuns(deps)).toEqual({ checked: 2, failed: 1 });
    expect(runs.stored(over.runId)).toMatchObject({ status: 'FAILED', exitReason: 'budget_hit' });
    expect(deps.signals.failTask).toHaveBeenCalledWith('approval-over', 'Run.BudgetHit', expect.any(String));
    expect(runs.stored(under.runId).status).toBe('AWAITING_APPROVAL');
    expect(deps.signals.failTask).toHaveBeenCalledTimes(1);
  });
});

describe('runChecks', () => {
  const STACK = 'arn:aws:ecs:us-east-1:1:task-definition/pod:3';
  const OWN = 'arn:aws:ecs:us-east-1:1:task-definition/pod-pod-acct-1-pod-1-0123456789abcdef:2';
  const settings = {
    agentApiUrl: 'https://api.example',
    heartbeatSeconds: 60,
    stackTaskDefinitionArn: STACK,
  };
  const seedWithPod = (pod: Parameters<typeof podFactory>[0]) =>
    runs.put(runFactory({ runId: RUN_ID, status: 'QUEUED' }), {}, snapshotFactory({ pod: podFactory(pod) }));

  it('provisions the run and hands the launch a one-time code, keeping only its hash', async () => {
    seed('QUEUED');
    const checks = await runChecks(deps, settings, RUN_ID);
    expect(checks.ok).toBe(true);
    const environment = Object.fromEntries((checks.launch?.environment ?? []).map((v) => [v.Name, v.Value]));
    expect(Object.keys(environment).sort()).toEqual(['AGENT_API_URL', 'AGENT_LAUNCH_CODE', 'RUN_ID']);
    expect(runs.stored(RUN_ID).status).toBe('PROVISIONING');
    const secrets = runs.secrets.get(RUN_ID);
    expect(secrets?.launchCodeHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(secrets)).not.toContain(environment.AGENT_LAUNCH_CODE);
  });

  it('launches the stack’s task definition for a pod without one of its own', async () => {
    seed('QUEUED');
    expect((await runChecks(deps, settings, RUN_ID)).launch?.taskDefinition).toBe(STACK);
  });

  it('launches the task definition registered for the frozen pod, whatever the pod became since', async () => {
    seedWithPod({ image: 'registry.example/pod:1', taskDefinitionArn: OWN });
    vi.mocked(deps.directory.getPod).mockResolvedValue(podFactory({ taskDefinitionArn: `${OWN}0` }));
    expect((await runChecks(deps, settings, RUN_ID)).launch?.taskDefinition).toBe(OWN);
  });

  it('launches nothing for a pod with secrets but no task definition of its own, saying how to mend it', async () => {
    seedWithPod({ secrets: { TOKEN: 'execution-runs/pods/acct-1/t' } });
    expect(await runChecks(deps, settings, RUN_ID)).toMatchObject({
      ok: false,
      exitReason: 'cancelled',
      message: expect.stringContaining('save the pod again (PUT /v1/pods/pod-1)'),
      launch: null,
    });
    expect(runs.stored(RUN_ID).status).toBe('QUEUED');
  });

  describe('with GitHub as the git provider', () => {
    const REPO = 'https://github.com/acme/app.git';
    const github = (repos: string[] | Error) => ({
      installation: vi.fn(async (installationId: number) => {
        if (repos instanceof Error) throw repos;
        return { installationId, login: 'acme', repos };
      }),
      openPullRequest: vi.fn(),
      comment: vi.fn(),
      editComment: vi.fn(),
      pullRequest: vi.fn(),
    });
    const linkedAccount = (linked: boolean) =>
      vi.mocked(deps.directory.getAccount).mockResolvedValue({
        accountId: 'acct-1',
        name: 'a',
        paymentStatus: 'active',
        limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
        updatedAt: 't',
        ...(linked ? { github: { installationId: 42, login: 'acme', linkedBy: 'root', linkedAt: 't' } } : {}),
      });

    it('launches a run whose repositories the account’s installation covers, however their URLs are written', async () => {
      seed('QUEUED', { repos: ['https://github.com/ACME/app'] });
      linkedAccount(true);
      const app = github([REPO]);
      expect((await runChecks({ ...deps, github: app }, settings, RUN_ID)).ok).toBe(true);
      expect(app.installation).toHaveBeenCalledWith(42);
    });

    it('cancels, before anything launches, a run with a repository the installation does not cover, naming it', async () => {
      seed('QUEUED', { repos: [REPO, 'https://github.com/acme/secret.git'] });
      linkedAccount(true);
      expect(await runChecks({ ...deps, github: github([REPO]) }, settings, RUN_ID)).toMatchObject({
        ok: false,
        exitReason: 'missing_repo_access',
        message: 'the GitHub App installation 42 (acme) does not cover https://github.com/acme/secret.git',
      });
      expect(runs.stored(RUN_ID).status).toBe('QUEUED');
    });

    it('cancels a run of an account that linked no installation, or whose installation is gone', async () => {
      seed('QUEUED', { repos: [REPO] });
      linkedAccount(false);
      expect(await runChecks({ ...deps, github: github([REPO]) }, settings, RUN_ID)).toMatchObject({
        exitReason: 'missing_repo_access',
        message: expect.stringContaining('PUT /v1/account/github'),
      });
      linkedAccount(true);
      const gone = github(new NotFoundError('GitHub App installation', '42'));
      expect(await runChecks({ ...deps, github: gone }, settings, RUN_ID)).toMatchObject({
        exitReason: 'missing_repo_access',
      });
    });
  });

  it('launches nothing for a run that ended meanwhile (stopped during a back-off)', async () => {
    seed('STOPPED');
    expect(await runChecks(deps, settings, RUN_ID)).toMatchObject({
      ok: false,
      exitReason: 'cancelled',
      launch: null,
    });
    expect(runs.secrets.get(RUN_ID)?.launchCodeHash).toBeUndefined();
  });

  it('provisions a retrying run again before its relaunch', async () => {
    seed('RETRYING', { attempt: 2 });
    expect((await runChecks(deps, settings, RUN_ID)).ok).toBe(true);
    expect(runs.stored(RUN_ID).status).toBe('PROVISIONING');
  });
});

describe('markRetrying', () => {
  const policy = { maxAttempts: 3, backoffSeconds: [5, 20] };

  it('backs off longer on each attempt and gives up after the last', async () => {
    seed('PROVISIONING', { attempt: 1 });
    expect(await markRetrying(deps, policy, RUN_ID, 'RESOURCE:ENI')).toEqual({
      retry: true,
      waitSeconds: 5,
      attempt: 2,
    });
    runs.stored(RUN_ID).status = 'PROVISIONING';
    expect(await markRetrying(deps, policy, RUN_ID, 'RESOURCE:ENI')).toEqual({
      retry: true,
      waitSeconds: 20,
      attempt: 3,
    });
    runs.stored(RUN_ID).status = 'PROVISIONING';
    expect(await markRetrying(deps, policy, RUN_ID, 'RESOURCE:ENI')).toEqual({
      retry: false,
      waitSeconds: 0,
      attempt: 3,
    });
    expect(await markRetrying(deps, policy, 'run_gone', 'x')).toEqual({
      retry: false,
      waitSeconds: 0,
      attempt: 0,
    });
  });
});

describe('onPodStopped', () => {
  it('fails a run whose sandbox stopped under it, and fails the wait the state machine parked', async () => {
    seed('RUNNING', { taskArn: TASK });
    await onPodStopped(deps, {
      taskArn: TASK,
      startedBy: RUN_ID,
      stopCode: 'EssentialContainerExited',
      stoppedReason: 'exited',
      containers: [{ exitCode: 137 }],
    });
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'FAILED',
      exitReason: 'interrupted',
      containerExitCode: 137,
      message: 'the sandbox stopped (EssentialContainerExited: exited, exit code 137)',
    });
    expect(deps.signals.failTask).toHaveBeenCalledWith('wait', 'Pod.Interrupted', expect.any(String));
  });

  it('fails a run whose task never started (a secret it could not read), before its task was even recorded', async () => {
    seed('PROVISIONING');
    const stoppedReason =
      'ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: ResourceNotFoundException';
    await onPodStopped(deps, {
      taskArn: TASK,
      startedBy: RUN_ID,
      stopCode: 'TaskFailedToStart',
      stoppedReason,
      containers: [{ name: 'pod' }],
    });
    expect(runs.stored(RUN_ID)).toMatchObject({
      status: 'FAILED',
      exitReason: 'interrupted',
      stopCode: 'TaskFailedToStart',
      stoppedReason,
      message: `the sandbox stopped (TaskFailedToStart: ${stoppedReason})`,
    });
    expect(runs.stored(RUN_ID).containerExitCode).toBeUndefined();
  });

  it('leaves a run that reported its result, and ignores an earlier launch’s task', async () => {
    seed('RUNNING', { taskArn: TASK, result: { outcome: 'completed' } });
    await onPodStopped(deps, { taskArn: TASK, startedBy: RUN_ID });
    await onPodStopped(deps, { taskArn: 'arn:task/old', startedBy: RUN_ID, stopCode: 'X' });
    expect(isTerminal(runs.stored(RUN_ID).status)).toBe(false);
    expect(runs.stored(RUN_ID).stopCode).toBeUndefined();
  });
});
