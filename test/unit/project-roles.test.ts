import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../../shared/domain/errors.js';
import type { Caller, Project } from '../../shared/domain/tenancy.js';
import { getProject, listProjects } from '../../shared/usecases/directory.js';
import { getRun } from '../../shared/usecases/runs.js';
import { receive } from '../../shared/usecases/stream.js';
import { directoryOf, projectFactory, runFactory } from '../support/factories.js';
import { FakeStream } from '../support/fake-log-stream.js';
import { MemoryRuns } from '../support/memory-runs.js';
import { MemoryConnections, MemoryFeed, RecordingSender } from '../support/memory-stream.js';

/** Project roles govern reads: a run, its project and its live status need a role in its project. */

const people = {
  admin: { accountId: 'acct-1', userId: 'root', accountRole: 'admin' },
  projectAdmin: { accountId: 'acct-1', userId: 'ada', accountRole: 'member' },
  viewer: { accountId: 'acct-1', userId: 'vic', accountRole: 'member' },
  bystander: { accountId: 'acct-1', userId: 'bob', accountRole: 'member' },
  outsider: { accountId: 'acct-2', userId: 'mallory', accountRole: 'admin' },
} satisfies Record<string, Caller>;

const visible: Project = projectFactory({
  projectId: 'proj-1',
  members: [
    { userId: 'ada', role: 'admin', email: 'ada@example.com' },
    { userId: 'vic', role: 'viewer', email: 'vic@example.com' },
  ],
});
const other: Project = projectFactory({ projectId: 'proj-2', members: [{ userId: 'bob', role: 'member' }] });
const run = runFactory({ runId: 'run_01J0000000000000000000000A', projectId: 'proj-1' });

const deps = () => ({
  runs: new MemoryRuns().put(run),
  directory: directoryOf(visible, other),
});

describe('reading a run', () => {
  it('is for account admins and anyone with a role in its project; anyone else is told it is not found', async () => {
    for (const caller of [people.admin, people.projectAdmin, people.viewer]) {
      expect((await getRun(deps(), caller, run.runId)).runId).toBe(run.runId);
    }
    for (const caller of [people.bystander, people.outsider]) {
      await expect(getRun(deps(), caller, run.runId)).rejects.toBeInstanceOf(NotFoundError);
    }
  });
});

describe('reading projects', () => {
  const directory = () => ({ ...deps(), clock: { now: () => new Date() } }) as never;

  it('lists the projects a caller has a role in (every one for an account admin)', async () => {
    const ids = async (caller: Caller) => (await listProjects(directory(), caller)).map((p) => p.projectId);
    expect(await ids(people.admin)).toEqual(['proj-1', 'proj-2']);
    expect(await ids(people.viewer)).toEqual(['proj-1']);
    expect(await ids(people.bystander)).toEqual(['proj-2']);
    await expect(getProject(directory(), people.bystander, 'proj-1')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('shows members’ addresses to the project’s admins only', async () => {
    const emails = async (caller: Caller) =>
      (await getProject(directory(), caller, 'proj-1')).members.map((m) => m.email);
    expect(await emails(people.admin)).toEqual(['ada@example.com', 'vic@example.com']);
    expect(await emails(people.projectAdmin)).toEqual(['ada@example.com', 'vic@example.com']);
    expect(await emails(people.viewer)).toEqual([undefined, undefined]);
  });
});

describe('following the account’s runs', () => {
  it('sends a caller who is not an account admin the runs of their projects only', async () => {
    const connections = new MemoryConnections();
    const sender = new RecordingSender();
    const streamDeps = {
      ...deps(),
      connections,
      sender,
      feed: new MemoryFeed(),
      logs: new FakeStream('s'),
      cursorKey: async () => 'k'.repeat(64),
      clock: { now: () => new Date() },
    };
    await connections.saveConnection('viewer', people.viewer);
    await connections.saveConnection('bystander', people.bystander);
    await receive(streamDeps, 'viewer', JSON.stringify({ action: 'followRuns' }));
    await receive(streamDeps, 'bystander', JSON.stringify({ action: 'followRuns', projectId: 'proj-1' }));
    expect(sender.to('bystander')).toEqual([
      { type: 'error', code: 'NotFound', message: expect.stringContaining('proj-1') },
    ]);
    expect(await connections.runsFollowers('acct-1')).toEqual([
      { connectionId: 'viewer', projectIds: ['proj-1'] },
    ]);
  });
});
