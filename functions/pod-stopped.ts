import { z } from 'zod';
import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { type Clock, type RunRepository, systemClock, type TaskSignals } from '../shared/ports.js';
import { onPodStopped } from '../shared/usecases/lifecycle.js';
import { runRepository, taskSignals } from '../shared/wiring.js';

const eventSchema = z.looseObject({
  detail: z.looseObject({
    taskArn: z.string(),
    startedBy: z.string().optional(),
    stopCode: z.string().optional(),
    stoppedReason: z.string().optional(),
    containers: z
      .array(z.looseObject({ name: z.string().optional(), exitCode: z.number().optional() }))
      .optional(),
  }),
});

/** EventBridge: ECS task STOPPED. Catches a sandbox that died under a run, long before a heartbeat would. */
export const makeHandler = (deps: { runs: RunRepository; signals: TaskSignals; clock: Clock }) =>
  validatedHandler(eventSchema, (event) => onPodStopped(deps, event.detail));

const env = readEnv('TABLE_NAME');
export const handler = makeHandler({
  runs: runRepository(env.TABLE_NAME),
  signals: taskSignals(),
  clock: systemClock,
});
