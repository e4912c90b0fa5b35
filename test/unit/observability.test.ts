import { afterEach, describe, expect, it, vi } from 'vitest';
import { validatedHandler } from '../../shared/lambda.js';
import { logger, runKeysOf } from '../../shared/observability.js';
import * as z from '../../shared/zod.js';
import { lambdaContext } from '../support/factories.js';

describe('runKeysOf', () => {
  it.each([
    [
      'a state machine task’s input',
      { runId: 'run_1', accountId: 'acct-1' },
      { runId: 'run_1', accountId: 'acct-1' },
    ],
    ['an HTTP route’s path', { pathParameters: { runId: 'run_1' } }, { runId: 'run_1' }],
    ['an ECS task state change', { detail: { startedBy: 'run_1', taskArn: 't' } }, { runId: 'run_1' }],
    [
      'a redriven execution’s status change',
      { detail: { name: 'run_1-r2', status: 'FAILED' } },
      { runId: 'run_1' },
    ],
    [
      'an execution’s status change with its input',
      { detail: { name: 'run_1', input: '{"runId":"run_1","accountId":"acct-1"}' } },
      { runId: 'run_1', accountId: 'acct-1' },
    ],
    ['a batch of several runs', { Records: [{ body: '{"runId":"run_1"}' }] }, {}],
  ])('finds the run of %s', (_, event, keys) => {
    expect(runKeysOf(event)).toEqual(keys);
  });
});

describe('the handlers’ log lines', () => {
  afterEach(() => vi.restoreAllMocks());

  it('carry the run and its account during the invocation about it, and not after', async () => {
    const lines: Record<string, unknown>[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      lines.push(
        ...String(chunk)
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line)),
      );
      return true;
    });
    const previous = logger.getLevelName();
    logger.setLogLevel('INFO');
    const handler = validatedHandler(z.looseObject({}), async () => {
      logger.info('working');
      return null;
    });

    await handler({ runId: 'run_1', accountId: 'acct-1' }, lambdaContext());
    await handler({}, lambdaContext());
    logger.setLogLevel(previous);

    expect(lines).toEqual([
      expect.objectContaining({ message: 'working', runId: 'run_1', accountId: 'acct-1' }),
      expect.not.objectContaining({ runId: 'run_1' }),
    ]);
  });
});
