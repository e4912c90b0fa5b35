import type { DynamoRunStore } from '../../shared/adapters/dynamo-run-store.js';
import { type BatchPlan, planBatch } from '../../shared/domain/agent-batch.js';
import { NotFoundError } from '../../shared/domain/errors.js';
import type { TokenCharge, TokenCounts } from '../../shared/domain/pricing.js';
import type { StepContentRef } from '../../shared/domain/steps.js';
import type { AgentEvent } from '../../shared/ports.js';

/**
 * What the Agent API does with a batch, for data tests: plan it against the run as read and write
 * it; when the run moved on meanwhile, plan it again from what is stored.
 */
export const recordBatch = async (
  store: DynamoRunStore,
  runId: string,
  events: AgentEvent[],
  options: {
    now?: Date;
    price?: (model: string, tokens: TokenCounts) => TokenCharge;
    fullContent?: Map<number, StepContentRef>;
  } = {},
): Promise<BatchPlan> => {
  for (;;) {
    const run = await store.get(runId);
    if (!run) throw new NotFoundError('run', runId);
    const plan = planBatch(run, events, options.now ?? new Date(), options.price);
    const scope = { accountId: run.accountId, projectId: run.projectId, podId: run.podId };
    if (await store.recordBatch(run, plan, { fullContent: options.fullContent ?? new Map(), scope }))
      return plan;
  }
};
