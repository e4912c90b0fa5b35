import { performance } from 'node:perf_hooks';
import { type ProxyServer, startProxy } from './proxy.js';

/**
 * Counts what pods ask of the Agent API, per run and per kind of request. Pods get the meter's URL
 * as their `AGENT_API_URL`, so every request they make passes through it unchanged.
 */

export interface AgentTraffic {
  /** GET /agent/v1/runs/{runId}: the frozen config, once per pod */
  config: number;
  /** POST .../events carrying anything besides heartbeats */
  eventBatches: number;
  /** POST .../events carrying heartbeats only */
  heartbeatBatches: number;
  /** GET .../control while waiting */
  control: number;
  /** events delivered, heartbeats included (repeats after a retry count again) */
  events: number;
  /** performance.now() when the first events request arrived and when the last one was answered */
  firstEventsAt?: number;
  lastEventsAt?: number;
  /** time spent answering events requests (one is in flight at a time per pod) */
  eventsBusyMs?: number;
}

/** An events request the Agent API answered: the seqs it carried, and when (epoch ms) the answer came. */
export interface AnsweredBatch {
  firstSeq: number;
  lastSeq: number;
  answeredAt: number;
}

export interface AgentMeter {
  url: string;
  /** traffic of one run so far */
  run(runId: string): AgentTraffic;
  /** the run's events requests answered with 2xx, in the order of their answers */
  batches(runId: string): AnsweredBatch[];
  /** all runs together */
  totals(): AgentTraffic;
  close(): Promise<void>;
}

const ROUTE = /^\/agent\/v1\/runs\/([^/?]+)(\/events|\/control)?(?:\?|$)/;

const empty = (): AgentTraffic => ({
  config: 0,
  eventBatches: 0,
  heartbeatBatches: 0,
  control: 0,
  events: 0,
});

export const startAgentMeter = async (apiUrl: string): Promise<AgentMeter> => {
  const byRun = new Map<string, AgentTraffic>();
  const answered = new Map<string, AnsweredBatch[]>();
  const proxy: ProxyServer = await startProxy(apiUrl, async (exchange, forward) => {
    const match = ROUTE.exec(exchange.url);
    if (!match) return forward();
    const runId = decodeURIComponent(match[1] as string);
    const traffic = byRun.get(runId) ?? empty();
    byRun.set(runId, traffic);
    if (match[2] === '/control') traffic.control += 1;
    else if (match[2] === '/events') {
      const arrived = performance.now();
      traffic.firstEventsAt ??= arrived;
      const { events = [] } = JSON.parse(exchange.body.toString('utf8') || '{}') as {
        events?: { type?: string; seq?: number }[];
      };
      traffic.events += events.length;
      if (events.every((e) => e.type === 'heartbeat')) traffic.heartbeatBatches += 1;
      else traffic.eventBatches += 1;
      const answer = await forward();
      traffic.lastEventsAt = performance.now();
      traffic.eventsBusyMs = (traffic.eventsBusyMs ?? 0) + traffic.lastEventsAt - arrived;
      const seqs = events.map((e) => e.seq).filter((seq): seq is number => typeof seq === 'number');
      if (answer.status < 300 && seqs.length > 0) {
        const batches = answered.get(runId) ?? [];
        answered.set(runId, batches);
        batches.push({ firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), answeredAt: Date.now() });
      }
      return answer;
    } else traffic.config += 1;
    return forward();
  });
  return {
    url: proxy.url,
    run: (runId) => ({ ...(byRun.get(runId) ?? empty()) }),
    batches: (runId) => [...(answered.get(runId) ?? [])],
    totals: () => {
      const sum = empty();
      for (const t of byRun.values()) {
        sum.config += t.config;
        sum.eventBatches += t.eventBatches;
        sum.heartbeatBatches += t.heartbeatBatches;
        sum.control += t.control;
        sum.events += t.events;
      }
      return sum;
    },
    close: () => proxy.close(),
  };
};
