/** What following runs and following logs over the WebSocket API share. */

/** API Gateway closes every connection after two hours; its records go a little after. */
export const CONNECTION_TTL_SECONDS = 2 * 3600 + 600;

export const later = (now: Date, seconds: number) => new Date(now.getTime() + seconds * 1000);

/**
 * A follow's catch-up stops after this long, inside the WebSocket function's 29 s, and says so; the
 * client follows again from the last it has.
 */
export const CATCH_UP_MS = 20_000;

export const catchUpUnfinished = (runId: string, resumeWith: string) => ({
  type: 'error' as const,
  code: 'CatchUpUnfinished',
  message: `the backlog is long: follow again with after set to ${resumeWith}`,
  runId,
});

/** How many followers are sent to at once. */
export const FAN_OUT_CONCURRENCY = 25;

export const inBatches = async <T>(
  items: readonly T[],
  size: number,
  each: (item: T) => Promise<unknown>,
) => {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
};
