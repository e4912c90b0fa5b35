import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import {
  type CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  PutLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';

/** How the local cloud writes to its CloudWatch Logs: the pods' output, the functions', the executions'. */

const LOG_FLUSH_INTERVAL_MS = 200;
/** PutLogEvents limits: 10,000 events and 1 MiB per call, counting 26 bytes of overhead per event. */
const MAX_EVENTS_PER_PUT = 10_000;
const MAX_BYTES_PER_PUT = 1_048_576;
const EVENT_OVERHEAD_BYTES = 26;
/** awslogs splits longer lines; 3 bytes spare for a character the split would cut. */
const MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES - 3;
/** Pause reading a stream while this much of it waits for PutLogEvents, so a chatty writer slows down. */
const LOG_BACKLOG_BYTES = 8 * 1024 * 1024;

/**
 * Ships one stream's lines (a task's output, as the awslogs driver does; a function's, as Lambda does)
 * to its log stream in PutLogEvents batches, creating the stream, and its group, when missing.
 */
export class LogShipper {
  private pending: { timestamp: number; message: string }[] = [];
  private pendingBytes = 0;
  private draining: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private streamReady: Promise<boolean>;
  private readonly onRelief: (() => void)[] = [];

  constructor(
    private readonly client: CloudWatchLogsClient,
    private readonly logGroupName: string,
    readonly logStreamName: string,
  ) {
    this.streamReady = this.createStream();
    this.timer = setInterval(() => void this.flush(), LOG_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  get backlogged(): boolean {
    return this.pendingBytes > LOG_BACKLOG_BYTES;
  }

  /** called once after the backlog has been sent */
  whenRelieved(resume: () => void) {
    this.onRelief.push(resume);
  }

  add(line: string) {
    const message = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (message.length === 0) return;
    const timestamp = Date.now();
    for (const part of splitEvent(message)) {
      this.pending.push({ timestamp, message: part });
      this.pendingBytes += Buffer.byteLength(part) + EVENT_OVERHEAD_BYTES;
    }
  }

  flush(): Promise<void> {
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** Sends everything still pending and stops the timer. */
  async close() {
    clearInterval(this.timer);
    while (this.pending.length > 0 || this.draining) await this.flush();
  }

  /** Drops what is pending and sends nothing more; paused output flows again so the process can end. */
  discard() {
    clearInterval(this.timer);
    this.pending = [];
    this.pendingBytes = 0;
    this.streamReady = Promise.resolve(false);
    for (const resume of this.onRelief.splice(0)) resume();
  }

  private async drain() {
    if (!(await this.streamReady)) {
      this.pending = [];
      this.pendingBytes = 0;
    }
    while (this.pending.length > 0) {
      const batch = this.takeBatch();
      try {
        await this.client.send(
          new PutLogEventsCommand({
            logGroupName: this.logGroupName,
            logStreamName: this.logStreamName,
            logEvents: batch,
          }),
        );
      } catch (err) {
        console.warn(
          `logs: PutLogEvents to ${this.logStreamName} failed, ${batch.length} lines lost: ${String(err)}`,
        );
      }
    }
    for (const resume of this.onRelief.splice(0)) resume();
  }

  private takeBatch() {
    let bytes = 0;
    let count = 0;
    for (const event of this.pending) {
      const size = Buffer.byteLength(event.message) + EVENT_OVERHEAD_BYTES;
      if (count === MAX_EVENTS_PER_PUT || (count > 0 && bytes + size > MAX_BYTES_PER_PUT)) break;
      bytes += size;
      count++;
    }
    this.pendingBytes -= bytes;
    return this.pending.splice(0, count);
  }

  private async createStream(): Promise<boolean> {
    const stream = { logGroupName: this.logGroupName, logStreamName: this.logStreamName };
    try {
      await this.client.send(new CreateLogStreamCommand(stream)).catch(async (err: Error) => {
        if (err.name !== 'ResourceNotFoundException') return ignoreAlreadyExists(err);
        // as with awslogs-create-group, a missing group is created
        await this.client
          .send(new CreateLogGroupCommand({ logGroupName: this.logGroupName }))
          .catch(ignoreAlreadyExists);
        await this.client.send(new CreateLogStreamCommand(stream)).catch(ignoreAlreadyExists);
      });
      return true;
    } catch (err) {
      console.warn(`logs: cannot create log stream ${this.logStreamName}: ${String(err)}`);
      return false;
    }
  }
}

const ignoreAlreadyExists = (err: Error) => {
  if (err.name !== 'ResourceAlreadyExistsException') throw err;
};

const splitEvent = (message: string): string[] => {
  const bytes = Buffer.from(message);
  if (bytes.length <= MAX_EVENT_BYTES) return [message];
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += MAX_EVENT_BYTES) {
    const part = decoder.write(bytes.subarray(offset, offset + MAX_EVENT_BYTES));
    if (part) parts.push(part);
  }
  const tail = decoder.end();
  if (tail) parts.push(tail);
  return parts;
};

/** Feeds a stream's lines to the shipper, pausing the stream while the shipper is backlogged. */
export const pipeLines = (stream: Readable, shipper: LogShipper) => {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (partial + decoder.write(chunk)).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) shipper.add(line);
    if (shipper.backlogged) {
      stream.pause();
      shipper.whenRelieved(() => stream.resume());
      void shipper.flush();
    }
  });
  stream.on('end', () => {
    const rest = partial + decoder.end();
    if (rest) shipper.add(rest);
  });
};
