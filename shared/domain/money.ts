/**
 * Money is integer micro-USD (1 USD = 1,000,000). Rounding rule: every priced quantity is
 * rounded half up to a whole micro-USD once, where it is priced; sums of rounded figures are exact.
 * A ledger entry priced from several lines (input, output and cache tokens) sums the lines exactly
 * and rounds that sum once (`priceMicroSum`); a percentage is priced like a unit price per million.
 */
export const MICRO_PER_USD = 1_000_000;

export const usdToMicro = (usd: number): number => Math.round(usd * MICRO_PER_USD);

/** Price `quantity` units at `microUsdPerUnit / per` each, rounded half up to a whole micro-USD. */
export const priceMicro = (quantity: number, microUsdPerUnit: number, per = 1): number => {
  // Stryker disable next-line EqualityOperator: equivalent at 0, which the formula below prices at 0 too
  if (quantity <= 0 || microUsdPerUnit <= 0) return 0;
  // Integer arithmetic where possible; BigInt keeps large token counts exact.
  const numerator = BigInt(Math.round(quantity)) * BigInt(Math.round(microUsdPerUnit));
  const divisor = BigInt(per);
  return Number((numerator * 2n + divisor) / (divisor * 2n));
};

/** The exact sum of `quantity × microUsdPerUnit / per` over the lines, rounded half up once. */
export const priceMicroSum = (
  lines: readonly (readonly [quantity: number, microUsdPerUnit: number])[],
  per = 1,
): number => {
  let numerator = 0n;
  for (const [quantity, microUsdPerUnit] of lines) {
    // Stryker disable next-line EqualityOperator: equivalent at 0, a line of 0 adds 0 either way
    if (quantity > 0 && microUsdPerUnit > 0)
      numerator += BigInt(Math.round(quantity)) * BigInt(Math.round(microUsdPerUnit));
  }
  const divisor = BigInt(per);
  return Number((numerator * 2n + divisor) / (divisor * 2n));
};

export const formatUsd = (micro: number): string => `$${(micro / MICRO_PER_USD).toFixed(6)}`;

/** A run's cost as people read it (the run keeps its cost in dollars): to the hundredth of a cent. */
export const formatRunCost = (usd: number): string => `$${usd.toFixed(4)}`;
