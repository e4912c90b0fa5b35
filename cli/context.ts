import { ApiClient } from './client.js';
import { resolveSettings } from './config.js';
import { type Style, styleFor } from './format.js';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Everything the CLI touches outside itself, so tests can hand it their own. */
export interface Io {
  stdout: Output;
  stderr: Output;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  fetch?: typeof fetch;
  now?: () => Date;
  /** aborted on Ctrl-C */
  signal?: AbortSignal;
  /** between polls while following a run or its log (default 500 ms and 1 s) */
  pollMs?: number;
}

/** What a command works with: where to write, the clock, and the API (signed in on first use). */
export class Context {
  readonly style: Style;
  private client: ApiClient | undefined;

  constructor(readonly io: Io) {
    this.style = styleFor(io.stdout, io.env);
  }

  now(): Date {
    return this.io.now ? this.io.now() : new Date();
  }

  get signal(): AbortSignal | undefined {
    return this.io.signal;
  }

  /** A line for people, on stdout. */
  out(line = ''): void {
    this.io.stdout.write(`${line}\n`);
  }

  /** A note beside the output (hints, progress), on stderr. */
  note(line: string): void {
    this.io.stderr.write(`${line}\n`);
  }

  /** The one JSON document of `--json`. */
  json(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  async api(): Promise<ApiClient> {
    this.client ??= new ApiClient(await resolveSettings(this.io.env), this.io.fetch ?? fetch);
    return this.client;
  }
}
