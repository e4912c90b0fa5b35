import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Settings } from './client.js';
import { CliError, LOGIN_HINT } from './errors.js';

/**
 * Where the CLI keeps the API URL and token: `$RUNS_CONFIG`, else `$XDG_CONFIG_HOME/runs/config.json`,
 * else `~/.config/runs/config.json`; readable by its owner only. `RUNS_API_URL` and `RUNS_TOKEN`
 * override what the file holds.
 */

type Env = Record<string, string | undefined>;

export const configPath = (env: Env): string => {
  if (env.RUNS_CONFIG) return path.resolve(env.RUNS_CONFIG);
  // the XDG spec ignores a relative XDG_CONFIG_HOME
  const base =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)
      ? env.XDG_CONFIG_HOME
      : path.join(env.HOME || homedir(), '.config');
  return path.join(base, 'runs', 'config.json');
};

/** An http(s) URL without a trailing slash, or a CliError saying what is wrong with it. */
export const normalizeApiUrl = (value: string, from: string): string => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliError(
      `${from}: "${value}" is not a URL (e.g. https://abc123.execute-api.us-east-1.amazonaws.com)`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`${from}: "${value}" is not an http(s) URL`);
  }
  return url.toString().replace(/\/+$/, '');
};

export const readConfigFile = async (file: string): Promise<Partial<Settings>> => {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return {};
    throw new CliError(`could not read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is not valid JSON: remove it, or ${LOGIN_HINT}`);
  }
  const { apiUrl, token } = (parsed ?? {}) as Record<string, unknown>;
  return {
    ...(typeof apiUrl === 'string' ? { apiUrl } : {}),
    ...(typeof token === 'string' ? { token } : {}),
  };
};

/** The API URL and token to use: the environment's, else the config file's. */
export const resolveSettings = async (env: Env): Promise<Settings> => {
  const file = configPath(env);
  const saved = env.RUNS_API_URL && env.RUNS_TOKEN ? {} : await readConfigFile(file);
  const apiUrl = env.RUNS_API_URL || saved.apiUrl;
  const token = env.RUNS_TOKEN || saved.token;
  if (!apiUrl || !token) throw new CliError(`not signed in: ${LOGIN_HINT}`);
  return {
    apiUrl: normalizeApiUrl(apiUrl, env.RUNS_API_URL ? 'RUNS_API_URL' : file),
    token,
  };
};

/** Write the settings for the owner's eyes only: the folder 0700, the file 0600, replaced whole. */
export const saveConfig = async (file: string, settings: Settings): Promise<void> => {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(settings, null, 2)}\n`, { mode: 0o600 });
  // the mode given to writeFile passes through the umask, and applies only to a new file
  await chmod(temporary, 0o600);
  await rename(temporary, file);
};
