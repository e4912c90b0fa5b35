import * as z from '../zod.js';

/**
 * The demo agent's script, chosen per dispatch in `config.demo`, so every path of the lifecycle
 * can be driven without a model.
 */
export const demoScriptSchema = z.strictObject({
  /** assistant/tool steps to emit while EXECUTING */
  steps: z._default(z.int().check(z.gte(0), z.lte(10_000)), 3),
  /** pause between steps */
  stepDelayMs: z._default(z.int().check(z.gte(0), z.lte(600_000)), 50),
  /** tokens reported per step, one entry per model */
  usage: z._default(
    z.array(
      z.object({
        model: z.string().check(z.minLength(1)),
        inputTokens: z.int().check(z.nonnegative()),
        outputTokens: z.int().check(z.nonnegative()),
        cacheReadTokens: z._default(z.int().check(z.nonnegative()), 0),
        cacheWriteTokens: z._default(z.int().check(z.nonnegative()), 0),
      }),
    ),
    [],
  ),
  /**
   * how the agent ends: a failure it reports (`tool_call_failed`, `error`), `crash` (the process
   * exits 1 without a result) or `hang` (it stops reporting and sleeps). Hook and repository failures
   * are the runtime's: a pod's hooks and a run's repositories cause them.
   */
  failure: z.optional(z.enum(['tool_call_failed', 'error', 'crash', 'hang'])),
  /** add a line to `DEMO_AGENT.md` in the run's first clone, so the run has something to commit */
  edit: z._default(z.boolean(), true),
  /** numbered lines written to stdout (the log stream) */
  logLines: z._default(z.int().check(z.gte(0), z.lte(1_000_000)), 0),
  /** the log lines are written this many at a time */
  logLinesPerWrite: z._default(z.int().check(z.gte(1), z.lte(10_000)), 500),
  /** pause between two writes of log lines, so a log grows while it is followed */
  logDelayMs: z._default(z.int().check(z.gte(0), z.lte(60_000)), 0),
  /** size in bytes of one extra large assistant step */
  bigStepBytes: z._default(z.int().check(z.gte(0), z.lte(3_000_000)), 0),
});
export type DemoScript = z.infer<typeof demoScriptSchema>;
