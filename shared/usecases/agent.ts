import { timingSafeEqual } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { owedSignal, planBatch, runAfter } from '../domain/agent-batch.js';
import {
  ConflictError,
  NotConfiguredError,
  NotFoundError,
  ServiceUnavailableError,
  UnauthorizedError,
} from '../domain/errors.js';
import { randomToken } from '../domain/ids.js';
import { priceTokens, type TokenCounts } from '../domain/pricing.js';
import { hasSandbox, isLaunched, isTerminal, type Run } from '../domain/run.js';
import type {
  ActiveRuns,
  Clock,
  DirectoryRepository,
  GitCredential,
  GitCredentials,
  RunSecrets,
  RunStore,
  SpendLedger,
  StepContentStore,
  TaskSignals,
} from '../ports.js';
import type { AgentEvent, Control, EventsResponse, PodRunConfig } from '../schemas/agent-events.js';
import { failOverBudget, hashSecret } from './lifecycle.js';
import { limitBreach, type Pricing, spendScopeOf } from './spend.js';
import { keepFullStepContent } from './timeline.js';

/** The Agent API: what a pod may do with its run-scoped token, and nothing else. */

export interface AgentDeps {
  runs: RunStore;
  ledger: SpendLedger;
  signals: TaskSignals;
  clock: Clock;
  /** keeps the whole text of steps too large for their record */
  stepContent: StepContentStore;
  /** the account's spend caps */
  directory: DirectoryRepository;
  pricing: Pricing;
  /** the account's active runs, whose accrued sandbox time counts toward its caps */
  slots: ActiveRuns;
  /** undefined when the deployment has no git provider configured */
  gitCredentials?: GitCredentials;
}

export interface AgentSettings {
  heartbeatSeconds: number;
  controlPollMs: number;
  /** a paused run's account caps are checked by the poll that falls first in each such period */
  pausedCapCheckMs: number;
}

/**
 * How often a batch is planned again when the run keeps changing under it (a pod sends one batch at
 * a time, but a retried request may race its original), with a short random pause between tries.
 */
const MAX_PLANS = 16;
const replanPause = (plans: number) => sleep(Math.random() * Math.min(250, 5 * 2 ** plans));

const sameHash = (stored: string | undefined, secret: string): boolean =>
  stored !== undefined && timingSafeEqual(Buffer.from(stored, 'hex'), Buffer.from(hashSecret(secret), 'hex'));

/**
 * The pod's token is `<runId>.<secret>`; only its hash is kept on the run, compared in constant time.
 * It is good only while its run is active: an ended run's token is refused (and was deleted with the
 * move that ended it). One consistent read serves the check and the request.
 */
export const authenticateAgent = async (
  runs: RunStore,
  runId: string,
  authorization: string | undefined,
  /** the answer to a request without the run's token, given before anything is read */
  refuseTokenless: (unauthorized: UnauthorizedError) => Error = (unauthorized) => unauthorized,
): Promise<{ run: Run; secrets: RunSecrets }> => {
  const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
  if (!token?.startsWith(`${runId}.`)) {
    throw refuseTokenless(new UnauthorizedError('a run-scoped bearer token is required'));
  }
  const found = await runs.getWithSecrets(runId);
  if (!found || !sameHash(found.secrets.agentTokenHash, token)) {
    throw new UnauthorizedError('the token does not belong to this run');
  }
  if (isTerminal(found.run.status)) throw new UnauthorizedError(`the run has ended (${found.run.status})`);
  return found;
};

/**
 * The launched pod exchanges its one-time code, with the task it runs as, for its run-scoped token.
 * The code is spent by the exchange; it works only for the run's own task, while the run is active.
 * Before the state machine has recorded the task, the pod is asked to try again shortly.
 */
export const exchangeLaunchCode = async (
  runs: RunStore,
  runId: string,
  request: { code: string; taskArn: string },
): Promise<{ token: string }> => {
  const run = await runs.get(runId);
  if (!run || !isLaunched(run.status)) throw new UnauthorizedError('the run takes no pod');
  if (!run.taskArn)
    throw new ServiceUnavailableError('the sandbox is still being recorded; try again shortly');
  const token = `${runId}.${randomToken()}`;
  const exchanged = await runs.exchangeLaunchCode(runId, {
    codeHash: hashSecret(request.code),
    taskArn: request.taskArn,
    tokenHash: hashSecret(token),
  });
  if (!exchanged) throw new UnauthorizedError('the launch code is spent, or not this run’s task’s');
  return { token };
};

export const controlFor = (run: Run, settings: AgentSettings): Control => {
  if (isTerminal(run.status)) return { action: 'stop', reason: `the run is ${run.status}` };
  if (run.status === 'AWAITING_APPROVAL') {
    return { action: 'wait', reason: 'awaiting approval', pollAfterMs: settings.controlPollMs };
  }
  return { action: 'continue' };
};

/**
 * What the pod is to do, asked while it waits for an approval. Its sandbox costs all the while, so
 * each ask applies the run's budget, and the first ask of each `pausedCapCheckMs` the account's caps,
 * to the sandbox time accrued so far; over a limit the run ends here and the answer tells the pod to
 * stop. A working pod's limits are checked with its event batches.
 */
export const controlOf = async (deps: AgentDeps, settings: AgentSettings, run: Run): Promise<Control> => {
  if (run.status !== 'AWAITING_APPROVAL') return controlFor(run, settings);
  const capsDue = deps.clock.now().getTime() % settings.pausedCapCheckMs < settings.controlPollMs;
  const breach = await limitBreach(deps, run, capsDue);
  return controlFor(breach ? await failOverBudget(deps, run, breach) : run, settings);
};

export const podConfig = async (runs: RunStore, run: Run, settings: AgentSettings): Promise<PodRunConfig> => {
  const snapshot = await runs.getSnapshot(run.runId);
  if (!snapshot) throw new NotFoundError('config snapshot of run', run.runId);
  const { pod } = snapshot;
  return {
    runId: run.runId,
    podId: run.podId,
    mode: run.mode,
    prompt: snapshot.prompt,
    repos: snapshot.repos,
    ...(snapshot.ref === undefined ? {} : { ref: snapshot.ref }),
    itemId: run.itemId,
    dispatcher: snapshot.dispatcher ?? { userId: run.attribution },
    agent: pod.agent,
    hooks: pod.hooks,
    checkpoints: run.mode === 'supervised' ? pod.checkpoints : [],
    env: pod.env,
    secretVariables: Object.keys(pod.secrets),
    demo: snapshot.demo,
    heartbeatSeconds: settings.heartbeatSeconds,
  };
};

/** As long as a GitHub App installation token lives, and no longer. */
const GIT_CREDENTIAL_TTL_SECONDS = 3600;

/**
 * The pod's git credential, minted when it asks: for the run's own repositories only (an empty list
 * would mean every repository to a GitHub App), while a sandbox works on the run, for an hour at
 * most. Asked for rather than handed over at launch, so it is in no environment, task override or
 * execution history, and a pod that starts late or runs long asks again.
 */
export const gitCredentialFor = async (
  deps: Pick<AgentDeps, 'gitCredentials' | 'directory'>,
  run: Run,
): Promise<GitCredential> => {
  const credentials = deps.gitCredentials;
  if (!credentials) {
    throw new NotConfiguredError('this deployment has no git provider configured to give credentials');
  }
  if (!hasSandbox(run.status)) {
    throw new ConflictError(`a run gets git credentials only while its sandbox works (it is ${run.status})`, {
      status: run.status,
    });
  }
  if (run.repos.length === 0) throw new ConflictError('the run has no repositories');
  const account = await deps.directory.getAccount(run.accountId);
  return credentials.mint({
    runId: run.runId,
    repos: run.repos,
    ttlSeconds: GIT_CREDENTIAL_TTL_SECONDS,
    ...(account?.github ? { installationId: account.github.installationId } : {}),
  });
};

/**
 * What the state machine is owed according to the stored run, on the wait parked when the run was
 * read (the token and the run come from one read, and the batch's write held on that version):
 * the checkpoint a supervised run paused at, or the pod's result; else a heartbeat, if one came.
 */
const signalWait = async (
  deps: Pick<AgentDeps, 'signals'>,
  token: string | undefined,
  run: Run,
  heartbeat: boolean,
): Promise<void> => {
  if (!token || isTerminal(run.status)) return;
  const owed = owedSignal(run);
  if (owed) await deps.signals.succeedTask(token, owed);
  else if (heartbeat && run.status !== 'AWAITING_APPROVAL') await deps.signals.heartbeat(token);
};

/**
 * Record a batch of pod events, from the run as read with the token check. The batch's plan (the
 * start, the pause at a checkpoint, the result, steps, usage, artifacts) is written at once; then
 * whatever the state machine is owed according to the stored run is sent, so a batch sent again
 * after a failure completes what the first one left. Over its budget or its account's cap, the run
 * ends here and the answer tells the pod to stop.
 */
export const ingestEvents = async (
  deps: AgentDeps,
  settings: AgentSettings,
  read: { run: Run; secrets: RunSecrets },
  events: AgentEvent[],
): Promise<EventsResponse> => {
  const price = (model: string, tokens: TokenCounts) => priceTokens(deps.pricing.table, model, tokens);
  let { run, secrets } = read;
  for (let plans = 1; ; plans++) {
    const plan = planBatch(run, events, deps.clock.now(), price);
    // Steps too large for their record are kept whole first, so the record can say where.
    const fullContent = await keepFullStepContent(deps, run.runId, plan.steps);
    if (await deps.runs.recordBatch(run, plan, { fullContent, scope: spendScopeOf(run) })) {
      let after = runAfter(run, plan);
      await signalWait(
        deps,
        secrets.podTaskToken,
        after,
        plan.accepted.some((e) => e.type === 'heartbeat'),
      );
      // the caps, on spend the batch added and, with each heartbeat, on the sandbox time accrued since
      const checkCaps = plan.ledger.length > 0 || plan.accepted.some((e) => e.type === 'heartbeat');
      const breach = await limitBreach(deps, after, checkCaps);
      if (breach) after = await failOverBudget(deps, after, breach);
      return {
        accepted: plan.accepted.length,
        duplicates: plan.duplicates,
        control: controlFor(after, settings),
      };
    }
    if (plans >= MAX_PLANS) throw new ServiceUnavailableError('the run kept changing; send the batch again');
    await replanPause(plans);
    const reread = await deps.runs.getWithSecrets(run.runId);
    if (!reread) throw new NotFoundError('run', run.runId);
    ({ run, secrets } = reread);
  }
};
