import { Command, CommanderError, Option } from 'commander';
import { DISPATCH_SOURCES, RUN_MODES, RUN_SOURCES } from '../shared/domain/run.js';
import * as commands from './commands.js';
import { Context, type Io } from './context.js';
import { CliError, isAbort } from './errors.js';

/** `runs`: the command line client of the HTTP API. */

const json = (description = 'print one JSON document on stdout instead') => new Option('--json', description);

const EXIT_CODES_HELP = `
Exit codes: 0 the run COMPLETED or is DONE; 1 it FAILED or went to DEAD_LETTER, or the
run could not be followed (said on stderr); 2 it was CANCELLED, STOPPED, ABANDONED or PR_REJECTED.`;

const ACTION_HELP: Record<commands.Action, string> = {
  approve: 'approve the checkpoint the run waits at',
  cancel: 'cancel the checkpoint the run waits at (the run ends ABANDONED)',
  stop: 'stop the run mid-flight; its sandbox is torn down',
  done: 'close a run that has ended (DONE)',
  replay: 'start a new run from the same frozen config',
  redrive: 'put a DEAD_LETTER run back on the queue',
};

export const buildProgram = (ctx: Context, exit: (code: number) => void): Command => {
  const program = new Command('runs')
    .description('Dispatch, follow and decide execution runs through the HTTP API.')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout.write(s),
      writeErr: (s) => ctx.io.stderr.write(s),
      // one line: commander puts its suggestion ("Did you mean list?") on a second
      outputError: (s, write) => write(`${s.trim().replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Sign in once with "runs login --api URL --token TOKEN" (or set RUNS_API_URL and RUNS_TOKEN).
The config file is $RUNS_CONFIG, else $XDG_CONFIG_HOME/runs/config.json, else ~/.config/runs/config.json.`,
    );
  const run =
    <A extends unknown[]>(action: (...args: A) => Promise<number>) =>
    async (...args: A) =>
      exit(await action(...args));

  program
    .command('login')
    .description('check a token against the API and save it with the API URL')
    .requiredOption('--api <url>', 'the API URL, e.g. https://abc123.execute-api.us-east-1.amazonaws.com')
    .requiredOption('--token <token>', 'a token the API accepts; - reads it from stdin')
    .addOption(json())
    .action(run((options) => commands.login(ctx, options)));

  program
    .command('dispatch')
    .description('dispatch a backlog item to a pod: a new run')
    .requiredOption('--project <id>', 'the project')
    .requiredOption('--pod <id>', 'the pod that runs it')
    .requiredOption('--item <id>', 'the backlog item')
    .option('--prompt <text>', 'what to do')
    .option('--prompt-file <file>', 'what to do, from a file (- for stdin)')
    .addOption(
      new Option('--mode <mode>', 'supervised runs pause at checkpoints')
        .choices(RUN_MODES)
        .default('autopilot'),
    )
    .option('--repo <url...>', 'a repository to clone besides the project’s (repeatable)')
    .option('--ref <ref>', 'the branch, tag or commit to check out')
    .addOption(
      new Option('--source <source>', 'where the run comes from').choices(DISPATCH_SOURCES).default('cli'),
    )
    .option('--attribution <who>', 'who or what started it')
    .option('--idempotency-key <key>', 'a second dispatch with the same key answers the first run')
    .option(
      '--config-file <file>',
      'the dispatch\'s config as JSON, e.g. {"demo": {...}} for a pod of the demo agent',
    )
    .option('--watch', 'then follow the run as "runs watch" does, exiting by its outcome')
    .option('--poll', 'with --watch, poll the API rather than follow the run’s stream')
    .addOption(json())
    .addHelpText('after', EXIT_CODES_HELP)
    .action(run((options) => commands.dispatch(ctx, options)));

  program
    .command('list')
    .description('runs, newest first')
    .option('--status <statuses>', 'only these statuses, comma-separated (e.g. FAILED,DEAD_LETTER)')
    .option('--project <id>', 'only this project')
    .option('--pod <id>', 'only this pod')
    .addOption(new Option('--source <source>', 'only runs from this source').choices(RUN_SOURCES))
    .option('--limit <n>', 'runs per page, 1–100 (default 25; 100 with --all)')
    .option('--cursor <cursor>', 'the page after the one that gave this cursor')
    .option('--all', 'every page to the end')
    .addOption(json())
    .action(run((options) => commands.list(ctx, options)));

  program
    .command('show')
    .description('a run: status, phase, tokens, cost, pull request, history')
    .argument('<run>', 'the run id')
    .addOption(json())
    .action(run((runId, options) => commands.show(ctx, runId, options)));

  program
    .command('steps')
    .description('the run’s step timeline')
    .argument('<run>', 'the run id')
    .option('--after <seq>', 'steps after this seq')
    .option('--all', 'every page to the end')
    .addOption(json())
    .action(run((runId, options) => commands.steps(ctx, runId, options)));

  program
    .command('logs')
    .description('the run’s sandbox log, its newest lines')
    .argument('<run>', 'the run id')
    .option('--limit <n>', 'lines, 1–1000', '100')
    .option('--follow', 'then print new lines as they come, until the run has ended')
    .addOption(json('print the page as JSON; with --follow, one JSON line per log line'))
    .action(run((runId, options) => commands.logs(ctx, runId, options)));

  for (const action of commands.ACTIONS) {
    program
      .command(action)
      .description(ACTION_HELP[action])
      .argument('<run>', 'the run id')
      .addOption(json())
      .action(run((runId, options) => commands.act(ctx, action, runId, options)));
  }

  program
    .command('watch')
    .description('follow a run to its end: phases, steps, tokens and cost, checkpoints')
    .argument('<run>', 'the run id')
    .option('--poll', 'poll the API every half second rather than follow the run’s stream')
    .addOption(json('print only the ended run, as JSON'))
    .addHelpText(
      'after',
      `${EXIT_CODES_HELP}
It follows the run's stream live (resuming where it was after a dropped connection), or polls the
API when asked to with --poll or when the API has no stream. At a checkpoint, with a terminal on
stdin, it asks whether to approve or cancel.`,
    )
    .action(run((runId, options) => commands.watch(ctx, runId, options)));

  return program;
};

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export const main = async (argv: string[], io: Io): Promise<number> => {
  const ctx = new Context(io);
  let code = 0;
  const program = buildProgram(ctx, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    // commander has said what was wrong (or shown the help) already
    if (err instanceof CommanderError) return err.exitCode;
    if (io.signal?.aborted && isAbort(err)) return 130;
    const message = err instanceof CliError ? err.message : err instanceof Error ? err.message : String(err);
    io.stderr.write(`${message.split('\n')[0]}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
};
