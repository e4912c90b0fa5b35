import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminal, type Run } from '../shared/domain/run.js';
import { dispatchRequestSchema, listQuerySchema } from '../shared/schemas/api.js';
import { runIdSchema } from '../shared/schemas/ids.js';
import { stepsQuerySchema } from '../shared/schemas/timeline.js';
import type { Account, DecisionAnswer, LogPage, RunPage, StepPage } from '../shared/schemas/wire.js';
import { ApiClient } from './client.js';
import { configPath, normalizeApiUrl, saveConfig } from './config.js';
import type { Context } from './context.js';
import { ApiError, CliError, isRetryable } from './errors.js';
import { backoffMs, PollingFollower, type RunFollower } from './follow.js';
import { exitCodeFor, formatDuration, runDetails, runsTable, stepLine } from './format.js';
import { StreamFollower } from './stream-follower.js';
import { askChoice, type Choice, WatchRenderer } from './watch.js';

/** The commands, each returning its exit code. Wiring to the command line is in main.ts. */

interface JsonOption {
  json?: boolean;
}

/** A zod error as one line: `--item: letters, digits, _ . - (at most 128); ...` */
const issuesLine = (
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  names: Record<string, string> = {},
): string =>
  issues
    .map((i) => {
      const [first, ...rest] = i.path.map(String);
      const flag = first === undefined ? undefined : names[first];
      // the flag, and where inside a JSON value it names: `--config-file demo.steps`
      const name = flag
        ? [flag, rest.filter((p) => !/^\d+$/.test(p)).join('.')].filter(Boolean).join(' ')
        : i.path.map(String).join('.');
      return name ? `${name}: ${i.message}` : i.message;
    })
    .join('; ');

export const runIdArg = (value: string): string => {
  const parsed = runIdSchema.safeParse(value);
  if (!parsed.success) throw new CliError(`"${value}" is not a run id: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
};

const runPath = (runId: string) => `/v1/runs/${encodeURIComponent(runId)}`;

// ---- login

export const login = async (ctx: Context, options: { api: string; token: string } & JsonOption) => {
  const apiUrl = normalizeApiUrl(options.api, '--api');
  const token = options.token === '-' ? (await text(ctx.io.stdin)).trim() : options.token;
  if (!token) throw new CliError('--token: empty');
  const client = new ApiClient({ apiUrl, token }, ctx.io.fetch ?? fetch);
  let account: Account | undefined;
  try {
    account = await client.get<Account>('/v1/account', { signal: ctx.signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      throw new CliError(`${apiUrl} refused the token (401): nothing was saved`);
    }
    // signed in, but the account has no record yet
    if (!(err instanceof ApiError && err.status === 404)) throw err;
  }
  const file = configPath(ctx.io.env);
  await saveConfig(file, { apiUrl, token });
  if (options.json) {
    ctx.json({ apiUrl, configPath: file, accountId: account?.accountId ?? null });
  } else {
    ctx.out(`signed in to ${apiUrl}${account ? ` as account ${account.accountId}` : ''}; saved to ${file}`);
  }
  return 0;
};

// ---- dispatch

export interface DispatchOptions extends JsonOption {
  project: string;
  pod: string;
  item: string;
  prompt?: string;
  promptFile?: string;
  mode: string;
  repo?: string[];
  ref?: string;
  source: string;
  attribution?: string;
  idempotencyKey?: string;
  configFile?: string;
  watch?: boolean;
  poll?: boolean;
}

const DISPATCH_FLAGS: Record<string, string> = {
  itemId: '--item',
  podId: '--pod',
  mode: '--mode',
  prompt: '--prompt',
  repos: '--repo',
  ref: '--ref',
  source: '--source',
  attribution: '--attribution',
  config: '--config-file',
};

const readInput = async (ctx: Context, file: string, what: string): Promise<string> => {
  if (file === '-') return text(ctx.io.stdin);
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`${what}: could not read ${file}: ${(err as Error).message}`);
  }
};

export const dispatch = async (ctx: Context, options: DispatchOptions) => {
  if ((options.prompt === undefined) === (options.promptFile === undefined)) {
    throw new CliError('give the prompt with either --prompt TEXT or --prompt-file FILE');
  }
  const prompt = options.prompt ?? (await readInput(ctx, options.promptFile as string, '--prompt-file'));
  let config: unknown;
  if (options.configFile !== undefined) {
    const json = await readInput(ctx, options.configFile, '--config-file');
    try {
      config = JSON.parse(json);
    } catch {
      throw new CliError(`--config-file: ${options.configFile} is not valid JSON`);
    }
  }
  const request = {
    itemId: options.item,
    podId: options.pod,
    mode: options.mode,
    prompt,
    ...(options.repo?.length ? { repos: options.repo } : {}),
    ...(options.ref === undefined ? {} : { ref: options.ref }),
    source: options.source,
    ...(options.attribution === undefined ? {} : { attribution: options.attribution }),
    ...(config === undefined ? {} : { config }),
  };
  const checked = dispatchRequestSchema.safeParse(request);
  if (!checked.success) throw new CliError(issuesLine(checked.error.issues, DISPATCH_FLAGS));
  const client = await ctx.api();
  const answer = await client.call<Run>('POST', `/v1/projects/${encodeURIComponent(options.project)}/runs`, {
    body: request,
    headers: options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {},
    signal: ctx.signal,
  });
  const run = answer.body;
  // the watch starts with the run's id and status
  if (options.watch) return watchRun(ctx, client, run.runId, options);
  if (options.json) ctx.json(run);
  else {
    const replayed = answer.headers.get('idempotent-replayed') === 'true';
    ctx.out(
      `${run.runId}  ${ctx.style.status(run.status)}${replayed ? '  (dispatched before with this key)' : ''}`,
    );
  }
  return 0;
};

// ---- list

export interface ListOptions extends JsonOption {
  status?: string;
  project?: string;
  pod?: string;
  source?: string;
  limit?: string;
  cursor?: string;
  all?: boolean;
}

const LIST_FLAGS: Record<string, string> = {
  status: '--status',
  source: '--source',
  podId: '--pod',
  limit: '--limit',
  cursor: '--cursor',
};

export const list = async (ctx: Context, options: ListOptions) => {
  const query = {
    ...(options.status === undefined ? {} : { status: options.status.toUpperCase() }),
    ...(options.source === undefined ? {} : { source: options.source }),
    ...(options.pod === undefined ? {} : { podId: options.pod }),
    limit: options.limit ?? (options.all ? '100' : '25'),
    ...(options.cursor === undefined ? {} : { cursor: options.cursor }),
  };
  const checked = listQuerySchema.safeParse(query);
  if (!checked.success) throw new CliError(issuesLine(checked.error.issues, LIST_FLAGS));
  const client = await ctx.api();
  const path = options.project ? `/v1/projects/${encodeURIComponent(options.project)}/runs` : '/v1/runs';
  const items: Run[] = [];
  let cursor = options.cursor;
  let nextCursor: string | null;
  do {
    const page = await client.get<RunPage>(path, { query: { ...query, cursor }, signal: ctx.signal });
    items.push(...page.items);
    nextCursor = page.nextCursor;
    cursor = nextCursor ?? undefined;
  } while (options.all && nextCursor);
  if (options.json) {
    ctx.json({ items, nextCursor });
    return 0;
  }
  for (const line of runsTable(items, ctx.now(), ctx.style)) ctx.out(line);
  if (nextCursor) ctx.note(`more: --cursor ${nextCursor}`);
  return 0;
};

// ---- show, steps

export const show = async (ctx: Context, runId: string, options: JsonOption) => {
  const path = runPath(runIdArg(runId));
  const run = await (await ctx.api()).get<Run>(path, { signal: ctx.signal });
  if (options.json) ctx.json(run);
  else for (const line of runDetails(run, ctx.now(), ctx.style)) ctx.out(line);
  return 0;
};

export const steps = async (
  ctx: Context,
  runId: string,
  options: { after?: string; all?: boolean } & JsonOption,
) => {
  const checked = stepsQuerySchema.safeParse({ after: options.after ?? '0' });
  if (!checked.success) throw new CliError(issuesLine(checked.error.issues, { after: '--after' }));
  const path = `${runPath(runIdArg(runId))}/steps`;
  const client = await ctx.api();
  const items: StepPage['items'] = [];
  let after = checked.data.after;
  let nextAfter: number | null;
  do {
    const page: StepPage = await client.get<StepPage>(path, {
      query: { after, limit: 100 },
      signal: ctx.signal,
    });
    items.push(...page.items);
    nextAfter = page.nextAfter;
    if (nextAfter !== null) after = nextAfter;
  } while (options.all && nextAfter !== null);
  if (options.json) {
    ctx.json({ items, nextAfter });
    return 0;
  }
  if (items.length === 0) ctx.note('no steps');
  for (const step of items) ctx.out(stepLine(step, ctx.style));
  if (nextAfter !== null) ctx.note(`more: --after ${nextAfter}`);
  return 0;
};

// ---- logs

const LOG_POLL_MS = 1000;

export const logs = async (
  ctx: Context,
  runId: string,
  options: { limit?: string; follow?: boolean } & JsonOption,
) => {
  const id = runIdArg(runId);
  const client = await ctx.api();
  const path = `${runPath(id)}/logs`;
  const first = await client.get<LogPage>(path, {
    query: { limit: options.limit ?? 100 },
    signal: ctx.signal,
  });
  if (options.json && !options.follow) {
    ctx.json(first);
    return 0;
  }
  const print = (page: LogPage) => {
    for (const line of page.items) {
      if (options.json) ctx.io.stdout.write(`${JSON.stringify(line)}\n`);
      else ctx.out(line.message);
    }
  };
  print(first);
  if (first.reason === 'expired') ctx.note('the log of this run has expired');
  if (!options.follow) {
    if (first.reason === 'not_started') ctx.note('the run has not written to its log yet');
    return 0;
  }
  // Following: the newer lines since the last page, until the run has ended and nothing more comes
  // (its sandbox writes its last lines as it stops, so two quiet polls after the end, or one when
  // it ended a while ago).
  let after = first.afterCursor;
  let quiet = 0;
  let failures = 0;
  while (after) {
    try {
      const run = await client.get<Run>(runPath(id), { signal: ctx.signal });
      const page = await client.get<LogPage>(path, { query: { after, limit: 1000 }, signal: ctx.signal });
      failures = 0;
      print(page);
      after = page.afterCursor;
      if (isTerminal(run.status)) {
        quiet = page.items.length === 0 ? quiet + 1 : 0;
        const longAgo =
          run.completedAt !== undefined && ctx.now().getTime() - Date.parse(run.completedAt) > 60_000;
        if (quiet >= (longAgo ? 1 : 2)) break;
      }
      if (page.items.length === 0)
        await sleep(ctx.io.pollMs ?? LOG_POLL_MS, undefined, { signal: ctx.signal });
    } catch (err) {
      if (ctx.signal?.aborted || !isRetryable(err)) throw err;
      const delayMs = backoffMs(failures++, ctx.io.pollMs ?? LOG_POLL_MS, 10_000);
      ctx.note(`${(err as Error).message}; trying again in ${formatDuration(delayMs)}`);
      await sleep(delayMs, undefined, { signal: ctx.signal });
    }
  }
  return 0;
};

// ---- actions on a run

export const ACTIONS = ['approve', 'cancel', 'stop', 'done', 'replay', 'redrive'] as const;
export type Action = (typeof ACTIONS)[number];

export const act = async (ctx: Context, action: Action, runId: string, options: JsonOption) => {
  const id = runIdArg(runId);
  const client = await ctx.api();
  const answer = await client.post<Run | DecisionAnswer>(`${runPath(id)}/${action}`, {
    signal: ctx.signal,
  });
  if (options.json) {
    ctx.json(answer);
    return 0;
  }
  const s = ctx.style;
  if ('approval' in answer) {
    const decision = answer.approval.decision?.decision ?? (action === 'approve' ? 'approved' : 'cancelled');
    ctx.out(
      `${decision} checkpoint ${answer.approval.checkpoint.name} of ${id}; the run is ${s.status(answer.run.status)}`,
    );
  } else if (action === 'replay') {
    ctx.out(`${answer.runId}  ${s.status(answer.status)}  (replay of ${id})`);
  } else {
    ctx.out(`${answer.runId}  ${s.status(answer.status)}`);
  }
  return 0;
};

// ---- watch

interface WatchOptions extends JsonOption {
  /** poll the API rather than follow the run's stream */
  poll?: boolean;
}

export const watch = async (ctx: Context, runId: string, options: WatchOptions) => {
  const id = runIdArg(runId);
  return watchRun(ctx, await ctx.api(), id, options);
};

/**
 * The follower the watch uses: the run's WebSocket stream, or polling when asked to or when the API
 * has no stream.
 */
export const followerFor = (
  ctx: Context,
  client: ApiClient,
  options: { poll?: boolean } = {},
): RunFollower => {
  const intervalMs = ctx.io.pollMs === undefined ? {} : { intervalMs: ctx.io.pollMs };
  const polling = new PollingFollower(client, intervalMs);
  return options.poll ? polling : new StreamFollower(client, { fallback: polling, ...intervalMs });
};

const watchRun = async (
  ctx: Context,
  client: ApiClient,
  runId: string,
  options: WatchOptions,
): Promise<number> => {
  const line = (l: string) => ctx.out(l);
  const renderer = new WatchRenderer(
    options.json ? () => {} : line,
    (l) => ctx.note(l),
    () => ctx.now(),
    ctx.style,
  );
  const interactive = Boolean(ctx.io.stdin.isTTY);
  const asked = new Set<number>();
  let prompt: { seq: number; stop: AbortController; done: Promise<void> } | undefined;
  let last: Run | undefined;
  const status = await followerFor(ctx, client, options).follow(
    runId,
    (event) => {
      renderer.onEvent(event);
      if (event.type !== 'run') return;
      const run = event.run;
      last = run;
      const pending = run.status === 'AWAITING_APPROVAL' ? run.pendingApproval : undefined;
      if (prompt && prompt.seq !== pending?.seq) {
        prompt.stop.abort();
        prompt = undefined;
      }
      if (!pending || asked.has(pending.seq)) return;
      asked.add(pending.seq);
      if (interactive) {
        const stop = new AbortController();
        prompt = {
          seq: pending.seq,
          stop,
          done: decideAtPrompt(ctx, client, runId, pending.name, stop.signal),
        };
      } else if (!options.json) {
        ctx.out(`decide with "runs approve ${runId}" or "runs cancel ${runId}"`);
      }
    },
    ctx.signal,
  );
  if (prompt) {
    prompt.stop.abort();
    await prompt.done;
  }
  if (options.json) ctx.json(last ?? (await client.get<Run>(runPath(runId), { signal: ctx.signal })));
  return exitCodeFor(status);
};

/** Asks on stderr and sends what the person chose; says so and goes on if it cannot. */
const decideAtPrompt = async (
  ctx: Context,
  client: ApiClient,
  runId: string,
  checkpoint: string,
  stop: AbortSignal,
): Promise<void> => {
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop]) : stop;
  const choice = await askChoice(
    { input: ctx.io.stdin, output: ctx.io.stderr },
    `approve or cancel checkpoint ${checkpoint}? (a/c) `,
    signal,
  );
  if (!choice) {
    if (stop.aborted) ctx.note('\n(no longer waiting for a decision here)');
    return;
  }
  try {
    const answer = await sendChoice(client, runId, choice, signal);
    ctx.note(`${answer.approval.decision?.decision ?? choice} checkpoint ${checkpoint}`);
  } catch (err) {
    if (!signal.aborted) ctx.note(err instanceof Error ? err.message : String(err));
  }
};

/** The approval is requested a moment after the run pauses: wait for it (up to 30 s), then decide. */
export const sendChoice = async (
  client: Pick<ApiClient, 'get' | 'post'>,
  runId: string,
  choice: Choice,
  signal?: AbortSignal,
  waitMs = 1000,
): Promise<DecisionAnswer> => {
  for (let attempt = 0; ; attempt++) {
    const run = await client.get<Run>(runPath(runId), { signal });
    if (run.status !== 'AWAITING_APPROVAL') {
      throw new CliError(`the run no longer waits for a decision; it is ${run.status}`);
    }
    if (run.pendingApproval?.approvalId || attempt >= 30) {
      return client.post<DecisionAnswer>(`${runPath(runId)}/${choice}`, { signal });
    }
    await sleep(waitMs, undefined, { signal });
  }
};
