import { readFileSync } from 'node:fs';
import type { CfnResource } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.js';
import { DEFAULT_PRICE_TABLE_DOCUMENT, loadPriceTable } from '../../shared/domain/pricing.js';
import { FUNCTIONS, type FunctionName } from '../../shared/manifest.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const contextWith = (extra: Record<string, unknown>) => ({
  ...cdkJson.context,
  'aws:cdk:bundling-stacks': [],
  ...extra,
});

/** Each function's environment, by function name. */
const functionEnvironments = (extra: Record<string, unknown>) => {
  const { stateless } = buildApp(contextWith(extra));
  const resources = Template.fromStack(stateless).findResources('AWS::Lambda::Function');
  return Object.fromEntries(
    (Object.keys(FUNCTIONS) as FunctionName[]).map((name) => {
      const fn = stateless.functions[name].function;
      const id = stateless.getLogicalId(fn.node.defaultChild as CfnResource);
      return [name, resources[id]?.Properties.Environment.Variables as Record<string, unknown>];
    }),
  ) as Record<FunctionName, Record<string, unknown>>;
};
const pricing = (Object.keys(FUNCTIONS) as FunctionName[]).filter((name) =>
  FUNCTIONS[name].environment.includes('PRICE_TABLE'),
);

describe('the price table at deploy', () => {
  it('hands every function that prices the table given as context, checked and compacted', {
    timeout: 30_000,
  }, () => {
    const table = { ...DEFAULT_PRICE_TABLE_DOCUMENT, version: 'acme-2026-02' };
    const environments = functionEnvironments({ priceTable: JSON.stringify(table, null, 2) });
    expect(pricing).toEqual(expect.arrayContaining(['agentApi', 'finalize', 'reconcile']));
    for (const name of pricing) {
      expect(environments[name].PRICE_TABLE).toBe(JSON.stringify(table));
      expect(loadPriceTable(environments[name].PRICE_TABLE as string).version).toBe('acme-2026-02');
      expect(environments[name].POD_CPU_ARCHITECTURE).toBe('ARM64');
    }
    const others = Object.entries(environments).filter(([name]) => !pricing.includes(name as FunctionName));
    for (const [, env] of others) expect(env.PRICE_TABLE).toBeUndefined();
  });

  it('refuses to synthesize with a table that does not parse', () => {
    const bad = { ...DEFAULT_PRICE_TABLE_DOCUMENT, fee: { perRun: -1, percent: 0 } };
    expect(() => buildApp(contextWith({ priceTable: bad }))).toThrow(/price table: fee\.perRun/);
  });
});
