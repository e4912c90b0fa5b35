import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { systemClock } from '../shared/ports.js';
import { type LifecycleDeps, onPodStopped } from '../shared/usecases/lifecycle.js';
import { runStore, taskSignals } from '../shared/wiring.js';
import * as z from '../shared/zod.js';

const eventSchema = z.looseObject({
  detail: z.looseObject({
    taskArn: z.string(),
    startedBy: z.optional(z.string()),
    stopCode: z.optional(z.string()),
    stoppedReason: z.optional(z.string()),
    containers: z.optional(
      z.array(z.looseObject({ name: z.optional(z.string()), exitCode: z.optional(z.number()) })),
    ),
  }),
});

/** EventBridge: ECS task STOPPED. Catches a sandbox that died under a run, long before a heartbeat would. */
export const makeHandler = (deps: Pick<LifecycleDeps, 'runs' | 'signals' | 'clock'>) =>
  validatedHandler(eventSchema, (event) => onPodStopped(deps, event.detail));

const env = readEnv('TABLE_NAME');
export const handler = makeHandler({
  runs: runStore(env.TABLE_NAME),
  signals: taskSignals(),
  clock: systemClock,
});
