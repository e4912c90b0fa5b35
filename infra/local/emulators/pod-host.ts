import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import type { ContainerIo } from '../../../pod/src/container.js';

/**
 * Pods hosted together: one Node process runs many pods, each the container's program with its own
 * environment, output and stop signal, and the ECS emulator treats each as a container.
 *
 * Why: a process per pod costs about 100 ms of CPU to start (Node itself, then the bundle), so two
 * cores cannot start Fargate's 20 pods a second and also run the control plane those pods talk to;
 * a hosted pod starts in well under a millisecond. What hosting cannot give: the pods share one
 * process's memory and CPU, and SIGKILL ends a pod's output and reports it exited (137) at once but
 * cannot halt its code: the pod is aborted as by SIGTERM, and what its final flush sends is its last.
 */

export type ContainerProgram = (io: ContainerIo) => Promise<number>;

export interface PodHostCommand {
  command: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
}

type ToHost =
  | { kind: 'start'; id: string; env: Record<string, string> }
  | { kind: 'signal'; id: string; signal: NodeJS.Signals };
type FromHost =
  | { kind: 'started'; id: string }
  | { kind: 'output'; id: string; stream: 'stdout' | 'stderr'; text: string }
  | { kind: 'exit'; id: string; code: number | null; signal: NodeJS.Signals | null };

/**
 * One hosted pod, seen from the emulator: the events a child process would raise ('spawn',
 * 'spawn-error', 'exit' with code and signal, then 'close' once its output has been read).
 */
export class HostedPod {
  readonly events = new EventEmitter();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly pid = undefined;
  private exited = false;

  constructor(private readonly deliver: (signal: NodeJS.Signals) => void) {}

  signal(signal: NodeJS.Signals) {
    if (!this.exited) this.deliver(signal);
  }

  started() {
    this.events.emit('spawn');
  }

  output(stream: 'stdout' | 'stderr', text: string) {
    if (!this.exited) this[stream].write(text);
  }

  failedToStart(err: Error) {
    this.exited = true;
    this.events.emit('spawn-error', err);
  }

  exit(code: number | null, signal: NodeJS.Signals | null) {
    if (this.exited) return;
    this.exited = true;
    this.events.emit('exit', code, signal);
    let open = 2;
    for (const stream of [this.stdout, this.stderr]) {
      stream.once('end', () => {
        open -= 1;
        if (open === 0) this.events.emit('close');
      });
      stream.end();
    }
  }
}

export interface PodHost {
  /** starts a pod with the task's environment; the host process starts with the first pod */
  start(env: Record<string, string>): HostedPod;
  /** ends the host process, and with it every pod still running */
  kill(): void;
}

/** The emulator's side: starts the host process when first needed, and again after it died. */
export const podHost = (command: PodHostCommand): PodHost => {
  let host: ChildProcess | undefined;
  const pods = new Map<string, HostedPod>();

  const spawnHost = (): ChildProcess => {
    const child = spawn(command.command, command.args, {
      cwd: command.cwd,
      env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', ...command.env },
      // its own group, like a pod process: Ctrl-C reaches the local cloud, which stops it in order
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (message: FromHost) => {
      const pod = pods.get(message.id);
      if (!pod) return;
      if (message.kind === 'started') pod.started();
      else if (message.kind === 'output') pod.output(message.stream, message.text);
      else {
        pods.delete(message.id);
        pod.exit(message.code, message.signal);
      }
    });
    const lost = (err?: Error) => {
      if (host !== child) return;
      host = undefined;
      // the pods went down with their host, as containers do with a lost instance
      for (const [id, pod] of pods) {
        pods.delete(id);
        if (err && child.pid === undefined) pod.failedToStart(err);
        else pod.exit(null, 'SIGKILL');
      }
    };
    // a host that never started, or a message it can no longer take
    child.on('error', lost);
    child.once('exit', () => lost());
    return child;
  };

  const send = (message: ToHost) => {
    host ??= spawnHost();
    // a failed send means the host is gone, which its 'exit' or 'error' reports
    host.send(message, () => undefined);
  };

  return {
    start: (env) => {
      const id = randomUUID();
      const pod = new HostedPod((signal) => send({ kind: 'signal', id, signal }));
      pods.set(id, pod);
      send({ kind: 'start', id, env });
      return pod;
    },
    kill: () => {
      if (host?.pid !== undefined) {
        try {
          process.kill(-host.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
};

/** The host process's side: runs each pod it is asked to start, until the emulator goes away. */
export const servePods = (program: ContainerProgram) => {
  const pods = new Map<string, { terminate: AbortController; killed: boolean }>();
  const send = (message: FromHost) => process.send?.(message);

  const output = (id: string, stream: 'stdout' | 'stderr', pod: { killed: boolean }) =>
    new Writable({
      decodeStrings: false,
      write(chunk: string | Buffer, _encoding, done) {
        if (!pod.killed) send({ kind: 'output', id, stream, text: String(chunk) });
        done();
      },
    });

  const start = (id: string, env: Record<string, string>) => {
    const pod = { terminate: new AbortController(), killed: false };
    pods.set(id, pod);
    send({ kind: 'started', id });
    const stderr = output(id, 'stderr', pod);
    program({ env, stdout: output(id, 'stdout', pod), stderr, terminate: pod.terminate.signal })
      .catch((err: unknown) => {
        stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        return 1;
      })
      .then((code) => {
        pods.delete(id);
        if (!pod.killed) send({ kind: 'exit', id, code, signal: null });
      });
  };

  const signal = (id: string, signal: NodeJS.Signals) => {
    const pod = pods.get(id);
    if (!pod) return;
    if (signal === 'SIGKILL') {
      pod.killed = true;
      pods.delete(id);
      send({ kind: 'exit', id, code: null, signal });
    }
    pod.terminate.abort();
  };

  process.on('message', (message: ToHost) => {
    if (message.kind === 'start') start(message.id, message.env);
    else signal(message.id, message.signal);
  });
  // the emulator is gone: so are its containers
  process.once('disconnect', () => process.exit(0));
};
