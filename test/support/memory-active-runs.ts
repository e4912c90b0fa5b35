import type { ActiveRun, ActiveRuns } from '../../shared/ports.js';

/** The accounts' active-run slots in memory, taken and given back on the same terms as in DynamoDB. */
export class MemoryActiveRuns implements ActiveRuns {
  readonly slots = new Map<string, Map<string, ActiveRun>>();
  readonly waiting = new Map<string, Map<string, string>>();

  async take(accountId: string, run: ActiveRun, limit: number): Promise<boolean> {
    const held = this.of(this.slots, accountId);
    const waiting = this.of(this.waiting, accountId);
    if (held.has(run.runId)) return true;
    if (limit > 0 && held.size >= limit) {
      if (!waiting.has(run.runId)) waiting.set(run.runId, run.since);
      return false;
    }
    held.set(run.runId, { ...run });
    waiting.delete(run.runId);
    return true;
  }

  async release(accountId: string, runId: string): Promise<string | undefined> {
    return this.of(this.slots, accountId).delete(runId) ? this.longestWaiting(accountId) : undefined;
  }

  async forget(accountId: string, runId: string): Promise<string | undefined> {
    return this.of(this.waiting, accountId).delete(runId) ? this.longestWaiting(accountId) : undefined;
  }

  async active(accountId: string): Promise<ActiveRun[]> {
    return [...this.of(this.slots, accountId).values()].map((slot) => ({ ...slot }));
  }

  private longestWaiting(accountId: string): string | undefined {
    return [...this.of(this.waiting, accountId)].sort(
      ([a, x], [b, y]) => x.localeCompare(y) || a.localeCompare(b),
    )[0]?.[0];
  }

  private of<T>(byAccount: Map<string, Map<string, T>>, accountId: string): Map<string, T> {
    let found = byAccount.get(accountId);
    if (!found) {
      found = new Map();
      byAccount.set(accountId, found);
    }
    return found;
  }
}
