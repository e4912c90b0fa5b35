import { timingSafeEqual } from 'node:crypto';
import { NotFoundError, UnauthorizedError } from '../domain/errors.js';
import { isTerminal, type Run } from '../domain/run.js';
import type { Clock, DirectoryRepository, RunRepository, StepContentStore, TaskSignals } from '../ports.js';
import type { AgentEvent, Control, EventsResponse, PodRunConfig } from '../schemas/agent-events.js';
import { pauseAtCheckpoint } from './approvals.js';
import { failOverBudget, hashAgentToken } from './lifecycle.js';
import { limitBreach, type Pricing, usagePricing } from './spend.js';
import { keepFullStepContent } from './timeline.js';

/** The Agent API: what a pod may do with its run-scoped token, and nothing else. */

export interface AgentDeps {
  runs: RunRepository;
  signals: TaskSignals;
  clock: Clock;
  /** keeps the whole text of steps too large for their record */
  stepContent: StepContentStore;
  /** the account's spend caps */
  directory: DirectoryRepository;
  pricing: Pricing;
}

export interface AgentSettings {
  heartbeatSeconds: number;
  controlPollMs: number;
}

/** The token is `<runId>.<secret>`; only its hash is stored, compared in constant time. */
export const authenticateAgent = async (
  runs: RunRepository,
  runId: string,
  authorization?: string,
): Promise<Run> => {
  const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
  if (!token?.startsWith(`${runId}.`)) throw new UnauthorizedError('a run-scoped bearer token is required');
  const stored = await runs.getAgentTokenHash(runId);
  const presented = Buffer.from(hashAgentToken(token), 'hex');
  if (!stored || !timingSafeEqual(Buffer.from(stored, 'hex'), presented)) {
    throw new UnauthorizedError('the token does not belong to this run');
  }
  const run = await runs.get(runId);
  if (!run) throw new NotFoundError('run', runId);
  return run;
};

export const controlFor = (run: Run, settings: AgentSettings): Control => {
  if (isTerminal(run.status)) return { action: 'stop', reason: `the run is ${run.status}` };
  if (run.status === 'AWAITING_APPROVAL') {
    return { action: 'wait', reason: 'awaiting approval', pollAfterMs: settings.controlPollMs };
  }
  return { action: 'continue' };
};

export const podConfig = async (
  runs: RunRepository,
  run: Run,
  settings: AgentSettings,
): Promise<PodRunConfig> => {
  const snapshot = await runs.getSnapshot(run.runId);
  if (!snapshot) throw new NotFoundError('config snapshot of run', run.runId);
  return {
    runId: run.runId,
    mode: run.mode,
    prompt: snapshot.prompt,
    repos: snapshot.repos,
    model: snapshot.pod.model,
    itemId: run.itemId,
    demo: snapshot.demo,
    heartbeatSeconds: settings.heartbeatSeconds,
  };
};

/**
 * Record a batch of pod events. The first event of a provisioned run makes it RUNNING; a result
 * settles the parked wait (or waits for the token to be parked, which then settles it); heartbeats
 * keep the state machine's heartbeat alive; a checkpoint pauses a supervised run for approval.
 */
export const ingestEvents = async (
  deps: AgentDeps,
  settings: AgentSettings,
  run: Run,
  events: AgentEvent[],
): Promise<EventsResponse> => {
  if (isTerminal(run.status))
    return { accepted: 0, duplicates: events.length, control: controlFor(run, settings) };
  const now = deps.clock.now().toISOString();
  let current = run;
  if (run.status === 'PROVISIONING') {
    current = await deps.runs
      .transition({ runId: run.runId, to: 'RUNNING', from: ['PROVISIONING'], patch: { startedAt: now } })
      .catch(async () => (await deps.runs.get(run.runId)) ?? run);
  }
  const ordered = [...events].sort((a, b) => a.seq - b.seq);
  // Steps too large for their record are kept whole first, so the record can say where.
  const fullContent = await keepFullStepContent(deps, run, ordered);
  // Recording applies each event once: steps, usage, artifacts, phases (forward only), heartbeats.
  const { accepted, duplicates } = await deps.runs.recordEvents(
    run.runId,
    ordered,
    fullContent,
    usagePricing(deps.pricing, run),
  );
  const result = accepted.find((e) => e.type === 'result');
  const checkpoint = accepted.find((e) => e.type === 'checkpoint');
  const paused = checkpoint && (await pauseAtCheckpoint(deps, current, checkpoint));
  // While a person decides, the parked token is the approval's: no pod event may settle or extend it.
  // A result then waits on the run for the resumed wait to pick up.
  const waitingForDecision = (paused ?? current).status === 'AWAITING_APPROVAL';
  const token = waitingForDecision ? undefined : await deps.runs.getPodTaskToken(run.runId);
  if (result) {
    const podResult = { outcome: result.outcome, exitReason: result.exitReason, message: result.message };
    await deps.runs.update(run.runId, { result: podResult }, [
      'PROVISIONING',
      'RUNNING',
      'AWAITING_APPROVAL',
    ]);
    if (token) await deps.signals.succeedTask(token, podResult);
  } else if (token && events.some((e) => e.type === 'heartbeat')) {
    await deps.signals.heartbeat(token);
  }
  let latest = (await deps.runs.get(run.runId)) ?? current;
  // Over its budget or its account's cap, the run ends here and the answer tells the pod to stop.
  const addedSpend = accepted.some((e) => e.type === 'usage' || (e.type === 'step' && e.usage));
  const breach = await limitBreach(deps, latest, addedSpend);
  if (breach) latest = await failOverBudget(deps, latest, breach);
  return { accepted: accepted.length, duplicates, control: controlFor(latest, settings) };
};
