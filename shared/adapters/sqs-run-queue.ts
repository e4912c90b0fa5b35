import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { RunQueue } from '../ports.js';

/** The runs queue: one message per run to start, carrying only the run id. */
export class SqsRunQueue implements RunQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async enqueue(runId: string): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify({ runId }) }),
    );
  }
}
