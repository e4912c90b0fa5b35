import { describe, expect, it } from 'vitest';
import {
  type Approval,
  approvalRecipients,
  approvalState,
  decidedEntry,
  decisionFor,
  isProjectAdminMember,
  newApprovalId,
  podSecondsLeft,
  signApprovalLink,
  undecidedEntry,
  verifyApprovalLink,
} from '../../shared/domain/approval.js';
import { projectFactory } from '../support/factories.js';

const SECRET = 'a'.repeat(64);

const approvalFactory = (overrides: Partial<Approval> = {}): Approval => ({
  approvalId: 'appr_0123456789abcdef',
  runId: 'run_01J0000000000000000000000A',
  accountId: 'acct-1',
  projectId: 'proj-1',
  itemId: 'ITEM-1',
  podId: 'pod-1',
  checkpoint: { seq: 4, name: 'plan', summary: 'Plan: 3 steps' },
  requestedAt: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-01-01T01:00:00.000Z',
  podSecondsLeft: 3000,
  ...overrides,
});

describe('approval link signatures', () => {
  // Signed inside each test: a signature made while the tests are collected would fail them all at once.
  const sign = () => signApprovalLink(SECRET, 'appr_1', 'alice');

  it('signs a link the same way in every release, so links already mailed keep working', () => {
    expect(sign()).toBe('jbwlb4hzV3jaCPk7k2o9PmRRiqsu6f2fAbyYHBbfvT0');
  });

  it('accepts the signature made for that approval and recipient', () => {
    expect(verifyApprovalLink(SECRET, 'appr_1', 'alice', sign())).toBe(true);
  });

  it.each([
    ['another recipient', 'appr_1', 'bob', (sig: string) => sig],
    ['another approval', 'appr_2', 'alice', (sig: string) => sig],
    [
      'a changed character',
      'appr_1',
      'alice',
      (sig: string) => `${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`,
    ],
    ['a shorter signature', 'appr_1', 'alice', (sig: string) => sig.slice(0, 20)],
    ['no signature', 'appr_1', 'alice', () => undefined],
    ['no recipient', 'appr_1', undefined, (sig: string) => sig],
    ['an empty signature', 'appr_1', 'alice', () => ''],
  ])('refuses %s', (_what, approvalId, userId, presented) => {
    expect(verifyApprovalLink(SECRET, approvalId, userId, presented(sign()))).toBe(false);
  });

  it('refuses a signature made with another secret', () => {
    expect(
      verifyApprovalLink(SECRET, 'appr_1', 'alice', signApprovalLink('b'.repeat(64), 'appr_1', 'alice')),
    ).toBe(false);
  });

  it('makes URL-safe signatures and opaque, unique approval ids', () => {
    expect(sign()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ids = new Set(Array.from({ length: 100 }, newApprovalId));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });
});

describe('approval state', () => {
  it('is pending until it expires, and decided once a decision is on record', () => {
    const approval = approvalFactory();
    expect(approvalState(approval, new Date('2026-01-01T00:59:59.999Z'))).toBe('pending');
    expect(approvalState(approval, new Date('2026-01-01T01:00:00.000Z'))).toBe('expired');
    const decided = approvalFactory({
      decision: { decision: 'approved', by: 'alice', via: 'api', at: '2026-01-01T00:10:00.000Z' },
    });
    expect(approvalState(decided, new Date('2026-01-02T00:00:00.000Z'))).toBe('decided');
  });

  it('maps the actions to decisions', () => {
    expect(decisionFor('approve')).toBe('approved');
    expect(decisionFor('cancel')).toBe('cancelled');
  });
});

describe('what is left of the pod maximum duration', () => {
  const history = [
    { status: 'QUEUED' as const, at: '2026-01-01T00:00:00.000Z' },
    { status: 'PROVISIONING' as const, at: '2026-01-01T00:01:00.000Z' },
    { status: 'RUNNING' as const, at: '2026-01-01T00:02:00.000Z' },
    { status: 'AWAITING_APPROVAL' as const, at: '2026-01-01T00:12:00.000Z' },
    { status: 'RUNNING' as const, at: '2026-01-01T05:00:00.000Z' },
    { status: 'AWAITING_APPROVAL' as const, at: '2026-01-01T05:10:00.000Z' },
  ];

  it('counts provisioning and running time, never the time spent waiting for a person', () => {
    // 1 min provisioning + 10 min running + 10 min running = 21 min of a 60 min budget
    expect(podSecondsLeft(history, 3600, new Date('2026-01-01T09:00:00.000Z'))).toBe(39 * 60);
  });

  it('counts a running interval up to now', () => {
    expect(podSecondsLeft(history.slice(0, 3), 3600, new Date('2026-01-01T00:32:00.000Z'))).toBe(
      3600 - 31 * 60,
    );
  });

  it('leaves at least a second, so the resumed wait still times out', () => {
    expect(podSecondsLeft(history, 60, new Date('2026-01-02T00:00:00.000Z'))).toBe(1);
  });
});

describe('recipients', () => {
  const project = projectFactory({
    members: [
      { userId: 'alice', role: 'admin', email: 'alice@example.com' },
      { userId: 'bob', role: 'member', email: 'bob@example.com' },
      { userId: 'carol', role: 'admin' },
      { userId: 'dan', role: 'viewer', email: 'dan@example.com' },
    ],
  });

  it('are the project admins with a mail address', () => {
    expect(approvalRecipients(project)).toEqual([{ userId: 'alice', email: 'alice@example.com' }]);
  });

  it('stay admins only while the project says so', () => {
    expect(isProjectAdminMember(project, 'alice')).toBe(true);
    expect(isProjectAdminMember(project, 'carol')).toBe(true);
    expect(isProjectAdminMember(project, 'bob')).toBe(false);
    expect(isProjectAdminMember(project, 'eve')).toBe(false);
  });
});

describe('history entries', () => {
  it('carry who decided, when and how', () => {
    const decision = { decision: 'cancelled' as const, by: 'alice', via: 'email_link' as const, at: 't1' };
    expect(decidedEntry(approvalFactory(), decision)).toEqual({
      approvalId: 'appr_0123456789abcdef',
      seq: 4,
      name: 'plan',
      summary: 'Plan: 3 steps',
      requestedAt: '2026-01-01T00:00:00.000Z',
      decision: 'cancelled',
      at: 't1',
      by: 'alice',
      email: undefined,
      via: 'email_link',
    });
  });

  it('record a pending approval that expired or was withdrawn, without a decider', () => {
    const pending = {
      seq: 4,
      name: 'plan',
      summary: 's',
      requestedAt: 't0',
      approvalId: 'a1',
      expiresAt: 't9',
    };
    expect(undecidedEntry(pending, 'expired', 't9')).toEqual({
      approvalId: 'a1',
      seq: 4,
      name: 'plan',
      summary: 's',
      requestedAt: 't0',
      decision: 'expired',
      at: 't9',
    });
  });
});
