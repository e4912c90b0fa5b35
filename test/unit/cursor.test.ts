import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { ValidationError } from '../../shared/domain/errors.js';
import type { Caller } from '../../shared/domain/tenancy.js';
import type { RunList } from '../../shared/ports.js';
import { listQuerySchema } from '../../shared/schemas/api.js';
import { PageCursors } from '../../shared/usecases/cursor.js';
import { listRuns } from '../../shared/usecases/runs.js';
import { directoryOf, runFactory } from '../support/factories.js';

const KEY = 'k'.repeat(64);
const scope = { logs: 'run_01J0000000000000000000000A', direction: 'older' };

/** The cursor a client could make before cursors were signed: the position and the query's public fingerprint. */
const handMade = (scopeOf: unknown, position: string) =>
  Buffer.from(
    JSON.stringify({
      p: position,
      f: createHash('sha256').update(JSON.stringify(scopeOf)).digest('base64url').slice(0, 12),
    }),
  ).toString('base64url');

describe('PageCursors', () => {
  const cursors = new PageCursors(KEY);

  it('gives back the position of a cursor it made, for the same query', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (position) => {
        expect(cursors.decode(scope, cursors.encode(scope, position))).toBe(position);
      }),
    );
  });

  it('refuses a cursor of another query, saying so', () => {
    const cursor = cursors.encode(scope, 'p');
    expect(() => cursors.decode({ ...scope, direction: 'newer' }, cursor)).toThrow(/another query/);
  });

  it('refuses a cursor made without the key, or signed with another one', () => {
    expect(() => cursors.decode(scope, handMade(scope, 'f/1'))).toThrow(ValidationError);
    const other = new PageCursors('o'.repeat(64)).encode(scope, 'f/1');
    expect(() => cursors.decode(scope, other)).toThrow(/not valid/);
  });

  it('refuses every change to a cursor it made', () => {
    const cursor = cursors.encode(scope, JSON.stringify({ s: 'pod/pod/task-1', t: 'b/100' }));
    fc.assert(
      fc.property(
        fc.nat({ max: cursor.length - 1 }),
        fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.'),
        (at, char) => {
          fc.pre(cursor[at] !== char);
          const tampered = `${cursor.slice(0, at)}${char}${cursor.slice(at + 1)}`;
          expect(() => cursors.decode(scope, tampered)).toThrow(ValidationError);
        },
      ),
    );
  });

  it('refuses anything else with a ValidationError, never another error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.stringMatching(/^[\w-]*\.[\w-]*$/)), (text) => {
        expect(() => cursors.decode(scope, text)).toThrow(ValidationError);
      }),
    );
  });
});

describe('listRuns cursors', () => {
  const caller: Caller = { accountId: 'acct-1', userId: 'alice', accountRole: 'member' };
  const setup = () => {
    const runs = {
      list: vi.fn(async () => ({ items: [runFactory()], lastRunId: 'run_01J0000000000000000000000A' })),
    } as unknown as RunList;
    const deps = { list: runs, directory: directoryOf(), cursorKey: async () => KEY };
    return { runs, deps };
  };

  it('hands out a signed cursor that continues the same list', async () => {
    const { runs, deps } = setup();
    const first = await listRuns(deps, caller, listQuerySchema.parse({ limit: '1' }));
    expect(first.nextCursor).toMatch(/^[\w-]+\.[\w-]+$/);
    await listRuns(deps, caller, listQuerySchema.parse({ limit: '1', cursor: first.nextCursor }));
    // a caller who is not an account admin lists the runs of the projects they have a role in
    expect(runs.list).toHaveBeenLastCalledWith(
      expect.objectContaining({ before: 'run_01J0000000000000000000000A', projectIds: ['proj-1'] }),
    );
  });

  it('refuses a hand-made cursor without querying', async () => {
    const { runs, deps } = setup();
    const scopeOf = { a: 'acct-1', s: undefined, src: undefined, pod: undefined };
    const cursor = handMade(scopeOf, '');
    await expect(listRuns(deps, caller, listQuerySchema.parse({ cursor }))).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(runs.list).not.toHaveBeenCalled();
  });
});
