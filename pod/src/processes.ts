import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ProcessOptions {
  cwd: string;
  env: Record<string, string>;
  signal: AbortSignal;
  /** killed, with everything it started, when it runs longer */
  timeoutMs?: number;
  /** each line it prints, as it prints it */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** keep stdout whole (up to `MAX_CAPTURE_BYTES`) in the result */
  capture?: boolean;
}

export interface ProcessResult {
  /** the exit code; null when a signal ended it */
  code: number | null;
  timedOut: boolean;
  /** the last lines it printed, stdout and stderr together */
  tail: string[];
  stdout: string;
}

const TAIL_LINES = 40;
const MAX_CAPTURE_BYTES = 8 * 1024 * 1024;

/**
 * Runs a program to its end. It gets a process group of its own, so a timeout or the run's end kills
 * what it started too (a hook's `npm ci`, the test runner an agent launched).
 */
export const runProcess = (
  command: string,
  args: string[],
  options: ProcessOptions,
): Promise<ProcessResult> =>
  new Promise((resolve, reject) => {
    options.signal.throwIfAborted();
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const tail: string[] = [];
    const captured: Buffer[] = [];
    let capturedBytes = 0;
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killGroup();
          }, options.timeoutMs);
    options.signal.addEventListener('abort', killGroup, { once: true });

    if (options.capture) {
      child.stdout.on('data', (chunk: Buffer) => {
        if (capturedBytes >= MAX_CAPTURE_BYTES) return;
        captured.push(chunk);
        capturedBytes += chunk.length;
      });
    }
    const follow = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr') => {
      const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
      lines.on('line', (line) => {
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        options.onLine?.(line, name);
      });
      return new Promise<void>((done) => lines.once('close', done));
    };
    const drained = Promise.all([follow(child.stdout, 'stdout'), follow(child.stderr, 'stderr')]);

    child.once('error', (err) => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', killGroup);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', killGroup);
      void drained.then(() => {
        if (options.signal.aborted) reject(options.signal.reason);
        else resolve({ code, timedOut, tail, stdout: Buffer.concat(captured).toString('utf8') });
      });
    });
  });
