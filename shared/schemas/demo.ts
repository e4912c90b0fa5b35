import { z } from 'zod';

/**
 * The demo agent's script, chosen per dispatch in `config.demo`, so every path of the lifecycle
 * can be driven without a model.
 */
export const demoScriptSchema = z
  .object({
    /** assistant/tool steps to emit while EXECUTING */
    steps: z.number().int().min(0).max(10_000).default(3),
    /** pause between steps */
    stepDelayMs: z.number().int().min(0).max(600_000).default(50),
    /** tokens reported per step, one entry per model */
    usage: z
      .array(
        z.object({
          model: z.string().min(1),
          inputTokens: z.number().int().nonnegative(),
          outputTokens: z.number().int().nonnegative(),
          cacheReadTokens: z.number().int().nonnegative().default(0),
          cacheWriteTokens: z.number().int().nonnegative().default(0),
        }),
      )
      .default([]),
    /**
     * how the run ends: a reported failure (the pod sends `result` with that exit reason),
     * `crash` (the process exits 1 without a result) or `hang` (it stops reporting and sleeps).
     */
    failure: z
      .enum(['tool_call_failed', 'lifecycle_hook_failed', 'missing_repo_access', 'error', 'crash', 'hang'])
      .optional(),
    /** open a pull request at the end */
    pullRequest: z.boolean().default(true),
    /** checkpoints the agent raises, by name: after `plan` and/or before `commit` */
    checkpoints: z.array(z.enum(['plan', 'commit'])).default([]),
    /** numbered lines written to stdout (the log stream) */
    logLines: z.number().int().min(0).max(1_000_000).default(0),
    /** size in bytes of one extra large assistant step */
    bigStepBytes: z.number().int().min(0).max(3_000_000).default(0),
  })
  .strict();
export type DemoScript = z.infer<typeof demoScriptSchema>;
