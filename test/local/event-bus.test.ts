import { afterAll, describe, expect, it } from 'vitest';
import { type BusEvent, createEventBus, matchesPattern } from '../../infra/local/event-bus.js';
import { EVENT_RULES } from '../../shared/manifest.js';

const event = (detail: unknown, extra: Record<string, unknown> = {}) => ({
  source: 'test.app',
  'detail-type': 'Thing Changed',
  detail,
  ...extra,
});

/** As EventBridge delivers an ECS task's stop (trimmed to the fields that matter plus typical noise). */
const ecsTaskStateChange = (lastStatus: string) => ({
  version: '0',
  id: '3317b2af-7005-947d-b652-f55e762e571a',
  'detail-type': 'ECS Task State Change',
  source: 'aws.ecs',
  account: '111122223333',
  time: '2026-01-20T12:00:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:ecs:us-east-1:111122223333:task/runs/0b69d5c0d655438bb6c8a1c6c4b1f3f0'],
  detail: {
    clusterArn: 'arn:aws:ecs:us-east-1:111122223333:cluster/runs',
    taskArn: 'arn:aws:ecs:us-east-1:111122223333:task/runs/0b69d5c0d655438bb6c8a1c6c4b1f3f0',
    lastStatus,
    desiredStatus: 'STOPPED',
    launchType: 'FARGATE',
    stopCode: 'EssentialContainerExited',
    stoppedReason: 'Essential container in task exited',
    containers: [{ name: 'pod', lastStatus, exitCode: 0 }],
    overrides: { containerOverrides: [{ name: 'pod', environment: [{ name: 'RUN_ID', value: 'run_1' }] }] },
  },
});

const executionStatusChange = (status: string) => ({
  version: '0',
  id: '315c1398-40ff-a850-213b-158f73e60175',
  'detail-type': 'Step Functions Execution Status Change',
  source: 'aws.states',
  account: '111122223333',
  time: '2026-01-20T12:00:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:states:us-east-1:111122223333:execution:run:run_1-1'],
  detail: {
    executionArn: 'arn:aws:states:us-east-1:111122223333:execution:run:run_1-1',
    stateMachineArn: 'arn:aws:states:us-east-1:111122223333:stateMachine:run',
    name: 'run_1-1',
    status,
    startDate: 1768910000000,
    stopDate: 1768910400000,
    input: '{"runId":"run_1"}',
    output: null,
  },
});

describe('matchesPattern', () => {
  it('matches exact values from a list, and an event array when any element matches', () => {
    const pattern = { source: ['test.app'], detail: { color: ['red', 'blue'] } };

    expect(matchesPattern(pattern, event({ color: 'blue' }))).toBe(true);
    expect(matchesPattern(pattern, event({ color: 'green' }))).toBe(false);
    expect(matchesPattern(pattern, event({ color: ['green', 'red'] }))).toBe(true);
    expect(matchesPattern(pattern, event({ color: ['green'] }))).toBe(false);
    expect(matchesPattern(pattern, event({}))).toBe(false);
    expect(matchesPattern(pattern, { ...event({ color: 'red' }), source: 'other' })).toBe(false);
  });

  it('compares types exactly: numbers, booleans and null', () => {
    expect(matchesPattern({ detail: { n: [5] } }, event({ n: 5 }))).toBe(true);
    expect(matchesPattern({ detail: { n: [5] } }, event({ n: '5' }))).toBe(false);
    expect(matchesPattern({ detail: { ok: [true] } }, event({ ok: true }))).toBe(true);
    expect(matchesPattern({ detail: { ok: [true] } }, event({ ok: 'true' }))).toBe(false);
    expect(matchesPattern({ detail: { v: [null] } }, event({ v: null }))).toBe(true);
    expect(matchesPattern({ detail: { v: [null] } }, event({}))).toBe(false);
  });

  it('walks nested objects, and through arrays of objects', () => {
    const pattern = { detail: { containers: { name: ['pod'] } } };

    expect(matchesPattern(pattern, event({ containers: [{ name: 'sidecar' }, { name: 'pod' }] }))).toBe(true);
    expect(matchesPattern(pattern, event({ containers: [{ name: 'sidecar' }] }))).toBe(false);
    expect(matchesPattern(pattern, event({ containers: 'pod' }))).toBe(false);
  });

  it('matches prefix and suffix, plain or ignoring case', () => {
    expect(matchesPattern({ detail: { id: [{ prefix: 'run_' }] } }, event({ id: 'run_1' }))).toBe(true);
    expect(matchesPattern({ detail: { id: [{ prefix: 'run_' }] } }, event({ id: 'RUN_1' }))).toBe(false);
    expect(
      matchesPattern(
        { detail: { id: [{ prefix: { 'equals-ignore-case': 'run_' } }] } },
        event({ id: 'RUN_1' }),
      ),
    ).toBe(true);
    expect(matchesPattern({ detail: { f: [{ suffix: '.png' }] } }, event({ f: 'a.png' }))).toBe(true);
    expect(matchesPattern({ detail: { f: [{ suffix: '.png' }] } }, event({ f: 'a.PNG' }))).toBe(false);
    expect(
      matchesPattern(
        { detail: { f: [{ suffix: { 'equals-ignore-case': '.png' } }] } },
        event({ f: 'a.PNG' }),
      ),
    ).toBe(true);
    expect(matchesPattern({ detail: { f: [{ prefix: 'a' }] } }, event({ f: 1 }))).toBe(false);
  });

  it('matches equals-ignore-case', () => {
    expect(
      matchesPattern({ detail: { s: [{ 'equals-ignore-case': 'stopped' }] } }, event({ s: 'STOPPED' })),
    ).toBe(true);
    expect(
      matchesPattern({ detail: { s: [{ 'equals-ignore-case': 'stopped' }] } }, event({ s: 'STOPPING' })),
    ).toBe(false);
  });

  it('matches anything-but a value, a list, a prefix, a suffix or ignoring case, but not a missing field', () => {
    expect(matchesPattern({ detail: { s: [{ 'anything-but': 'RUNNING' }] } }, event({ s: 'STOPPED' }))).toBe(
      true,
    );
    expect(matchesPattern({ detail: { s: [{ 'anything-but': 'RUNNING' }] } }, event({ s: 'RUNNING' }))).toBe(
      false,
    );
    expect(matchesPattern({ detail: { s: [{ 'anything-but': ['A', 'B'] }] } }, event({ s: 'B' }))).toBe(
      false,
    );
    expect(matchesPattern({ detail: { s: [{ 'anything-but': ['A', 'B'] }] } }, event({ s: 'C' }))).toBe(true);
    expect(matchesPattern({ detail: { n: [{ 'anything-but': [1, 2] }] } }, event({ n: 3 }))).toBe(true);
    expect(
      matchesPattern({ detail: { s: [{ 'anything-but': { prefix: 'init' } }] } }, event({ s: 'initial' })),
    ).toBe(false);
    expect(
      matchesPattern({ detail: { s: [{ 'anything-but': { prefix: 'init' } }] } }, event({ s: 'final' })),
    ).toBe(true);
    expect(
      matchesPattern({ detail: { s: [{ 'anything-but': { suffix: '.tmp' } }] } }, event({ s: 'a.tmp' })),
    ).toBe(false);
    expect(
      matchesPattern(
        { detail: { s: [{ 'anything-but': { 'equals-ignore-case': ['a', 'b'] } }] } },
        event({ s: 'B' }),
      ),
    ).toBe(false);
    expect(matchesPattern({ detail: { s: [{ 'anything-but': 'RUNNING' }] } }, event({}))).toBe(false);
  });

  it('matches exists true and false', () => {
    expect(matchesPattern({ detail: { pr: [{ exists: true }] } }, event({ pr: 'url' }))).toBe(true);
    expect(matchesPattern({ detail: { pr: [{ exists: true }] } }, event({}))).toBe(false);
    expect(matchesPattern({ detail: { pr: [{ exists: false }] } }, event({}))).toBe(true);
    expect(matchesPattern({ detail: { pr: [{ exists: false }] } }, event({ pr: 'url' }))).toBe(false);
    expect(matchesPattern({ detail: { pr: [{ exists: false }] } }, { source: 'x' })).toBe(true);
  });

  it('matches numeric ranges and equality, numbers only', () => {
    const range = { detail: { cost: [{ numeric: ['>', 0, '<=', 100] }] } };

    expect(matchesPattern(range, event({ cost: 100 }))).toBe(true);
    expect(matchesPattern(range, event({ cost: 0 }))).toBe(false);
    expect(matchesPattern(range, event({ cost: 100.5 }))).toBe(false);
    expect(matchesPattern(range, event({ cost: '50' }))).toBe(false);
    expect(matchesPattern({ detail: { c: [{ numeric: ['=', 3] }] } }, event({ c: 3 }))).toBe(true);
    expect(matchesPattern({ detail: { c: [{ numeric: ['>=', 3] }] } }, event({ c: 2.99 }))).toBe(false);
  });

  it('matches wildcard and cidr', () => {
    expect(
      matchesPattern({ resources: [{ wildcard: 'arn:*:task/runs/*' }] }, ecsTaskStateChange('STOPPED')),
    ).toBe(true);
    expect(
      matchesPattern({ resources: [{ wildcard: 'arn:*:cluster/*' }] }, ecsTaskStateChange('STOPPED')),
    ).toBe(false);
    expect(matchesPattern({ detail: { ip: [{ cidr: '10.0.0.0/24' }] } }, event({ ip: '10.0.0.7' }))).toBe(
      true,
    );
    expect(matchesPattern({ detail: { ip: [{ cidr: '10.0.0.0/24' }] } }, event({ ip: '10.0.1.7' }))).toBe(
      false,
    );
  });

  it('matches when any $or alternative does', () => {
    const pattern = { source: ['test.app'], $or: [{ detail: { a: [1] } }, { detail: { b: [2] } }] };

    expect(matchesPattern(pattern, event({ b: 2 }))).toBe(true);
    expect(matchesPattern(pattern, event({ a: 2, b: 1 }))).toBe(false);
  });

  it('refuses invalid patterns', () => {
    expect(() => matchesPattern({ source: 'aws.ecs' }, event({}))).toThrow(/Invalid event pattern/);
    expect(() => matchesPattern({ detail: { s: [{ 'starts-with': 'x' }] } }, event({}))).toThrow(
      /unknown operator/,
    );
    expect(() => matchesPattern({ detail: { n: [{ numeric: ['~', 1] }] } }, event({}))).toThrow(/numeric/);
  });
});

describe('EVENT_RULES patterns', () => {
  const rule = (name: string) => {
    const found = EVENT_RULES.find((r) => r.name === name);
    if (!found) throw new Error(`no rule ${name}`);
    return found.pattern;
  };

  it('send a stopped ECS task to pod-stopped, and no other task state', () => {
    expect(matchesPattern(rule('podTaskStopped'), ecsTaskStateChange('STOPPED'))).toBe(true);
    expect(matchesPattern(rule('podTaskStopped'), ecsTaskStateChange('RUNNING'))).toBe(false);
    expect(matchesPattern(rule('podTaskStopped'), ecsTaskStateChange('DEPROVISIONING'))).toBe(false);
    expect(matchesPattern(rule('podTaskStopped'), executionStatusChange('FAILED'))).toBe(false);
  });

  it('send executions that failed, timed out or were aborted to reconcile, and not succeeded or running ones', () => {
    for (const status of ['FAILED', 'TIMED_OUT', 'ABORTED']) {
      expect(matchesPattern(rule('executionEndedAbnormally'), executionStatusChange(status))).toBe(true);
    }
    for (const status of ['SUCCEEDED', 'RUNNING']) {
      expect(matchesPattern(rule('executionEndedAbnormally'), executionStatusChange(status))).toBe(false);
    }
    expect(matchesPattern(rule('executionEndedAbnormally'), ecsTaskStateChange('STOPPED'))).toBe(false);
  });
});

describe('createEventBus', () => {
  const errors: string[] = [];
  const bus = createEventBus({
    region: 'eu-west-1',
    accountId: '111122223333',
    retryDelaysMs: [5, 10],
    logError: (message) => errors.push(message),
  });
  afterAll(() => bus.close());

  it('delivers a matching event, with its envelope filled in, to each matching rule only', async () => {
    const stopped: BusEvent[] = [];
    const reconciled: BusEvent[] = [];
    bus.addRule('stopped', EVENT_RULES[0].pattern, async (e) => stopped.push(e));
    bus.addRule('reconcile', EVENT_RULES[1].pattern, async (e) => reconciled.push(e));

    await bus.putEvents([
      {
        source: 'aws.ecs',
        'detail-type': 'ECS Task State Change',
        detail: { lastStatus: 'STOPPED', taskArn: 't1' },
      },
      {
        source: 'aws.ecs',
        'detail-type': 'ECS Task State Change',
        detail: { lastStatus: 'RUNNING', taskArn: 't2' },
      },
    ]);
    await bus.drain();

    expect(reconciled).toEqual([]);
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toMatchObject({
      version: '0',
      source: 'aws.ecs',
      account: '111122223333',
      region: 'eu-west-1',
      resources: [],
      detail: { taskArn: 't1' },
    });
    expect(stopped[0]?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(stopped[0]?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('retries a failing target three times in all, and never fails the producer', async () => {
    let attempts = 0;
    bus.addRule('flaky', { source: ['test.flaky'] }, async () => {
      attempts += 1;
      throw new Error('target down');
    });

    await expect(bus.putEvents([{ source: 'test.flaky', 'detail-type': 'x' }])).resolves.toBeUndefined();
    expect(attempts).toBe(1);
    await bus.drain();

    expect(attempts).toBe(3);
    expect(errors.at(-1)).toMatch(/rule flaky: target failed .* after 3 attempts/);
  });

  it('delivers to a target that recovers on a retry', async () => {
    let attempts = 0;
    bus.addRule('recovers', { source: ['test.recovers'] }, async () => {
      attempts += 1;
      if (attempts === 1) throw new Error('once');
    });

    await bus.putEvents([{ source: 'test.recovers', 'detail-type': 'x' }]);
    await bus.drain();

    expect(attempts).toBe(2);
  });

  it('refuses a rule with an invalid pattern', () => {
    expect(() => bus.addRule('bad', { source: 'aws.ecs' }, async () => undefined)).toThrow(
      /Invalid event pattern/,
    );
  });

  it('emits Scheduled Events at the rate until stopped', async () => {
    const ticks: BusEvent[] = [];
    const stop = bus.every('sweeper', 15, async (e) => {
      ticks.push(e);
    });
    await new Promise((resolve) => setTimeout(resolve, 70));
    stop();
    const count = ticks.length;
    await new Promise((resolve) => setTimeout(resolve, 40));

    expect(count).toBeGreaterThanOrEqual(2);
    expect(ticks).toHaveLength(count);
    expect(ticks[0]).toMatchObject({
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      resources: ['arn:aws:events:eu-west-1:111122223333:rule/sweeper'],
      detail: {},
    });
  });
});
