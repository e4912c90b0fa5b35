import { describe, expect, it } from 'vitest';
import {
  type Account,
  type AccountLimits,
  activeRunLimit,
  type Caller,
  capReached,
  DEFAULT_MAX_ACTIVE_RUNS,
  hasProjectRole,
  hasSpendCaps,
  needsOwnTaskDefinition,
  type ProjectRole,
  preflight,
  projectRoleOf,
  waitingForSlot,
} from '../../shared/domain/tenancy.js';
import { podFactory, projectFactory } from '../support/factories.js';

const member = (role?: ProjectRole) =>
  projectFactory({
    members: [{ userId: 'bob', role: 'admin' }, ...(role ? [{ userId: 'alice', role }] : [])],
  });
const alice = (accountRole: Caller['accountRole'] = 'member'): Caller => ({
  accountId: 'acct-1',
  userId: 'alice',
  accountRole,
});
const account = (over: Partial<Account> = {}): Account => ({
  accountId: 'acct-1',
  name: 'A',
  paymentStatus: 'active',
  limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...over,
});
const limits = (daily: number, monthly: number): AccountLimits => ({
  dailyCapMicroUsd: daily,
  monthlyCapMicroUsd: monthly,
});

describe('project roles', () => {
  it.each([
    ['no role', undefined, 'viewer', false],
    ['no role', undefined, 'member', false],
    ['no role', undefined, 'admin', false],
    ['viewer', 'viewer', 'viewer', true],
    ['viewer', 'viewer', 'member', false],
    ['viewer', 'viewer', 'admin', false],
    ['member', 'member', 'viewer', true],
    ['member', 'member', 'member', true],
    ['member', 'member', 'admin', false],
    ['admin', 'admin', 'viewer', true],
    ['admin', 'admin', 'member', true],
    ['admin', 'admin', 'admin', true],
  ] as const)('a project %s may act as %s: %s', (_, role, needed, allowed) => {
    expect(hasProjectRole(member(role), alice(), needed)).toBe(allowed);
  });

  it('are the caller’s own membership, not another member’s', () => {
    expect(projectRoleOf(member('viewer'), alice())).toBe('viewer');
    expect(projectRoleOf(member(), alice())).toBeUndefined();
  });

  it.each(['viewer', 'member', 'admin'] as const)(
    'let an account admin act as a project %s without being a member',
    (needed) => {
      expect(projectRoleOf(member(), alice('admin'))).toBe('admin');
      expect(hasProjectRole(member(), alice('admin'), needed)).toBe(true);
    },
  );

  it('give an account admin who is a project viewer the admin role', () => {
    expect(projectRoleOf(member('viewer'), alice('admin'))).toBe('admin');
  });
});

describe('spend caps', () => {
  it.each([
    [limits(0, 0), false],
    [limits(1, 0), true],
    [limits(0, 1), true],
    [limits(1, 1), true],
  ])('%o has caps: %s (0 is no cap)', (capped, expected) => {
    expect(hasSpendCaps(capped)).toBe(expected);
  });

  it.each([
    ['under both caps', limits(10, 100), 9, 99, undefined],
    [
      'at the daily cap',
      limits(1_000_000, 100_000_000),
      1_000_000,
      1_000_000,
      'the account spent $1.000000 in the last 24 hours; its cap is $1.000000',
    ],
    [
      'at the monthly cap',
      limits(10_000_000, 5_000_000),
      0,
      5_000_000,
      'the account spent $5.000000 in the last 30 days; its cap is $5.000000',
    ],
    [
      'over both caps, the daily one first',
      limits(1_000_000, 2_000_000),
      1_500_000,
      3_000_000,
      'the account spent $1.500000 in the last 24 hours; its cap is $1.000000',
    ],
    ['over nothing when neither cap is set', limits(0, 0), 1e12, 1e12, undefined],
    [
      'over the monthly cap when only that is set',
      limits(0, 1),
      5,
      2,
      'the account spent $0.000002 in the last 30 days; its cap is $0.000001',
    ],
  ])('are reached %s', (_, capped, last24hMicroUsd, last30dMicroUsd, reason) => {
    expect(capReached(capped, { last24hMicroUsd, last30dMicroUsd })).toBe(reason);
  });
});

describe('active runs', () => {
  it('are limited as the account says, 0 for no limit, and by default for an account that never said', () => {
    expect(activeRunLimit({ ...limits(0, 0), maxActiveRuns: 10 })).toBe(10);
    expect(activeRunLimit({ ...limits(0, 0), maxActiveRuns: 0 })).toBe(0);
    expect(activeRunLimit(limits(0, 0))).toBe(DEFAULT_MAX_ACTIVE_RUNS);
    expect(DEFAULT_MAX_ACTIVE_RUNS).toBe(20);
  });

  it('make a run over the limit wait, saying why', () => {
    expect(waitingForSlot(10)).toBe(
      'waiting for a slot: the account has 10 active runs, its limit; the run starts when one ends',
    );
    expect(waitingForSlot(1)).toMatch(/has 1 active run, its limit/);
  });
});

describe('preflight: what stops a run before anything is launched, first reason first', () => {
  const pod = podFactory({ podId: 'pod-7' });
  const overCap = { last24hMicroUsd: 2, last30dMicroUsd: 2 };
  const capped = account({ limits: limits(1, 0) });

  it.each([
    [
      'a missing account',
      undefined,
      undefined,
      overCap,
      { ok: false, exitReason: 'cancelled', message: 'the account no longer exists' },
    ],
    [
      'an account without payment',
      account({ paymentStatus: 'payment_required' }),
      undefined,
      overCap,
      { ok: false, exitReason: 'payment_required', message: 'the account has no valid payment method' },
    ],
    [
      'a missing pod',
      capped,
      undefined,
      overCap,
      { ok: false, exitReason: 'cancelled', message: 'the pod no longer exists' },
    ],
    [
      'a disabled pod',
      capped,
      { ...pod, enabled: false },
      overCap,
      { ok: false, exitReason: 'cancelled', message: 'pod pod-7 is disabled' },
    ],
    [
      'a spend cap reached',
      capped,
      pod,
      overCap,
      {
        ok: false,
        exitReason: 'budget_hit',
        message: 'the account spent $0.000002 in the last 24 hours; its cap is $0.000001',
      },
    ],
    ['nothing when the spend is not known', capped, pod, undefined, { ok: true }],
    ['nothing when all is well', account(), pod, overCap, { ok: true }],
  ] as const)('stops at %s', (_, acct, thePod, spend, outcome) => {
    expect(preflight(thePod, acct, spend)).toEqual(outcome);
  });
});

describe('needsOwnTaskDefinition', () => {
  it.each([
    ['neither an image nor secrets', {}, false],
    ['an image of its own', { image: 'registry.example/pod:1' }, true],
    ['a secret', { secrets: { TOKEN: 'execution-runs/pods/acct-1/t' } }, true],
    ['both', { image: 'registry.example/pod:1', secrets: { TOKEN: 'execution-runs/pods/acct-1/t' } }, true],
  ])('says whether a pod with %s needs a task definition of its own', (_, over, needed) => {
    expect(needsOwnTaskDefinition(podFactory(over))).toBe(needed);
  });
});
