/**
 * The pod's log lines (its stdout and stderr, shipped to the pods' log group): each begins with its
 * run's id, so that searching the logs for a run id finds the pod's lines with the functions' and the
 * state machine's (the saved "run story" query, FilterLogEvents locally). The stream's name holds
 * only the task's id. The run's log page shows the lines without it.
 */
export const podLogPrefix = (runId: string): string => `[${runId}] `;

/** A pod log line as the run's log page shows it: without its run's prefix. */
export const podLogText = (runId: string, message: string): string => {
  const prefix = podLogPrefix(runId);
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
};
