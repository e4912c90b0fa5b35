import { describe, expect, it } from 'vitest';
import {
  colourStyle,
  exitCodeFor,
  firstLine,
  formatAgo,
  formatDuration,
  formatUsd,
  runDetails,
  runsTable,
  stepLine,
  styleFor,
  table,
} from '../../cli/format.js';
import { RUN_STATUSES, TERMINAL_STATUSES } from '../../shared/domain/run.js';
import type { StepView } from '../../shared/schemas/wire.js';
import { runFactory } from '../support/factories.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');

describe('the CLI’s exit codes', () => {
  it('exits 0 for a run that did its work, 1 for one that failed, 2 for one ended otherwise', () => {
    expect(exitCodeFor('COMPLETED')).toBe(0);
    expect(exitCodeFor('DONE')).toBe(0);
    expect(exitCodeFor('FAILED')).toBe(1);
    expect(exitCodeFor('DEAD_LETTER')).toBe(1);
    for (const status of ['CANCELLED', 'STOPPED', 'ABANDONED', 'PR_REJECTED'] as const) {
      expect(exitCodeFor(status)).toBe(2);
    }
  });

  it('has a code for every terminal status and none for a run still going', () => {
    for (const status of RUN_STATUSES) {
      if (TERMINAL_STATUSES.has(status)) expect([0, 1, 2]).toContain(exitCodeFor(status));
      else expect(() => exitCodeFor(status)).toThrow(/not an outcome/);
    }
  });
});

describe('formatting for people', () => {
  it('writes micro-USD as dollars: four decimals under a dollar, cents above', () => {
    expect(formatUsd(0)).toBe('$0.0000');
    expect(formatUsd(35_200)).toBe('$0.0352');
    expect(formatUsd(1_234_567)).toBe('$1.23');
    expect(formatUsd(12_345_678_900)).toBe('$12,345.68');
  });

  it('writes durations at the scale they have', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(2_260)).toBe('2.2s');
    expect(formatDuration(185_000)).toBe('3m05s');
    expect(formatDuration(3_720_000)).toBe('1h02m');
  });

  it('writes how long ago', () => {
    expect(formatAgo('2026-01-01T00:59:48.000Z', NOW)).toBe('12s ago');
    expect(formatAgo('2026-01-01T00:55:00.000Z', NOW)).toBe('5m ago');
    expect(formatAgo('2025-12-31T22:00:00.000Z', NOW)).toBe('3h ago');
    expect(formatAgo('2025-12-29T01:00:00.000Z', NOW)).toBe('3d ago');
  });

  it('takes the first line that says something, cut short', () => {
    expect(firstLine('\n  hello\nworld')).toBe('hello');
    expect(firstLine('x'.repeat(200), 10)).toBe(`${'x'.repeat(9)}…`);
  });

  it('pads columns to the widest cell and leaves the last unpadded', () => {
    expect(
      table(
        ['A', 'BB'],
        [
          ['long', 'x'],
          ['s', 'yy'],
        ],
      ),
    ).toEqual(['A     BB', 'long  x', 's     yy']);
  });

  it('lists runs with id, item, pod, status, phase, started, duration and cost', () => {
    const run = runFactory({
      status: 'COMPLETED',
      phase: 'PR_RAISED',
      startedAt: '2026-01-01T00:58:00.000Z',
      durationMs: 95_000,
      cost: { tokenUsd: 0, sandboxCpuUsd: 0, sandboxMemoryUsd: 0, feeUsd: 0, totalUsd: 35_200 },
    });
    const queued = runFactory({ runId: 'run_01J0000000000000000000000B', itemId: 'ITEM-22' });
    expect(runsTable([run, queued], NOW)).toEqual([
      'RUN                             ITEM     POD    STATUS     PHASE      STARTED  DURATION  COST',
      'run_01J0000000000000000000000A  ITEM-1   pod-1  COMPLETED  PR_RAISED  2m ago   1m35s     $0.0352',
      'run_01J0000000000000000000000B  ITEM-22  pod-1  QUEUED     -          -        -         $0.0000',
    ]);
    expect(runsTable([], NOW)).toEqual(['no runs']);
  });

  it('measures a run still going from its start to now', () => {
    const run = runFactory({ status: 'RUNNING', startedAt: '2026-01-01T00:59:30.000Z' });
    expect(runsTable([run], NOW)[1]).toContain('30.0s');
  });

  it('shows a step as its seq, kind, tool and first line', () => {
    const step: StepView = {
      seq: 7,
      at: NOW.toISOString(),
      kind: 'tool_call',
      tool: 'bash',
      content: 'ls -la\nmore',
    };
    expect(stepLine(step)).toBe('#7 tool_call bash  ls -la');
    expect(stepLine({ ...step, content: '', args: { path: 'a' } })).toBe('#7 tool_call bash  {"path":"a"}');
    expect(stepLine({ ...step, content: '', tool: undefined })).toBe('#7 tool_call');
  });

  it('shows a run field by field', () => {
    const run = runFactory({
      status: 'FAILED',
      exitReason: 'tool_call_failed',
      message: 'the tool failed\nat line 2',
      usage: {
        'claude-sonnet-4-5': {
          inputTokens: 1200,
          outputTokens: 300,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          costMicroUsd: 8100,
        },
      },
      history: [
        { status: 'QUEUED', at: '2026-01-01T00:00:00.000Z' },
        { status: 'FAILED', at: '2026-01-01T00:01:00.000Z' },
      ],
    });
    const lines = runDetails(run, NOW);
    expect(lines[0]).toBe('run      run_01J0000000000000000000000A  FAILED (tool_call_failed)');
    expect(lines).toContain('tokens   claude-sonnet-4-5: 1,200 in · 300 out · $0.0081');
    expect(lines).toContain('message  the tool failed');
    expect(lines.at(-1)).toBe('history  QUEUED > FAILED');
  });

  it('colours only a terminal that wants colour', () => {
    expect(styleFor({ isTTY: true }, {})).toBe(colourStyle);
    expect(styleFor({ isTTY: true }, { NO_COLOR: '1' }).status('FAILED')).toBe('FAILED');
    expect(styleFor({ isTTY: false }, {}).status('FAILED')).toBe('FAILED');
    expect(colourStyle.status('FAILED')).toBe('\u001b[31mFAILED\u001b[0m');
    // colour does not count towards a column's width
    expect(table(['S', 'X'], [[colourStyle.status('DONE'), 'x']])[1]).toBe('\u001b[32mDONE\u001b[0m  x');
  });
});
