import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type {
  SQSBatchResponse,
  SQSEvent,
  SQSMessageAttributes,
  SQSRecord,
  SQSRecordAttributes,
} from 'aws-lambda';

/**
 * A Lambda SQS event-source mapping: pollers long-poll the queue, gather a batch within the batching
 * window, invoke the function with a real SQSEvent, and delete what succeeded. A function error leaves
 * the whole batch to come back after the visibility timeout; with ReportBatchItemFailures only the
 * messages the function names come back. The queue's redrive policy then moves repeat failures to the DLQ.
 */

export interface SqsEventSourceOptions {
  sqs: SQSClient;
  queueUrl: string;
  queueArn: string;
  batchSize: number;
  maxBatchingWindowSeconds: number;
  reportBatchItemFailures: boolean;
  invoke: (event: SQSEvent) => Promise<unknown>;
  /** concurrent batches, as Lambda runs several pollers per mapping */
  pollers?: number;
  /** overrides the queue's visibility timeout for received messages */
  visibilityTimeoutSeconds?: number;
  logError?: (message: string, err: unknown) => void;
}

export interface SqsEventSource {
  /** Ends idle long polls at once; a batch already received is finished and delivered first. */
  stop(): Promise<void>;
}

const LONG_POLL_SECONDS = 20;
const MAX_MESSAGES_PER_RECEIVE = 10;
const RECEIVE_ERROR_BACKOFF_MS = 1000;

const chunks = <T>(items: T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));

const toRecordAttributes = (message: Message): SQSRecordAttributes => {
  const attributes = message.Attributes ?? {};
  return {
    ...attributes,
    ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
    SentTimestamp: attributes.SentTimestamp ?? '',
    SenderId: attributes.SenderId ?? '',
    ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? '',
  };
};

/** Lambda's spelling of message attributes: camel-cased, binary as base64, list fields always present. */
const toRecordMessageAttributes = (message: Message): SQSMessageAttributes =>
  Object.fromEntries(
    Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
      name,
      {
        ...(value.StringValue !== undefined && { stringValue: value.StringValue }),
        ...(value.BinaryValue !== undefined && {
          binaryValue: Buffer.from(value.BinaryValue).toString('base64'),
        }),
        stringListValues: value.StringListValues ?? [],
        binaryListValues: (value.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
        dataType: value.DataType ?? 'String',
      },
    ]),
  );

/**
 * The ids the function reported as failed, or undefined when its response is malformed (an identifier
 * missing or not in the batch), which Lambda treats as the whole batch failing.
 */
const reportedFailures = (result: unknown, batchIds: Set<string>): Set<string> | undefined => {
  const failures = (result as Partial<SQSBatchResponse> | null | undefined)?.batchItemFailures;
  if (failures === undefined || failures === null) return new Set();
  if (!Array.isArray(failures)) return undefined;
  const ids = new Set<string>();
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !batchIds.has(id)) return undefined;
    ids.add(id);
  }
  return ids;
};

export const startSqsEventSource = (options: SqsEventSourceOptions): SqsEventSource => {
  const { sqs, queueUrl, queueArn, batchSize, maxBatchingWindowSeconds, reportBatchItemFailures, invoke } =
    options;
  const logError = options.logError ?? ((message, err) => console.error(message, err));
  const awsRegion = queueArn.split(':')[3] ?? '';
  const aborter = new AbortController();
  const stopped = () => aborter.signal.aborted;

  const receive = async (max: number, waitSeconds: number, abortSignal?: AbortSignal): Promise<Message[]> => {
    const output = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(MAX_MESSAGES_PER_RECEIVE, max),
        WaitTimeSeconds: waitSeconds,
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
        ...(options.visibilityTimeoutSeconds !== undefined && {
          VisibilityTimeout: options.visibilityTimeoutSeconds,
        }),
      }),
      { abortSignal },
    );
    return output.Messages ?? [];
  };

  /**
   * A batch: the first long poll's messages plus whatever arrives within the batching window. A message
   * seen twice (its visibility timeout ran out meanwhile) is kept once, with its newest receipt handle.
   * Only the first, idle long poll is cut short by stop(): once messages are held, the batch is finished
   * and delivered, as a disabled mapping lets its batches in flight complete.
   */
  const gather = async (): Promise<Message[]> => {
    const batch = new Map<string | undefined, Message>();
    const first = await receive(batchSize, LONG_POLL_SECONDS, aborter.signal);
    for (const message of first) batch.set(message.MessageId, message);
    const windowEndsAt = Date.now() + maxBatchingWindowSeconds * 1000;
    while (batch.size > 0 && batch.size < batchSize) {
      const remainingMs = windowEndsAt - Date.now();
      if (remainingMs <= 0) break;
      try {
        const more = await receive(batchSize - batch.size, Math.ceil(remainingMs / 1000));
        for (const message of more) batch.set(message.MessageId, message);
      } catch (err) {
        logError(`${queueArn}: receive failed while gathering a batch`, err);
        break;
      }
    }
    return [...batch.values()];
  };

  const toRecord = (message: Message): SQSRecord => ({
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: toRecordAttributes(message),
    messageAttributes: toRecordMessageAttributes(message),
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes && { md5OfMessageAttributes: message.MD5OfMessageAttributes }),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion,
  });

  const deleteMessages = async (messages: Message[]) => {
    for (const chunk of chunks(messages, MAX_MESSAGES_PER_RECEIVE)) {
      const output = await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: chunk.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
      if (output.Failed?.length) logError(`${queueArn}: some deletes failed`, output.Failed);
    }
  };

  const processBatch = async (messages: Message[]) => {
    let result: unknown;
    try {
      result = await invoke({ Records: messages.map(toRecord) });
    } catch (err) {
      logError(
        `${queueArn}: the function failed; ${messages.length} message(s) return after the visibility timeout`,
        err,
      );
      return;
    }
    const failed = reportBatchItemFailures
      ? reportedFailures(result, new Set(messages.map((m) => m.MessageId ?? '')))
      : new Set<string>();
    if (!failed) {
      logError(`${queueArn}: malformed batchItemFailures; the whole batch returns`, result);
      return;
    }
    await deleteMessages(messages.filter((m) => !failed.has(m.MessageId ?? '')));
  };

  const poll = async () => {
    while (!stopped()) {
      let messages: Message[];
      try {
        messages = await gather();
      } catch (err) {
        if (stopped()) return;
        logError(`${queueArn}: receive failed`, err);
        await sleep(RECEIVE_ERROR_BACKOFF_MS, undefined, { signal: aborter.signal }).catch(() => {});
        continue;
      }
      if (messages.length === 0) continue;
      try {
        await processBatch(messages);
      } catch (err) {
        logError(
          `${queueArn}: settling a batch failed; its messages return after the visibility timeout`,
          err,
        );
      }
    }
  };

  const pollers = Array.from({ length: options.pollers ?? 3 }, () => poll());

  return {
    stop: async () => {
      aborter.abort();
      await Promise.all(pollers);
    },
  };
};
