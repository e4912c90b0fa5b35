import * as z from '../zod.js';
import { MICRO_PER_USD, priceMicro, priceMicroSum, usdToMicro } from './money.js';

/**
 * What things cost: a versioned price table turns token counts and sandbox time into integer micro-USD
 * (rounding rule in money.ts). Every priced ledger entry records the version it was priced with.
 *
 * - Tokens: per model, USD per million input, output, cache-read and cache-write tokens. A model is
 *   found by its exact name or as a dated snapshot of a listed name (`claude-sonnet-4-5-20250929`);
 *   any other model is priced at `defaultModel`. One usage entry's four lines are summed exactly and
 *   rounded once.
 * - Sandbox: Fargate USD per vCPU-hour and per GB-hour by CPU architecture, applied to the task's CPU
 *   units (1024 = 1 vCPU) and memory (1024 MiB = 1 GB) over its running time, billed per started
 *   second with a minimum (Fargate's is one minute). CPU and memory are rounded once each.
 * - Platform fee: `percent` of every priced amount, rounded on each ledger entry, plus `perRun` once
 *   for every run that had a sandbox, charged when the run settles.
 */

export const CPU_ARCHITECTURES = ['ARM64', 'X86_64'] as const;
export type CpuArchitecture = (typeof CPU_ARCHITECTURES)[number];

/** A USD amount that is a whole number of micro-USD: at most six decimal places. */
const usd = z.number().check(
  z.nonnegative(),
  z.lte(1_000_000),
  // Stryker disable next-line EqualityOperator: equivalent, < and <= differ only at exactly the float tolerance
  z.refine((value) => Math.abs(value * MICRO_PER_USD - usdToMicro(value)) < 1e-6, {
    message: 'at most six decimal places (whole micro-USD)',
  }),
);

const PERCENT_SCALE = 10_000;
const percent = z.number().check(
  z.gte(0),
  z.lte(100),
  // Stryker disable next-line EqualityOperator: equivalent, < and <= differ only at exactly the float tolerance
  z.refine((value) => Math.abs(value * PERCENT_SCALE - Math.round(value * PERCENT_SCALE)) < 1e-6, {
    message: 'at most four decimal places',
  }),
);

const modelPriceSchema = z
  .strictObject({ input: usd, output: usd, cacheRead: usd, cacheWrite: usd })
  .check(z.describe('USD per million tokens'));

const fargatePriceSchema = z.strictObject({ vcpuHour: usd, gbHour: usd });

/** The JSON document an operator supplies (CDK context `priceTable`, env `PRICE_TABLE`). */
export const priceTableSchema = z.strictObject({
  version: z.string().check(z.minLength(1), z.maxLength(100)),
  models: z.record(z.string().check(z.minLength(1), z.maxLength(200)), modelPriceSchema),
  defaultModel: modelPriceSchema,
  fargate: z.strictObject({
    ARM64: fargatePriceSchema,
    X86_64: fargatePriceSchema,
    minimumBilledSeconds: z.int().check(z.gte(0), z.lte(3600)),
  }),
  fee: z.strictObject({ perRun: usd, percent }),
});
export type PriceTableDocument = z.infer<typeof priceTableSchema>;

/** Anthropic's price for a model family: cache writes at the 5-minute rate. */
const anthropic = (input: number, output: number, cacheWrite: number, cacheRead: number) => ({
  input,
  output,
  cacheRead,
  cacheWrite,
});

/**
 * The built-in table: Anthropic API list prices (USD per million tokens, standard context; cache
 * writes at the 5-minute TTL rate) and AWS Fargate Linux on-demand prices in us-east-1, as published
 * in November 2025. The platform fee is this service's own charge; override the whole table at deploy.
 */
export const DEFAULT_PRICE_TABLE_DOCUMENT: PriceTableDocument = {
  version: 'builtin-2025-11',
  models: {
    'claude-opus-4-5': anthropic(5, 25, 6.25, 0.5),
    'claude-opus-4-1': anthropic(15, 75, 18.75, 1.5),
    'claude-opus-4': anthropic(15, 75, 18.75, 1.5),
    'claude-sonnet-4-5': anthropic(3, 15, 3.75, 0.3),
    'claude-sonnet-4': anthropic(3, 15, 3.75, 0.3),
    'claude-3-7-sonnet': anthropic(3, 15, 3.75, 0.3),
    'claude-haiku-4-5': anthropic(1, 5, 1.25, 0.1),
    'claude-3-5-haiku': anthropic(0.8, 4, 1, 0.08),
    'claude-3-haiku': anthropic(0.25, 1.25, 0.3, 0.03),
  },
  // an unlisted model is priced like a mid-range one rather than for free
  defaultModel: anthropic(3, 15, 3.75, 0.3),
  fargate: {
    ARM64: { vcpuHour: 0.03238, gbHour: 0.00356 },
    X86_64: { vcpuHour: 0.04048, gbHour: 0.004445 },
    minimumBilledSeconds: 60,
  },
  fee: { perRun: 0.01, percent: 2 },
};

/** Micro-USD per million tokens. */
export interface ModelRates {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

/** The table in integers, as the pricing functions use it. */
export interface PriceTable {
  version: string;
  models: ReadonlyMap<string, ModelRates>;
  defaultModel: ModelRates;
  /** micro-USD per vCPU-hour and per GB-hour */
  fargate: Record<CpuArchitecture, { vcpuHour: number; gbHour: number }>;
  minimumBilledSeconds: number;
  feePerRunMicroUsd: number;
  /** the fee percentage as parts per million of the priced amount */
  feePartsPerMillion: number;
}

const ratesOf = (price: PriceTableDocument['defaultModel']): ModelRates => ({
  input: usdToMicro(price.input),
  output: usdToMicro(price.output),
  cacheRead: usdToMicro(price.cacheRead),
  cacheWrite: usdToMicro(price.cacheWrite),
});

export const priceTableFrom = (doc: PriceTableDocument): PriceTable => ({
  version: doc.version,
  models: new Map(Object.entries(doc.models).map(([model, price]) => [model, ratesOf(price)])),
  defaultModel: ratesOf(doc.defaultModel),
  fargate: {
    ARM64: { vcpuHour: usdToMicro(doc.fargate.ARM64.vcpuHour), gbHour: usdToMicro(doc.fargate.ARM64.gbHour) },
    X86_64: {
      vcpuHour: usdToMicro(doc.fargate.X86_64.vcpuHour),
      gbHour: usdToMicro(doc.fargate.X86_64.gbHour),
    },
  },
  minimumBilledSeconds: doc.fargate.minimumBilledSeconds,
  feePerRunMicroUsd: usdToMicro(doc.fee.perRun),
  feePartsPerMillion: Math.round(doc.fee.percent * PERCENT_SCALE),
});

export const DEFAULT_PRICE_TABLE: PriceTable = priceTableFrom(DEFAULT_PRICE_TABLE_DOCUMENT);

/** The table a JSON document describes; empty text means the built-in table. Throws on a bad document. */
export const loadPriceTable = (json: string | undefined): PriceTable => {
  if (json === undefined || json.trim() === '') return DEFAULT_PRICE_TABLE;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new Error(`price table: not JSON (${(err as Error).message})`);
  }
  const parsed = priceTableSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`price table: ${issues.join('; ')}`);
  }
  return priceTableFrom(parsed.data);
};

const DATED_SNAPSHOT = /^-\d{8}$/;
/** Amazon Bedrock's names: a model id (`anthropic.claude-sonnet-4-5-20250929-v1:0`), or a cross-region inference profile's (`us.` before it). */
const BEDROCK_MODEL = /^(?:[a-z]{2,6}\.)?anthropic\.(.+?)-v\d+(?::\d+)?$/;

/**
 * The listed model a model is priced as: itself, or a listed name it is a dated snapshot of; a model
 * named as Amazon Bedrock names it is the Anthropic model it is. Undefined: priced at the default.
 */
export const listedModel = (table: PriceTable, model: string): string | undefined => {
  const name = model.match(BEDROCK_MODEL)?.[1] ?? model;
  if (table.models.has(name)) return name;
  for (const listed of table.models.keys()) {
    if (name.startsWith(listed) && DATED_SNAPSHOT.test(name.slice(listed.length))) return listed;
  }
  return undefined;
};

/** A model's rates: those of the listed model it is priced as, or the default. */
export const modelRates = (table: PriceTable, model: string): ModelRates => {
  const listed = listedModel(table, model);
  return (listed && table.models.get(listed)) || table.defaultModel;
};

export interface TokenCounts {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/** One priced usage entry. `tokenMicroUsd` is what the model cost; the fee is on top. */
export interface TokenCharge {
  tokenMicroUsd: number;
  feeMicroUsd: number;
  totalMicroUsd: number;
  priceTableVersion: string;
}

const TOKENS_PER_PRICE_UNIT = 1_000_000;

/** The percentage fee on a priced amount, rounded half up. */
export const percentFee = (table: PriceTable, amountMicroUsd: number): number =>
  priceMicro(amountMicroUsd, table.feePartsPerMillion, 1_000_000);

export const priceTokens = (table: PriceTable, model: string, tokens: TokenCounts): TokenCharge => {
  const rates = modelRates(table, model);
  const tokenMicroUsd = priceMicroSum(
    [
      [tokens.inputTokens, rates.input],
      [tokens.outputTokens, rates.output],
      [tokens.cacheReadTokens, rates.cacheRead],
      [tokens.cacheWriteTokens, rates.cacheWrite],
    ],
    TOKENS_PER_PRICE_UNIT,
  );
  const feeMicroUsd = percentFee(table, tokenMicroUsd);
  return {
    tokenMicroUsd,
    feeMicroUsd,
    totalMicroUsd: tokenMicroUsd + feeMicroUsd,
    priceTableVersion: table.version,
  };
};

/** A sandbox's size and how long it ran. */
export interface SandboxUse {
  /** CPU units, 1024 = 1 vCPU */
  cpu: number;
  memoryMiB: number;
  architecture: CpuArchitecture;
  runningMs: number;
}

/** What settling a run charges: its sandbox time and the per-run fee, with the percentage fee on both. */
export interface SandboxCharge {
  billedSeconds: number;
  cpuMicroUsd: number;
  memoryMicroUsd: number;
  feeMicroUsd: number;
  totalMicroUsd: number;
  priceTableVersion: string;
}

const UNITS_PER_VCPU = 1024;
const MIB_PER_GB = 1024;
const SECONDS_PER_HOUR = 3600;

/** Fargate bills each started second, with a minimum. */
export const billedSeconds = (table: PriceTable, runningMs: number): number =>
  Math.max(table.minimumBilledSeconds, Math.ceil(Math.max(0, runningMs) / 1000));

export const priceSandbox = (table: PriceTable, use: SandboxUse): SandboxCharge => {
  const seconds = billedSeconds(table, use.runningMs);
  const rates = table.fargate[use.architecture];
  const cpuMicroUsd = priceMicro(use.cpu * seconds, rates.vcpuHour, UNITS_PER_VCPU * SECONDS_PER_HOUR);
  const memoryMicroUsd = priceMicro(use.memoryMiB * seconds, rates.gbHour, MIB_PER_GB * SECONDS_PER_HOUR);
  const feeMicroUsd = table.feePerRunMicroUsd + percentFee(table, cpuMicroUsd + memoryMicroUsd);
  return {
    billedSeconds: seconds,
    cpuMicroUsd,
    memoryMicroUsd,
    feeMicroUsd,
    totalMicroUsd: cpuMicroUsd + memoryMicroUsd + feeMicroUsd,
    priceTableVersion: table.version,
  };
};

/** Hourly spend buckets are named by the UTC hour they cover: `YYYY-MM-DDTHH`. */
export const spendHour = (at: Date): string => at.toISOString().slice(0, 13);

const HOUR_MS = 3_600_000;

/** The trailing windows spend is capped and reported over, in hours: the current hour and those before it. */
export const SPEND_WINDOWS = { '24h': 24, '30d': 720 } as const;
export type SpendWindow = keyof typeof SPEND_WINDOWS;

/** The first and last hourly bucket of a trailing window ending now, and when its first hour began. */
export const windowHours = (now: Date, hours: number): { from: string; to: string; startsAt: string } => {
  const first = new Date(Math.floor(now.getTime() / HOUR_MS) * HOUR_MS - (hours - 1) * HOUR_MS);
  return { from: spendHour(first), to: spendHour(now), startsAt: first.toISOString() };
};
