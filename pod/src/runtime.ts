import { setTimeout as sleep } from 'node:timers/promises';
import type { Control, GitCredential, PodRunConfig } from '../../shared/schemas/agent-events.js';
import { type Agent, AgentCrash } from './agent.js';
import { type AgentApi, backoffMs, InvalidAnswerError, RetryableError, RunGoneError } from './agent-api.js';
import { agentFor } from './agents/index.js';
import { Masker } from './masking.js';
import { Reporter, type ReporterOptions } from './reporter.js';
import { MODEL_PROVIDER_SECRETS, type RunContext, runSession } from './session.js';

export interface PodTiming
  extends Pick<ReporterOptions, 'flushIntervalMs' | 'maxBatchEvents' | 'retryBaseMs' | 'retryMaxMs'> {
  /** how long the last delivery may take once the pod has been told to end (ECS waits 30 s by default) */
  finalFlushMs?: number;
  /** how often to ask for control while waiting, when the backend names no interval */
  pollMs?: number;
}

export interface PodOptions {
  runId: string;
  /** the Agent API, with the run-scoped token already in hand */
  api: AgentApi;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** the container's environment: where the task definition put the pod's secrets */
  env?: Record<string, string | undefined>;
  /** aborted when the container is asked to stop (SIGTERM) */
  terminate?: AbortSignal;
  /** the agent to run instead of the one the run's config names */
  agent?: Agent;
  timing?: PodTiming;
}

/** Why the pod ended before its agent finished. */
class PodEnd extends Error {
  constructor(
    readonly kind: 'stopped' | 'terminated' | 'gone',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The pod's life: fetch the run's frozen config, run the agent while reporting its events and
 * heartbeats, obey control, and end cleanly. Resolves to the process exit code: 0 when the agent
 * finished or was told to end, 1 when it crashed or failed unexpectedly.
 */
export const runPod = async (options: PodOptions): Promise<number> => {
  const masker = new Masker();
  const log = (line: string) => void options.stdout.write(`${masker.text(line)}\n`);
  const warn = (line: string) => void options.stderr.write(`${masker.text(line)}\n`);
  const env = options.env ?? {};
  const timing = options.timing ?? {};
  const finalFlushMs = timing.finalFlushMs ?? 5000;
  const pollMs = timing.pollMs ?? 5000;
  const retryBaseMs = timing.retryBaseMs ?? 250;
  const retryMaxMs = timing.retryMaxMs ?? 10_000;
  const { api } = options;

  const lifetime = new AbortController();
  const end = (reason: PodEnd) => {
    if (!lifetime.signal.aborted) lifetime.abort(reason);
  };
  const onTerminate = () => end(new PodEnd('terminated', 'the container was asked to stop'));
  if (options.terminate?.aborted) onTerminate();
  options.terminate?.addEventListener('abort', onTerminate, { once: true });
  const gone = (err: RunGoneError) => end(new PodEnd('gone', err.message));

  let control: Control = { action: 'continue' };
  const applyControl = (next: Control) => {
    control = next;
    if (next.action === 'stop') {
      end(new PodEnd('stopped', `the backend said stop${next.reason ? `: ${next.reason}` : ''}`));
    }
  };

  const reporter = new Reporter(api, { ...timing, onControl: applyControl, onGone: gone, warn, masker });

  /** set once the run's config names the heartbeat */
  let heartbeatMs: number | undefined;

  /**
   * Waits while the backend says so. A waiting run is a person's to decide, and the state machine
   * watches no heartbeat meanwhile: the pod sends none until it is told to continue.
   */
  const proceed = async () => {
    let waiting = false;
    for (;;) {
      lifetime.signal.throwIfAborted();
      if (control.action === 'continue') {
        if (waiting && heartbeatMs !== undefined) reporter.startHeartbeats(heartbeatMs);
        return;
      }
      if (!waiting) {
        log(`pod: waiting for the backend to continue${control.reason ? ` (${control.reason})` : ''}`);
        reporter.stopHeartbeats();
        waiting = true;
      }
      await sleep(control.pollAfterMs ?? pollMs, undefined, { signal: lifetime.signal });
      try {
        applyControl(await api.getControl(lifetime.signal));
      } catch (err) {
        if (err instanceof RunGoneError) gone(err);
        else if (err instanceof RetryableError || err instanceof InvalidAnswerError) {
          warn(`pod: asking for control failed: ${err.message}`);
        } else if (!lifetime.signal.aborted) throw err;
      }
    }
  };

  /** Asks the Agent API until it answers; what it refuses is final. */
  const fetchRetrying = async <T>(what: string, request: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await request(lifetime.signal);
      } catch (err) {
        if (!(err instanceof RetryableError)) throw err;
        const wait = backoffMs(attempt, retryBaseMs, retryMaxMs);
        warn(`pod: fetching ${what} failed (${err.message}); retrying in ${Math.round(wait)} ms`);
        await sleep(wait, undefined, { signal: lifetime.signal });
      }
    }
  };
  const fetchConfig = (): Promise<PodRunConfig> => fetchRetrying('the run config', (s) => api.getConfig(s));
  const gitCredential = async (): Promise<GitCredential> => {
    const credential = await fetchRetrying('a git credential', (s) => api.getGitCredential(s));
    masker.add(credential.password);
    return credential;
  };

  try {
    const config = await fetchConfig();
    masker.add(...[...config.secretVariables, ...MODEL_PROVIDER_SECRETS].flatMap((name) => env[name] ?? []));
    log(`pod: run ${config.runId} starting (${config.mode}, ${config.agent.kind} agent)`);
    heartbeatMs = (config.heartbeatSeconds * 1000) / 3;
    reporter.startHeartbeats(heartbeatMs);
    const context: RunContext = {
      config,
      signal: lifetime.signal,
      env,
      emit: (event) => reporter.emit(event),
      flush: () => reporter.flush(),
      proceed,
      checkpoint: async (name, summary, details) => {
        reporter.emit({ type: 'checkpoint', name, summary, details });
        await reporter.flush();
        await proceed();
      },
      gitCredential,
      stopHeartbeats: () => reporter.stopHeartbeats(),
      stdout: options.stdout,
      log,
      warn,
    };
    await runSession(context, options.agent ?? agentFor(config.agent));
    await reporter.close(finalFlushMs);
    log('pod: agent finished');
    return 0;
  } catch (err) {
    if (lifetime.signal.aborted) {
      const reason = lifetime.signal.reason as PodEnd;
      log(`pod: ending: ${reason.message}`);
      if (reason.kind === 'gone') reporter.discard();
      else await reporter.close(finalFlushMs);
      return 0;
    }
    if (err instanceof RunGoneError) {
      log(`pod: ending: ${err.message}`);
      reporter.discard();
      return 0;
    }
    if (err instanceof AgentCrash) {
      warn(`pod: crashed: ${err.message}`);
      reporter.discard();
      return 1;
    }
    const message = err instanceof Error ? err.message : String(err);
    warn(`pod: the agent failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
    reporter.emit({ type: 'phase', phase: 'FAILED' });
    reporter.emit({
      type: 'result',
      outcome: 'failed',
      exitReason: 'error',
      message: message.slice(0, 4000),
    });
    await reporter.close(finalFlushMs);
    return 1;
  } finally {
    options.terminate?.removeEventListener('abort', onTerminate);
  }
};
