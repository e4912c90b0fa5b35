import { execFile } from 'node:child_process';
import { devNull } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * git as the pod runs it: the credential in the environment of this one command (an HTTP Basic
 * `http.extraHeader` through GIT_CONFIG_*), never in the URL or a config file; no prompts, and no
 * configuration from the machine or the user.
 */
export const git = (
  args: string[],
  options: { cwd: string; credential?: { username: string; password: string } },
) => {
  const { credential } = options;
  const basic = credential && Buffer.from(`${credential.username}:${credential.password}`).toString('base64');
  return run('git', args, {
    cwd: options.cwd,
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      HOME: options.cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: devNull,
      GIT_TERMINAL_PROMPT: '0',
      ...(basic
        ? {
            GIT_CONFIG_COUNT: '1',
            GIT_CONFIG_KEY_0: 'http.extraHeader',
            GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
          }
        : {}),
    },
  });
};

/** What git said on stderr when the command failed, or `succeeded`. */
export const gitFailure = (command: Promise<unknown>) =>
  command.then(
    () => 'succeeded',
    (err: { stderr: string }) => err.stderr,
  );
