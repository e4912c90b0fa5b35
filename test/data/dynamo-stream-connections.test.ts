import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoStreamConnections } from '../../shared/adapters/dynamo-stream-connections.js';
import { useTestTable } from '../support/dynamodb-local.js';

const table = useTestTable();
let connections: DynamoStreamConnections;
beforeAll(() => {
  connections = new DynamoStreamConnections(table.doc, table.tableName);
});

const runId = () => `run_${randomUUID().replaceAll('-', '').slice(0, 26).toUpperCase()}`;
const inAnHour = () => new Date(Date.now() + 3_600_000);

describe('DynamoStreamConnections: follows of a run and of its log', () => {
  it('moves a run follower’s cursor only from where it stands', async () => {
    const run = runId();
    await connections.follow(run, 'c1', 3, inAnHour());
    expect(await connections.advance(run, 'c1', 2, 9)).toBe(false);
    expect(await connections.advance(run, 'c1', 3, 5)).toBe(true);
    expect(await connections.advance(run, 'c1', 3, 6)).toBe(false);
    expect(await connections.cursorOf(run, 'c1')).toBe(5);
    expect(await connections.followers(run)).toEqual([{ connectionId: 'c1', cursor: 5 }]);
    await connections.unfollow(run, 'c1');
    expect(await connections.advance(run, 'c1', 5, 6)).toBe(false);
  });

  it('moves a log follower’s cursor and last line time together, only from where the cursor stands', async () => {
    const run = runId();
    await connections.followLogs(run, 'c1', 'start', inAnHour());
    await connections.followLogs(run, 'c2', 'start', inAnHour());
    expect(await connections.logFollower(run, 'c1')).toEqual({
      connectionId: 'c1',
      cursor: 'start',
      lastAt: 0,
    });
    expect(await connections.advanceLogs(run, 'c1', 'start', { cursor: 'a', lastAt: 10 })).toBe(true);
    // a second mover from the same place loses, and changes nothing
    expect(await connections.advanceLogs(run, 'c1', 'start', { cursor: 'b', lastAt: 20 })).toBe(false);
    expect(await connections.logFollower(run, 'c1')).toEqual({ connectionId: 'c1', cursor: 'a', lastAt: 10 });
    expect(
      (await connections.logFollowers(run)).sort((x, y) => x.connectionId.localeCompare(y.connectionId)),
    ).toEqual([
      { connectionId: 'c1', cursor: 'a', lastAt: 10 },
      { connectionId: 'c2', cursor: 'start', lastAt: 0 },
    ]);
    // a follow of the run's log is not a follow of the run, and the other way round
    expect(await connections.followers(run)).toEqual([]);
    await connections.unfollowLogs(run, 'c1');
    expect(await connections.logFollower(run, 'c1')).toBeUndefined();
    expect(await connections.advanceLogs(run, 'c1', 'a', { cursor: 'c', lastAt: 30 })).toBe(false);
  });

  it('remembers which run a pod’s log stream belongs to', async () => {
    const run = runId();
    const stream = `pod/pod/${randomUUID()}`;
    expect(await connections.runOfLogStream(stream)).toBeUndefined();
    await connections.rememberLogStream(stream, run, inAnHour());
    expect(await connections.runOfLogStream(stream)).toBe(run);
  });
});
