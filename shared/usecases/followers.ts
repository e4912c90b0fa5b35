/** What following runs and following logs over the WebSocket API share. */

/** API Gateway closes every connection after two hours; its records go a little after. */
export const CONNECTION_TTL_SECONDS = 2 * 3600 + 600;

export const later = (now: Date, seconds: number) => new Date(now.getTime() + seconds * 1000);

/** How many followers are sent to at once. */
export const FAN_OUT_CONCURRENCY = 25;

export const inBatches = async <T>(
  items: readonly T[],
  size: number,
  each: (item: T) => Promise<unknown>,
) => {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
};
