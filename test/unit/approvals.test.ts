import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type Approval,
  type ApprovalOutcome,
  type DecisionRecord,
  signApprovalLink,
} from '../../shared/domain/approval.js';
import { end } from '../../shared/domain/commands.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../../shared/domain/errors.js';
import { endingOf } from '../../shared/domain/execution.js';
import type { Run } from '../../shared/domain/run.js';
import type { Caller, Project } from '../../shared/domain/tenancy.js';
import type { ApprovalStore, DirectoryRepository, Mail, Notifier, TaskSignals } from '../../shared/ports.js';
import {
  type ApprovalDeps,
  decideByApi,
  decideByLink,
  requestApproval,
  viewApprovalLink,
  viewCheckpoint,
} from '../../shared/usecases/approvals.js';
import { parkPod } from '../../shared/usecases/lifecycle.js';
import { podFactory, projectFactory, runFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryConnections } from '../support/memory-stream.js';

const SECRET = 's'.repeat(64);
const NOW = new Date('2026-01-01T00:10:00.000Z');
const settings = { secret: SECRET, publicApiUrl: 'https://api.example.com/' };

type StoredRun = Run;

class MemoryApprovals implements ApprovalStore {
  readonly approvals = new Map<string, Approval>();
  readonly tokens = new Map<string, string>();

  async put(approval: Approval, taskToken: string) {
    this.approvals.set(approval.approvalId, structuredClone(approval));
    this.tokens.set(approval.approvalId, taskToken);
  }

  async get(approvalId: string) {
    const approval = this.approvals.get(approvalId);
    return approval && structuredClone(approval);
  }

  async getTaskToken(approvalId: string) {
    return this.tokens.get(approvalId);
  }

  async recordDecision(approvalId: string, decision: DecisionRecord, now: Date) {
    const approval = this.approvals.get(approvalId);
    if (!approval || approval.decision || Date.parse(approval.expiresAt) <= now.getTime()) {
      return { recorded: false as const, approval: approval && structuredClone(approval) };
    }
    approval.decision = decision;
    return { recorded: true as const, approval: structuredClone(approval) };
  }

  async markNotApplied(approvalId: string) {
    const decision = this.approvals.get(approvalId)?.decision;
    if (decision) decision.applied = false;
  }

  async checkpointDetails() {
    return { details: 'the whole plan', truncated: false };
  }
}

const project: Project = projectFactory({
  name: 'Shop',
  members: [
    { userId: 'alice', role: 'admin', email: 'alice@example.com' },
    { userId: 'bob', role: 'admin', email: 'bob@example.com' },
    { userId: 'mallory', role: 'member', email: 'mallory@example.com' },
  ],
});

const runId = 'run_01J0000000000000000000000A';
const pendingRun = (overrides: Partial<StoredRun> = {}): StoredRun => ({
  ...runFactory({
    runId,
    mode: 'supervised',
    status: 'AWAITING_APPROVAL',
    history: [
      { status: 'QUEUED', at: '2026-01-01T00:00:00.000Z' },
      { status: 'PROVISIONING', at: '2026-01-01T00:00:00.000Z' },
      { status: 'RUNNING', at: '2026-01-01T00:01:00.000Z' },
      { status: 'AWAITING_APPROVAL', at: '2026-01-01T00:06:00.000Z' },
    ],
  }),
  pendingApproval: {
    seq: 5,
    name: 'plan',
    summary: 'Plan: 3 steps',
    requestedAt: '2026-01-01T00:06:00.000Z',
  },
  ...overrides,
});

const pendingOf = (run: StoredRun) => {
  if (!run.pendingApproval) throw new Error('the run has no pending approval');
  return run.pendingApproval;
};

let runs: MemoryRuns;
let approvals: MemoryApprovals;
let signals: TaskSignals & { succeedTask: ReturnType<typeof vi.fn>; failTask: ReturnType<typeof vi.fn> };
let sent: Mail[];
let notifier: Notifier;
let deps: ApprovalDeps & { notifier: Notifier };

beforeEach(() => {
  runs = new MemoryRuns();
  approvals = new MemoryApprovals();
  signals = {
    succeedTask: vi.fn(async () => 'sent' as const),
    failTask: vi.fn(async () => 'sent' as const),
    heartbeat: vi.fn(async () => 'sent' as const),
  };
  sent = [];
  notifier = {
    send: vi.fn(async (mail: Mail) => {
      sent.push(mail);
    }),
  };
  const directory = {
    getProject: vi.fn(async (accountId: string, projectId: string) =>
      accountId === project.accountId && projectId === project.projectId ? project : undefined,
    ),
    getPod: vi.fn(async () => podFactory({ name: 'Demo pod' })),
  } as unknown as DirectoryRepository;
  deps = {
    runs,
    directory,
    approvals,
    signals,
    clock: { now: () => NOW },
    notifier,
  };
});

const request = async (windowSeconds = 3600) => {
  runs.put(pendingRun());
  const result = await requestApproval(deps, settings, {
    runId,
    checkpoint: { seq: 5, name: 'plan' },
    taskToken: 'approval-token',
    windowSeconds,
    maxDurationSeconds: 3600,
  });
  const approvalId = result.approvalId as string;
  return {
    result,
    approvalId,
    link: (userId: string) => ({ for: userId, sig: signApprovalLink(SECRET, approvalId, userId) }),
  };
};

describe('requesting an approval', () => {
  it('stores it with its token, makes it the pending approval and parks its token on the run', async () => {
    const { approvalId } = await request();
    const stored = await approvals.get(approvalId);
    expect(stored).toMatchObject({
      runId,
      checkpoint: { seq: 5, name: 'plan', summary: 'Plan: 3 steps', details: 'the whole plan' },
      requestedAt: '2026-01-01T00:06:00.000Z',
      expiresAt: '2026-01-01T01:10:00.000Z',
      // 1 minute provisioning and 5 running of a 60 minute budget
      podSecondsLeft: 3240,
    });
    expect(approvals.tokens.get(approvalId)).toBe('approval-token');
    expect(runs.secrets.get(runId)?.podTaskToken).toBe('approval-token');
    expect((await runs.get(runId))?.pendingApproval).toMatchObject({
      approvalId,
      expiresAt: '2026-01-01T01:10:00.000Z',
    });
  });

  it('mails each project admin a link signed for them, and no one else', async () => {
    const { approvalId, result } = await request();
    expect(result.notified.sort()).toEqual(['alice@example.com', 'bob@example.com']);
    expect(sent.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
    const aliceMail = sent.find((m) => m.to === 'alice@example.com') as Mail;
    const sig = signApprovalLink(SECRET, approvalId, 'alice');
    expect(aliceMail.text).toContain(`https://api.example.com/approve/${approvalId}?for=alice&sig=${sig}`);
    expect(aliceMail.subject).toContain('Shop');
  });

  it('reports mail that could not be sent without failing the request', async () => {
    vi.mocked(notifier.send).mockRejectedValueOnce(new Error('MessageRejected'));
    const { result } = await request();
    expect(result.failed).toHaveLength(1);
    expect(result.notified).toHaveLength(1);
  });

  it('fails the token, mailing no one, when the run stopped before the approval was stored', async () => {
    runs.put(pendingRun({ status: 'STOPPED' }));
    const result = await requestApproval(deps, settings, {
      runId,
      checkpoint: { seq: 5, name: 'plan' },
      taskToken: 'approval-token',
      windowSeconds: 60,
      maxDurationSeconds: 3600,
    });
    expect(result.approvalId).toBeUndefined();
    expect(signals.failTask).toHaveBeenCalledWith(
      'approval-token',
      'Run.Ended',
      expect.stringContaining('STOPPED'),
    );
    expect(sent).toEqual([]);
  });
});

describe('deciding by the email link', () => {
  it('shows a pending approval on GET and changes nothing', async () => {
    const { approvalId, link } = await request();
    const view = await viewApprovalLink(deps, SECRET, approvalId, link('alice'));
    expect(view.kind).toBe('pending');
    expect(view.context).toMatchObject({ projectName: 'Shop', podName: 'Demo pod' });
    expect((await approvals.get(approvalId))?.decision).toBeUndefined();
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });

  it('records an approval first, then settles the token with it, and lets the run go on', async () => {
    const { approvalId, link } = await request();
    const view = await decideByLink(deps, SECRET, approvalId, link('alice'), 'approve');
    expect(view).toMatchObject({ kind: 'decided', yours: true });
    expect((await approvals.get(approvalId))?.decision).toEqual({
      decision: 'approved',
      by: 'alice',
      email: 'alice@example.com',
      via: 'email_link',
      at: NOW.toISOString(),
    });
    const outcome = signals.succeedTask.mock.calls[0]?.[1] as ApprovalOutcome;
    expect(signals.succeedTask.mock.calls[0]?.[0]).toBe('approval-token');
    expect(outcome).toMatchObject({ approvalId, decision: 'approved', by: 'alice', podSecondsLeft: 3240 });
    const run = (await runs.get(runId)) as StoredRun;
    expect(run.status).toBe('RUNNING');
    expect(run.pendingApproval).toBeUndefined();
    expect(run.approvals).toEqual([
      expect.objectContaining({ approvalId, decision: 'approved', via: 'email_link' }),
    ]);
  });

  it('settles the token once and shows the first decision to every later one', async () => {
    const { approvalId, link } = await request();
    const views = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        decideByLink(deps, SECRET, approvalId, link(i % 2 ? 'alice' : 'bob'), i % 3 ? 'approve' : 'cancel'),
      ),
    );
    expect(signals.succeedTask).toHaveBeenCalledTimes(1);
    expect(views.filter((v) => v.kind === 'decided' && v.yours)).toHaveLength(1);
    const first = (await approvals.get(approvalId))?.decision;
    for (const view of views) {
      expect(view.kind).toBe('decided');
      if (view.kind === 'decided') expect(view.approval.decision).toEqual(first);
    }
  });

  it('refuses a forged or missing signature before reading anything', async () => {
    const { approvalId } = await request();
    const get = vi.spyOn(approvals, 'get');
    await expect(
      decideByLink(
        deps,
        SECRET,
        approvalId,
        { for: 'alice', sig: signApprovalLink(SECRET, approvalId, 'bob') },
        'approve',
      ),
    ).rejects.toBeInstanceOf(ForbiddenError);
    await expect(viewApprovalLink(deps, SECRET, approvalId, { for: 'alice' })).rejects.toBeInstanceOf(
      ForbiddenError,
    );
    expect(get).not.toHaveBeenCalled();
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });

  it('refuses a link sent to someone who is no longer a project admin', async () => {
    const { approvalId, link } = await request();
    await expect(decideByLink(deps, SECRET, approvalId, link('mallory'), 'approve')).rejects.toBeInstanceOf(
      ForbiddenError,
    );
  });

  it('says an expired approval expired and records nothing', async () => {
    const { approvalId, link } = await request(60);
    deps.clock = { now: () => new Date(NOW.getTime() + 61_000) };
    const view = await decideByLink(deps, SECRET, approvalId, link('alice'), 'approve');
    expect(view.kind).toBe('expired');
    expect((await approvals.get(approvalId))?.decision).toBeUndefined();
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });

  it('records nothing when the run no longer waits (stopped meanwhile)', async () => {
    const { approvalId, link } = await request();
    runs.stored(runId).status = 'STOPPED';
    const view = await decideByLink(deps, SECRET, approvalId, link('alice'), 'cancel');
    expect(view.kind).toBe('closed');
    expect((await approvals.get(approvalId))?.decision).toBeUndefined();
  });

  it('marks a decision whose wait had already ended as not applied', async () => {
    const { approvalId, link } = await request();
    signals.succeedTask.mockResolvedValueOnce('gone');
    const view = await decideByLink(deps, SECRET, approvalId, link('alice'), 'approve');
    expect(view.kind === 'decided' && view.approval.decision.applied).toBe(false);
    expect((await runs.get(runId))?.status).toBe('AWAITING_APPROVAL');
  });

  it('leaves a cancelled run for Finalize to abandon, with the cancellation in its history', async () => {
    const { approvalId, link } = await request();
    await decideByLink(deps, SECRET, approvalId, link('bob'), 'cancel');
    const run = (await runs.get(runId)) as StoredRun;
    expect(run.status).toBe('AWAITING_APPROVAL');
    const outcome = signals.succeedTask.mock.calls[0]?.[1] as ApprovalOutcome;
    const ending = endingOf({
      runId,
      approval: outcome,
      pod: { outcome: 'checkpoint', checkpoint: { seq: 5, name: 'plan' } },
    });
    expect(ending).toMatchObject({
      to: 'ABANDONED',
      exitReason: 'abandoned',
      message: 'cancelled at the checkpoint plan by bob',
    });
    // Finalize's ending closes the pending checkpoint with that decision, in the same write.
    expect(end(run, ending, NOW)).toMatchObject({
      path: ['ABANDONED'],
      closeApproval: { decision: 'cancelled', by: 'bob', seq: 5 },
    });
  });
});

describe('viewing the checkpoint a run waits at', () => {
  const member: Caller = { accountId: 'acct-1', userId: 'mallory', accountRole: 'member' };

  it('shows any project member the checkpoint with its details, before and after its approval is requested', async () => {
    runs.put(pendingRun());
    const before = await viewCheckpoint(deps, member, runId);
    await request();
    const after = await viewCheckpoint(deps, member, runId);

    expect(before).toEqual({
      name: 'plan',
      summary: 'Plan: 3 steps',
      details: 'the whole plan',
      requestedAt: '2026-01-01T00:06:00.000Z',
    });
    expect(after).toMatchObject({ name: 'plan', details: 'the whole plan', expiresAt: expect.any(String) });
  });

  it('answers 404 to another tenant, and while the run waits for nothing', async () => {
    await request();
    await expect(
      viewCheckpoint(deps, { accountId: 'acct-2', userId: 'alice', accountRole: 'admin' }, runId),
    ).rejects.toBeInstanceOf(NotFoundError);
    runs.put(runFactory({ runId, status: 'RUNNING' }));
    await expect(viewCheckpoint(deps, member, runId)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('deciding through the API', () => {
  const admin: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };

  it('records the decision as made through the API', async () => {
    const { approvalId } = await request();
    const { approval, run } = await decideByApi(deps, admin, runId, 'approve');
    expect(approval.decision).toMatchObject({ decision: 'approved', by: 'alice', via: 'api' });
    expect(run.status).toBe('RUNNING');
    expect(signals.succeedTask).toHaveBeenCalledWith(
      'approval-token',
      expect.objectContaining({ approvalId }),
    );
  });

  it('refuses a project member who is not an admin (403) and another tenant (404)', async () => {
    await request();
    await expect(
      decideByApi(deps, { accountId: 'acct-1', userId: 'mallory', accountRole: 'member' }, runId, 'approve'),
    ).rejects.toBeInstanceOf(ForbiddenError);
    await expect(
      decideByApi(deps, { accountId: 'acct-2', userId: 'alice', accountRole: 'admin' }, runId, 'approve'),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(signals.succeedTask).not.toHaveBeenCalled();
  });

  it('answers 409 with the decision on record to a second decision', async () => {
    await request();
    await decideByApi(deps, admin, runId, 'approve');
    runs.put({ ...((await runs.get(runId)) as StoredRun), status: 'AWAITING_APPROVAL' });
    await expect(decideByApi(deps, admin, runId, 'cancel')).rejects.toBeInstanceOf(ConflictError);
  });

  it('answers 409 while the run waits for nothing', async () => {
    runs.put(runFactory({ runId, status: 'RUNNING' }));
    await expect(decideByApi(deps, admin, runId, 'approve')).rejects.toThrow(/no checkpoint waiting/);
  });
});

describe('the approval on the run record', () => {
  const outcome = (approvalId: string, decision: 'approved' | 'cancelled'): ApprovalOutcome => ({
    approvalId,
    seq: 5,
    name: 'plan',
    summary: 'Plan: 3 steps',
    requestedAt: '2026-01-01T00:06:00.000Z',
    decision,
    at: NOW.toISOString(),
    by: 'alice',
    via: 'api',
    podSecondsLeft: 3300,
  });

  it('goes on when the resumed wait is parked, if the decision itself could not finish', async () => {
    runs.put(pendingRun({ pendingApproval: { ...pendingOf(pendingRun()), approvalId: 'a1' } }));
    await parkPod(
      { ...deps, logStreams: new MemoryConnections() },
      {
        runId,
        taskArn: 'arn:task/1',
        taskToken: 'resumed-token',
        approval: outcome('a1', 'approved'),
      },
    );
    const run = (await runs.get(runId)) as StoredRun;
    expect(run.status).toBe('RUNNING');
    expect(run.approvals).toHaveLength(1);
    expect(signals.succeedTask).not.toHaveBeenCalled();
    expect(runs.secrets.get(runId)?.podTaskToken).toBe('resumed-token');
  });

  it('does not resume a run that already paused at its next checkpoint', async () => {
    runs.put(pendingRun({ pendingApproval: { seq: 9, name: 'commit', summary: 'c', requestedAt: 't' } }));
    await parkPod(
      { ...deps, logStreams: new MemoryConnections() },
      {
        runId,
        taskArn: 'arn:task/1',
        taskToken: 't2',
        approval: outcome('a1', 'approved'),
      },
    );
    const run = (await runs.get(runId)) as StoredRun;
    expect(run.status).toBe('AWAITING_APPROVAL');
    expect(run.pendingApproval?.seq).toBe(9);
  });

  it('closes as expired when the window passed, withdrawn when the run ended otherwise', () => {
    const run = pendingRun({ pendingApproval: { ...pendingOf(pendingRun()), approvalId: 'a1' } });
    const at = new Date('2026-01-01T02:00:00.000Z');
    expect(end(run, endingOf({ runId, error: { Error: 'Approval.Expired' } }), at)?.closeApproval).toEqual(
      expect.objectContaining({ decision: 'expired', approvalId: 'a1', at: at.toISOString() }),
    );
    expect(end(run, endingOf({ runId, error: { Error: 'Run.Stopped' } }), at)?.closeApproval).toEqual(
      expect.objectContaining({ decision: 'withdrawn' }),
    );
    // a decision for another checkpoint does not close this one as decided
    const other = { ...outcome('other', 'cancelled'), seq: 3 };
    expect(end(run, endingOf({ runId, approval: other }), at)?.closeApproval).toEqual(
      expect.objectContaining({ decision: 'withdrawn' }),
    );
  });

  it('tells an expired approval window (ABANDONED / timed_out) from the pod running out of time (FAILED)', () => {
    expect(endingOf({ runId, error: { Error: 'Approval.Expired' } })).toMatchObject({
      to: 'ABANDONED',
      exitReason: 'timed_out',
    });
    expect(endingOf({ runId, error: { Error: 'States.Timeout' } })).toMatchObject({
      to: 'FAILED',
      exitReason: 'timed_out',
    });
    expect(
      endingOf({ runId, pod: { outcome: 'completed' }, approval: outcome('a1', 'approved') }),
    ).toMatchObject({ to: 'COMPLETED' });
  });
});
