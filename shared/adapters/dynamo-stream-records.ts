import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import type { RunChange } from '../domain/feed.js';
import type { Step } from '../domain/steps.js';
import { fromRunItem } from './dynamo-run-item.js';

/**
 * A record of the table's stream as the change of a run it is: a write of the run item (before and
 * after), or a pack of steps written. Anything else (other items, removals) is no change of a run.
 */
export const runChangeOf = (record: DynamoDBRecord): RunChange | undefined => {
  const image = record.dynamodb?.NewImage;
  const change = record.dynamodb?.SequenceNumber;
  if (!image || !change || record.eventName === 'REMOVE') return undefined;
  const after = unmarshall(image as Record<string, AttributeValue>);
  const sk = String(after.sk);
  const runId = String(after.pk).replace(/^RUN#/, '');
  if (sk === 'RUN') {
    const old = record.dynamodb?.OldImage;
    return {
      kind: 'run',
      runId,
      after: fromRunItem(after),
      ...(old ? { before: fromRunItem(unmarshall(old as Record<string, AttributeValue>)) } : {}),
      change,
    };
  }
  if (sk.startsWith('STEPS#') && Array.isArray(after.steps)) {
    return { kind: 'steps', runId, steps: after.steps as Step[], change };
  }
  return undefined;
};
