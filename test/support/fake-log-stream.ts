import type { LogEvent, LogEventsPage, LogEventsRequest, LogReader } from '../../shared/ports.js';

/**
 * A log stream that pages as CloudWatch's GetLogEvents does: tokens are positions between events, at
 * either end the answer repeats the token it was given, and (with `stutter`) a call may come back empty
 * with a new token although more events lie beyond it.
 */
export class FakeStream implements LogReader {
  readonly events: LogEvent[] = [];
  readonly requests: LogEventsRequest[] = [];
  exists = true;
  stutter = false;
  private stuttered = new Set<string>();

  constructor(public name: string) {}

  write(count: number, from = this.events.length + 1) {
    for (let n = from; n < from + count; n++) this.events.push({ timestamp: n, message: `line ${n}` });
  }

  async getEvents(request: LogEventsRequest): Promise<LogEventsPage | undefined> {
    this.requests.push(request);
    if (!this.exists || request.logStream !== this.name) return undefined;
    const { token, forward, limit } = request;
    if (this.stutter && token !== undefined && !this.stuttered.has(token)) {
      this.stuttered.add(token);
      const moved = `${token}'`;
      this.stuttered.add(moved);
      return { events: [], nextForwardToken: moved, nextBackwardToken: moved };
    }
    const position =
      token === undefined ? (forward ? 0 : this.events.length) : Number(/\d+/.exec(token)?.[0]);
    let start = position;
    let end = position;
    if (forward) end = Math.min(this.events.length, position + limit);
    else start = Math.max(0, position - limit);
    const atEnd = token !== undefined && start === end;
    return {
      events: this.events.slice(start, end),
      nextForwardToken: atEnd && forward ? token : `f/${end}`,
      nextBackwardToken: atEnd && !forward ? token : `b/${start}`,
    };
  }
}
