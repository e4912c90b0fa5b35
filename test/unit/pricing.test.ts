import { describe, expect, it } from 'vitest';
import { priceMicroSum } from '../../shared/domain/money.js';
import {
  billedSeconds,
  DEFAULT_PRICE_TABLE,
  DEFAULT_PRICE_TABLE_DOCUMENT,
  loadPriceTable,
  modelRates,
  type PriceTableDocument,
  percentFee,
  priceSandbox,
  priceTableSchema,
  priceTokens,
  windowHours,
} from '../../shared/domain/pricing.js';
import * as z from '../../shared/zod.js';

const table = DEFAULT_PRICE_TABLE;
const tokens = (input: number, output = 0, cacheRead = 0, cacheWrite = 0) => ({
  inputTokens: input,
  outputTokens: output,
  cacheReadTokens: cacheRead,
  cacheWriteTokens: cacheWrite,
});
const withTable = (change: (doc: PriceTableDocument) => void) => {
  const doc = structuredClone(DEFAULT_PRICE_TABLE_DOCUMENT);
  change(doc);
  return loadPriceTable(JSON.stringify(doc));
};

describe('priceMicroSum', () => {
  it('sums the lines exactly and rounds once, half up', () => {
    // 0.25 + 0.3 = 0.55 micro-USD: rounding each line would give 0
    expect(
      priceMicroSum(
        [
          [1, 250_000],
          [1, 300_000],
        ],
        1_000_000,
      ),
    ).toBe(1);
    expect(priceMicroSum([[2, 250_000]], 1_000_000)).toBe(1);
    expect(
      priceMicroSum(
        [
          [1, 250_000],
          [1, 240_000],
        ],
        1_000_000,
      ),
    ).toBe(0);
    expect(
      priceMicroSum(
        [
          [-5, 1_000_000],
          [3, 0],
        ],
        1_000_000,
      ),
    ).toBe(0);
  });
});

describe('priceTokens', () => {
  it('prices input, output, cache-read and cache-write tokens per million, with the percentage fee', () => {
    // 1,234,567 × $3 + 89,012 × $15 + 345,678 × $0.30 + 9,876 × $3.75 per million = $5.1796194
    const charge = priceTokens(table, 'claude-sonnet-4-5', tokens(1_234_567, 89_012, 345_678, 9_876));
    expect(charge).toEqual({
      tokenMicroUsd: 5_179_619,
      // 2 % of 5,179,619 = 103,592.38
      feeMicroUsd: 103_592,
      totalMicroUsd: 5_283_211,
      priceTableVersion: 'builtin-2025-11',
    });
  });

  it('rounds an entry once over all its lines', () => {
    // claude-3-haiku: 1 input token ($0.25/M) + 1 cache-write token ($0.30/M) = 0.55 micro-USD
    expect(priceTokens(table, 'claude-3-haiku', tokens(1, 0, 0, 1)).tokenMicroUsd).toBe(1);
    // 0.5 rounds up, 0.4 down
    expect(priceTokens(table, 'claude-3-haiku', tokens(2)).tokenMicroUsd).toBe(1);
    expect(priceTokens(table, 'claude-haiku-4-5', tokens(0, 0, 4)).tokenMicroUsd).toBe(0);
  });

  it('prices a large count exactly', () => {
    // 3,000,000,001 output tokens of Opus 4.1 at $75 per million = $225,000.000075
    expect(priceTokens(table, 'claude-opus-4-1', tokens(0, 3_000_000_001)).tokenMicroUsd).toBe(
      225_000_000_075,
    );
  });

  it('charges nothing for no tokens', () => {
    expect(priceTokens(table, 'claude-sonnet-4-5', tokens(0))).toMatchObject({
      tokenMicroUsd: 0,
      feeMicroUsd: 0,
      totalMicroUsd: 0,
    });
  });
});

describe('modelRates', () => {
  it('finds a model by name or as a dated snapshot of a listed name, else uses the default', () => {
    expect(modelRates(table, 'claude-opus-4-5').input).toBe(5_000_000);
    expect(modelRates(table, 'claude-opus-4-5-20251101').input).toBe(5_000_000);
    expect(modelRates(table, 'claude-opus-4-20250514').input).toBe(15_000_000);
    expect(modelRates(table, 'claude-haiku-4-5-20251001').output).toBe(5_000_000);
    // an unlisted version is not taken for a listed one with a shorter name
    expect(modelRates(table, 'claude-opus-4-7')).toBe(table.defaultModel);
    expect(modelRates(table, 'demo-model')).toBe(table.defaultModel);
  });

  it('prices a model named as Amazon Bedrock names it as the Anthropic model it is', () => {
    expect(modelRates(table, 'anthropic.claude-opus-4-5-20251101-v1:0').input).toBe(5_000_000);
    expect(modelRates(table, 'us.anthropic.claude-haiku-4-5-20251001-v1:0').output).toBe(5_000_000);
    expect(modelRates(table, 'global.anthropic.claude-opus-4-20250514-v1:0').input).toBe(15_000_000);
    expect(modelRates(table, 'us.meta.llama3-70b-instruct-v1:0')).toBe(table.defaultModel);
    expect(modelRates(table, 'anthropic.claude-opus-4-5')).toBe(table.defaultModel);
  });

  it.each([
    ['more after the date', 'claude-opus-4-5-20251101-beta'],
    ['a longer number', 'claude-opus-4-5-202511010'],
    ['a shorter number', 'claude-opus-4-5-2025110'],
    ['more before the date', 'claude-opus-4-5-x-20251101'],
  ])('takes no name with %s for a dated snapshot', (_, model) => {
    expect(modelRates(table, model)).toBe(table.defaultModel);
  });
});

describe('priceSandbox', () => {
  it('prices ARM64 vCPU and GB time per started second, with the per-run and percentage fees', () => {
    // 1 vCPU, 2 GB for 90.5 s, billed 91 s: 91 × $0.03238 / 3600 = 818.49, 2 × 91 × $0.00356 / 3600 = 179.98
    expect(
      priceSandbox(table, { cpu: 1024, memoryMiB: 2048, architecture: 'ARM64', runningMs: 90_500 }),
    ).toEqual({
      billedSeconds: 91,
      cpuMicroUsd: 818,
      memoryMicroUsd: 180,
      // $0.01 + 2 % of 998 (19.96)
      feeMicroUsd: 10_020,
      totalMicroUsd: 11_018,
      priceTableVersion: 'builtin-2025-11',
    });
  });

  it('bills the one-minute minimum for a short run', () => {
    const charge = priceSandbox(table, {
      cpu: 1024,
      memoryMiB: 2048,
      architecture: 'ARM64',
      runningMs: 1200,
    });
    // 60 × $0.03238 / 3600 = 539.67; 2 × 60 × $0.00356 / 3600 = 118.67; fee $0.01 + 2 % of 659 = 13.18
    expect(charge).toMatchObject({
      billedSeconds: 60,
      cpuMicroUsd: 540,
      memoryMicroUsd: 119,
      feeMicroUsd: 10_013,
    });
    expect(charge.totalMicroUsd).toBe(10_672);
  });

  it('prices X86_64 at its own rates', () => {
    // 4 vCPU, 30 GB for exactly one hour
    expect(
      priceSandbox(table, { cpu: 4096, memoryMiB: 30_720, architecture: 'X86_64', runningMs: 3_600_000 }),
    ).toMatchObject({
      cpuMicroUsd: 161_920,
      memoryMicroUsd: 133_350,
      feeMicroUsd: 15_905,
      totalMicroUsd: 311_175,
    });
  });

  it('prices a quarter vCPU, rounding half up', () => {
    // 0.25 × 60 × $0.03238 / 3600 = 134.92; 0.5 GB: 0.5 × 60 × $0.00356 / 3600 = 29.67
    expect(
      priceSandbox(table, { cpu: 256, memoryMiB: 512, architecture: 'ARM64', runningMs: 0 }),
    ).toMatchObject({ cpuMicroUsd: 135, memoryMicroUsd: 30 });
  });
});

describe('billedSeconds', () => {
  it('counts each started second, at least the minimum', () => {
    expect(billedSeconds(table, 0)).toBe(60);
    expect(billedSeconds(table, 60_001)).toBe(61);
    expect(billedSeconds(table, 120_000)).toBe(120);
    expect(
      billedSeconds(
        withTable((d) => {
          d.fargate.minimumBilledSeconds = 0;
        }),
        1,
      ),
    ).toBe(1);
  });
});

describe('percentFee', () => {
  it('takes a percentage with up to four decimals, rounding half up', () => {
    const fees = withTable((d) => {
      d.fee.percent = 2.5;
    });
    expect(fees.feePartsPerMillion).toBe(25_000);
    expect(percentFee(fees, 20)).toBe(1); // 0.5
    expect(percentFee(fees, 19)).toBe(0); // 0.475
    expect(
      percentFee(
        withTable((d) => {
          d.fee.percent = 0.0001;
        }),
        5_000_000,
      ),
    ).toBe(5);
  });
});

describe('loadPriceTable', () => {
  it('uses the built-in table when none is given', () => {
    expect(loadPriceTable(undefined)).toBe(DEFAULT_PRICE_TABLE);
    expect(loadPriceTable('  ')).toBe(DEFAULT_PRICE_TABLE);
  });

  it('reads a table, and its entries are priced with its version', () => {
    const custom = withTable((d) => {
      d.version = 'acme-2026-01';
      d.models = { 'model-a': { input: 1.5, output: 2, cacheRead: 0, cacheWrite: 0 } };
      d.fee = { perRun: 0, percent: 0 };
    });
    expect(priceTokens(custom, 'model-a', tokens(1_000_000, 500_000))).toEqual({
      tokenMicroUsd: 2_500_000,
      feeMicroUsd: 0,
      totalMicroUsd: 2_500_000,
      priceTableVersion: 'acme-2026-01',
    });
  });

  it('refuses prices finer than a micro-USD, unknown fields and text that is not JSON', () => {
    const bad = structuredClone(DEFAULT_PRICE_TABLE_DOCUMENT);
    bad.fargate.ARM64.gbHour = 0.0000001;
    expect(() => loadPriceTable(JSON.stringify(bad))).toThrow(/fargate\.ARM64\.gbHour: at most six decimal/);
    expect(() =>
      loadPriceTable(JSON.stringify({ ...DEFAULT_PRICE_TABLE_DOCUMENT, currency: 'EUR' })),
    ).toThrow(/price table/);
    expect(() => loadPriceTable('{version')).toThrow(/not JSON/);
  });

  it('refuses a fee percentage with more than four decimals', () => {
    const bad = structuredClone(DEFAULT_PRICE_TABLE_DOCUMENT);
    bad.fee.percent = 2.00001;
    expect(() => loadPriceTable(JSON.stringify(bad))).toThrow(
      'price table: fee.percent: at most four decimal places',
    );
  });

  it('names every problem of a document, and the document itself when it is not an object', () => {
    const bad = structuredClone(DEFAULT_PRICE_TABLE_DOCUMENT);
    bad.version = '';
    bad.fargate.minimumBilledSeconds = -1;
    expect(() => loadPriceTable(JSON.stringify(bad))).toThrow(
      /^price table: version: [^;]+; fargate\.minimumBilledSeconds: [^;]+$/,
    );
    expect(() => loadPriceTable('42')).toThrow(/^price table: \(root\): /);
  });

  it('describes its model prices as USD per million tokens to whoever reads its schema', () => {
    const schema = z.toJSONSchema(priceTableSchema) as {
      properties: Record<string, { description?: string }>;
    };
    expect(schema.properties.defaultModel?.description).toBe('USD per million tokens');
  });
});

describe('windowHours', () => {
  it('spans the current UTC hour and the ones before it', () => {
    const now = new Date('2026-03-01T05:30:00Z');
    expect(windowHours(now, 24)).toEqual({
      from: '2026-02-28T06',
      to: '2026-03-01T05',
      startsAt: '2026-02-28T06:00:00.000Z',
    });
    expect(windowHours(now, 720).from).toBe('2026-01-30T06');
    expect(windowHours(now, 1)).toMatchObject({ from: '2026-03-01T05', to: '2026-03-01T05' });
  });
});
