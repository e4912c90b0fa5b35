import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { podLogText } from '../../shared/schemas/pod-log.js';
import { runLines } from './run-lines.js';

describe('runLines', () => {
  it('begins every line with the run id, however the chunks split the lines', async () => {
    const output = new PassThrough();
    const lines = runLines(output, 'run_1');
    for (const chunk of ['pod: phase PLANNING\nagent: wri', 'ting\n', '', 'a\nb\n']) lines.write(chunk);
    expect(output.read()?.toString()).toBe(
      '[run_1] pod: phase PLANNING\n[run_1] agent: writing\n[run_1] a\n[run_1] b\n',
    );
  });

  it('is left out of the run’s log page', () => {
    expect(podLogText('run_1', '[run_1] pod: phase PLANNING')).toBe('pod: phase PLANNING');
    expect(podLogText('run_1', 'a line of another kind')).toBe('a line of another kind');
  });
});
