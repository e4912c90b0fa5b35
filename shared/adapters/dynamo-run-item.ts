import { type ModelUsage, noUsage, type Run, type RunCost, ZERO_COST } from '../domain/run.js';
import { TABLE } from '../manifest.js';
import type { RunSecrets } from '../ports.js';
import { compact, keys, runIndexAttributes } from './dynamo-keys.js';

/*
 * The run item (`RUN#<runId>` / `RUN`), shared by the run store, which writes it, and the run lists,
 * which read it: scalar attributes, `status` and its `history` (appended by each transition),
 * `version` (+1 on every write), `artifacts`, `seqs` (the event seqs recorded, as ranges) and
 * `lastSeq`; usage and cost as FLAT numbers `usage:<model>:<field>` and `cost:<field>`, so concurrent
 * ADDs never need a parent map to exist; the list index keys. Also the secrets (RunSecrets), which no
 * Run read from here ever carries.
 */

export const USAGE_FIELDS = [
  'inputTokens',
  'outputTokens',
  'cacheReadTokens',
  'cacheWriteTokens',
  'costMicroUsd',
] as const satisfies readonly (keyof ModelUsage)[];
export const COST_FIELDS = Object.keys(ZERO_COST) as (keyof RunCost)[];

export const usageAttribute = (model: string, field: keyof ModelUsage) => `usage:${model}:${field}`;
export const costAttribute = (field: keyof RunCost) => `cost:${field}`;

export const SECRET_ATTRIBUTES = [
  'podTaskToken',
  'agentTokenHash',
  'launchCodeHash',
] as const satisfies readonly (keyof RunSecrets)[];

/** Attributes that exist for the table's sake, not the Run's. */
const HIDDEN_ATTRIBUTES: ReadonlySet<string> = new Set([
  TABLE.partitionKey,
  TABLE.sortKey,
  ...TABLE.globalSecondaryIndexes.map((index) => index.partitionKey),
  ...SECRET_ATTRIBUTES,
]);

export const toRunItem = (run: Run): Record<string, unknown> => {
  const { usage, cost, ...scalars } = run;
  const item: Record<string, unknown> = {
    ...compact(scalars),
    ...keys.run(run.runId),
    ...runIndexAttributes(run),
  };
  for (const [model, totals] of Object.entries(usage)) {
    for (const field of USAGE_FIELDS) item[usageAttribute(model, field)] = totals[field];
  }
  for (const field of COST_FIELDS) item[costAttribute(field)] = cost[field];
  return item;
};

export const fromRunItem = (item: Record<string, unknown>): Run => {
  const run: Record<string, unknown> = {};
  const usage: Record<string, ModelUsage> = {};
  const cost: RunCost = { ...ZERO_COST };
  for (const [name, value] of Object.entries(item)) {
    if (HIDDEN_ATTRIBUTES.has(name)) continue;
    if (name.startsWith('usage:')) {
      // the model name may itself hold ':'; the field is after the last one
      const rest = name.slice('usage:'.length);
      const cut = rest.lastIndexOf(':');
      const model = rest.slice(0, cut);
      const field = rest.slice(cut + 1) as keyof ModelUsage;
      usage[model] ??= noUsage();
      usage[model][field] = Number(value);
    } else if (name.startsWith('cost:')) {
      cost[name.slice('cost:'.length) as keyof RunCost] = Number(value);
    } else {
      run[name] = value;
    }
  }
  return { ...run, usage, cost } as Run;
};

export const secretsOf = (item: Record<string, unknown>): RunSecrets => {
  const secrets: RunSecrets = {};
  for (const name of SECRET_ATTRIBUTES) {
    const value = item[name];
    if (typeof value === 'string') secrets[name] = value;
  }
  return secrets;
};
