import { ulid } from 'ulid';
import { describe, expect, it } from 'vitest';
import { newRunId, RUN_ID_PATTERN, runIdLowerBound } from '../../shared/domain/ids.js';
import { formatUsd, priceMicro, priceMicroSum, usdToMicro } from '../../shared/domain/money.js';

describe('money in micro-USD', () => {
  it('prices tokens per million exactly, rounding half up once', () => {
    // 1,234,567 tokens at $3 per million = $3.703701 exactly
    expect(priceMicro(1_234_567, 3_000_000, 1_000_000)).toBe(3_703_701);
    // 1 token at $0.50 per million = 0.5 micro-USD -> rounds up to 1
    expect(priceMicro(1, 500_000, 1_000_000)).toBe(1);
    // 1 token at $0.49 per million -> 0
    expect(priceMicro(1, 490_000, 1_000_000)).toBe(0);
  });

  it('stays exact beyond floating point range for large counts', () => {
    expect(priceMicro(9_007_199_254, 15_000_000, 1_000_000)).toBe(135_107_988_810);
  });

  it.each([
    ['a negative quantity', -5, 1_000_000],
    ['a negative price', 5, -1_000_000],
    ['no quantity', 0, 1_000_000],
    ['no price', 5, 0],
  ])('charges nothing for %s', (_, quantity, microUsdPerUnit) => {
    expect(priceMicro(quantity, microUsdPerUnit, 1_000_000)).toBe(0);
    expect(priceMicroSum([[quantity, microUsdPerUnit]], 1_000_000)).toBe(0);
  });

  it('leaves a line with a negative quantity or price out of a sum', () => {
    const sum = priceMicroSum(
      [
        [2, 1_000_000],
        [-3, 1_000_000],
        [3, -1_000_000],
      ],
      1,
    );
    expect(sum).toBe(2_000_000);
  });

  it('converts and formats dollars', () => {
    expect(usdToMicro(0.0003)).toBe(300);
    expect(formatUsd(1_500_000)).toBe('$1.500000');
  });
});

describe('run ids', () => {
  it('are run_ + ULID and sort by creation time', () => {
    const a = newRunId(1_700_000_000_000);
    const b = newRunId(1_700_000_000_001);
    expect(a).toMatch(RUN_ID_PATTERN);
    expect(a < b).toBe(true);
  });

  it.each([
    ['a run id', 'run_01HF7YAT00ABCDEFGHJKMNPQRS', true],
    ['text before the prefix', 'xrun_01HF7YAT00ABCDEFGHJKMNPQRS', false],
    ['a character more', 'run_01HF7YAT00ABCDEFGHJKMNPQRST', false],
    ['a character less', 'run_01HF7YAT00ABCDEFGHJKMNPQR', false],
    ['a letter Crockford leaves out', 'run_01HF7YAT00ABCDEFGHJKMNPQRU', false],
    ['lower case', 'run_01hf7yat00abcdefghjkmnpqrs', false],
  ])('are told apart from other text: %s', (_, text, matches) => {
    expect(RUN_ID_PATTERN.test(text)).toBe(matches);
  });

  it('have as lower bound per instant the smallest run id of that instant', () => {
    expect(runIdLowerBound(1_700_000_000_000)).toBe(
      `run_${ulid(1_700_000_000_000).slice(0, 10)}${'0'.repeat(16)}`,
    );
    expect(runIdLowerBound(0)).toBe(`run_${'0'.repeat(26)}`);
    expect(runIdLowerBound(-5)).toBe(`run_${'0'.repeat(26)}`);
    expect(runIdLowerBound(1_700_000_000_000)).toMatch(RUN_ID_PATTERN);
  });

  it('have a lower bound per instant that sorts before every id created then or later', () => {
    const bound = runIdLowerBound(1_700_000_000_000);
    expect(bound <= newRunId(1_700_000_000_000)).toBe(true);
    expect(bound > `run_${ulid(1_699_999_999_999)}`).toBe(true);
  });
});
