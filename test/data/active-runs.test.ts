import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DynamoActiveRuns } from '../../shared/adapters/dynamo-active-runs.js';
import type { ActiveRun } from '../../shared/ports.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
const slots = () => new DynamoActiveRuns(table.doc, table.tableName);
const account = () => `acct-${randomUUID().slice(0, 8)}`;
const run = (runId: string, since = '2026-01-01T00:00:00.000Z'): ActiveRun => ({
  runId,
  since,
  cpu: 1024,
  memoryMiB: 2048,
});
const held = async (accountId: string) => (await slots().active(accountId)).map((r) => r.runId).sort();

describe('DynamoActiveRuns', () => {
  it('gives at most `limit` runs a slot; a retried take finds its slot held', async () => {
    const accountId = account();
    expect(await slots().take(accountId, run('run_a'), 2)).toBe(true);
    expect(await slots().take(accountId, run('run_b'), 2)).toBe(true);
    expect(await slots().take(accountId, run('run_c'), 2)).toBe(false);
    expect(await slots().take(accountId, run('run_a'), 2)).toBe(true);
    expect(await held(accountId)).toEqual(['run_a', 'run_b']);
    expect(await slots().active(accountId)).toContainEqual(run('run_a'));
  });

  it('lets ten of twenty concurrent takes under a limit of ten through, no more', async () => {
    const accountId = account();
    const ids = Array.from({ length: 20 }, (_, i) => `run_${String(i).padStart(2, '0')}`);
    const taken = await Promise.all(ids.map((id) => slots().take(accountId, run(id), 10)));
    expect(taken.filter(Boolean)).toHaveLength(10);
    expect(await held(accountId)).toHaveLength(10);
  });

  it('answers the run waiting longest when a slot is given back, once; a run that no longer waits hands it on', async () => {
    const accountId = account();
    await slots().take(accountId, run('run_a'), 1);
    expect(await slots().take(accountId, run('run_late', '2026-01-01T00:00:09.000Z'), 1)).toBe(false);
    expect(await slots().take(accountId, run('run_early', '2026-01-01T00:00:01.000Z'), 1)).toBe(false);
    // waiting again keeps when it first waited
    expect(await slots().take(accountId, run('run_late', '2026-01-01T00:00:00.500Z'), 1)).toBe(false);

    expect(await slots().release(accountId, 'run_a')).toBe('run_early');
    expect(await slots().release(accountId, 'run_a')).toBeUndefined();
    expect(await slots().forget(accountId, 'run_early')).toBe('run_late');
    expect(await slots().take(accountId, run('run_late'), 1)).toBe(true);
    expect(await held(accountId)).toEqual(['run_late']);
    expect(await slots().release(accountId, 'run_late')).toBeUndefined();
    expect(await slots().take(accountId, run('run_next'), 1)).toBe(true);
  });

  it('has no limit at 0, and nothing for an account that never took a slot', async () => {
    const accountId = account();
    for (const id of ['run_1', 'run_2', 'run_3'])
      expect(await slots().take(accountId, run(id), 0)).toBe(true);
    expect(await held(accountId)).toEqual(['run_1', 'run_2', 'run_3']);
    expect(await slots().active(account())).toEqual([]);
    expect(await slots().release(account(), 'run_1')).toBeUndefined();
  });
});
