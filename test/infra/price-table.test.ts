import { readFileSync } from 'node:fs';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.js';
import { DEFAULT_PRICE_TABLE_DOCUMENT, loadPriceTable } from '../../shared/domain/pricing.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const contextWith = (extra: Record<string, unknown>) => ({
  ...cdkJson.context,
  'aws:cdk:bundling-stacks': [],
  ...extra,
});

const functionEnvironments = (extra: Record<string, unknown>) => {
  const { stateless } = buildApp(contextWith(extra));
  return Object.values(Template.fromStack(stateless).findResources('AWS::Lambda::Function')).map(
    (fn) => fn.Properties.Environment.Variables as Record<string, unknown>,
  );
};

describe('the price table at deploy', () => {
  it('hands every function the table given as context, checked and compacted', { timeout: 30_000 }, () => {
    const table = { ...DEFAULT_PRICE_TABLE_DOCUMENT, version: 'acme-2026-02' };
    const environments = functionEnvironments({ priceTable: JSON.stringify(table, null, 2) });
    expect(new Set(environments.map((env) => env.PRICE_TABLE))).toEqual(new Set([JSON.stringify(table)]));
    expect(loadPriceTable(environments[0]?.PRICE_TABLE as string).version).toBe('acme-2026-02');
    expect(environments.every((env) => env.POD_CPU_ARCHITECTURE === 'ARM64')).toBe(true);
  });

  it('refuses to synthesize with a table that does not parse', () => {
    const bad = { ...DEFAULT_PRICE_TABLE_DOCUMENT, fee: { perRun: -1, percent: 0 } };
    expect(() => buildApp(contextWith({ priceTable: bad }))).toThrow(/price table: fee\.perRun/);
  });
});
