import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import type { LogStreamOwners } from '../shared/ports.js';
import { systemClock } from '../shared/ports.js';
import { approvalOutcomeSchema } from '../shared/schemas/approvals.js';
import { type LifecycleDeps, parkPod } from '../shared/usecases/lifecycle.js';
import { runStore, streamConnections, taskSignals } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

/** State machine task (waitForTaskToken): park the token the pod's checkpoint or result will settle. */
export const makeHandler = (
  deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'> & { logStreams: LogStreamOwners },
) =>
  validatedHandler(
    z.object({
      runId: z.string(),
      taskArn: z.string(),
      taskToken: z.string().check(z.maxLength(1024)),
      // the decision that resumed the pod, when this wait follows an approval
      approval: z.optional(approvalOutcomeSchema),
    }),
    (input) => parkPod(deps, input),
  );

const env = readEnv('TABLE_NAME');
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  signals: taskSignals(),
  clock: systemClock,
  logStreams: streamConnections(env.TABLE_NAME),
});
