import { DescribeLogGroupsCommand, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { describe, expect, it } from 'vitest';
import { runStoryFilterPattern } from '../../infra/constructs/run-story.js';
import { dispatch, endpoints, waitForTerminal } from './support/api.js';
import { cloudwatch, waitForTaskStopped } from './support/aws.js';

interface StoryLine {
  group: string;
  timestamp: number;
  message: string;
}

/** What the saved query's filter finds, run as a FilterLogEvents pattern on each log group. */
const story = async (runId: string): Promise<StoryLine[]> => {
  const client = cloudwatch();
  const groups = (await client.send(new DescribeLogGroupsCommand({}))).logGroups ?? [];
  const lines: StoryLine[] = [];
  for (const { logGroupName } of groups) {
    let nextToken: string | undefined;
    do {
      const page = await client.send(
        new FilterLogEventsCommand({
          logGroupName,
          filterPattern: runStoryFilterPattern(runId),
          nextToken,
        }),
      );
      for (const event of page.events ?? []) {
        lines.push({
          group: logGroupName as string,
          timestamp: event.timestamp as number,
          message: event.message as string,
        });
      }
      nextToken = page.nextToken;
    } while (nextToken);
  }
  return lines.sort((a, b) => a.timestamp - b.timestamp);
};

interface EmfLine {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
  [key: string]: unknown;
}
const isEmf = (value: unknown): value is EmfLine =>
  typeof value === 'object' && value !== null && '_aws' in value;
const json = (message: string): unknown => {
  try {
    return JSON.parse(message);
  } catch {
    return undefined;
  }
};

describe("a run's story in the local CloudWatch Logs", () => {
  it("finds with the saved query's filter the run's lines from its functions, its state machine and its pod, and its metrics", async () => {
    // a model the price table lists: the Model dimension names only those (others are `other`)
    const model = 'claude-haiku-4-5';
    const { body } = await dispatch({
      config: { demo: { steps: 2, stepDelayMs: 10, usage: [{ model, inputTokens: 100, outputTokens: 10 }] } },
    });
    const { runId } = body;
    const { run } = await waitForTerminal(runId, 90_000);
    expect(run.status).toBe('COMPLETED');
    await waitForTaskStopped(run.taskArn as string);

    // the metrics come from the table's stream, a moment after the writes; the cost after the settlement
    const deadline = Date.now() + 30_000;
    let lines: StoryLine[] = [];
    const metricNames = () =>
      new Set(
        lines
          .map((line) => json(line.message))
          .filter(isEmf)
          .flatMap((emf) =>
            emf._aws.CloudWatchMetrics.flatMap((m) => m.Metrics.map((metric) => metric.Name)),
          ),
      );
    do {
      lines = await story(runId);
      if (metricNames().has('RunCostUsd')) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    } while (Date.now() < deadline);

    const { functionLogGroupPrefix, stateMachineLogGroup, podLogGroup } = endpoints();
    const functionLines = lines.filter((line) => line.group.startsWith(functionLogGroupPrefix));
    const executionLines = lines.filter((line) => line.group === stateMachineLogGroup);
    const podLines = lines.filter((line) => line.group === podLogGroup);

    // the functions: each line names the run as its runId, not only somewhere in its text, and its account
    expect(functionLines.length).toBeGreaterThan(0);
    for (const line of functionLines) {
      expect(json(line.message), line.message).toMatchObject({ runId, accountId: run.accountId });
    }
    // the state machine: every event of the execution, from its start to its success
    const events = executionLines.map(
      (line) => json(line.message) as { type: string; execution_arn: string },
    );
    expect(events.map((event) => event.type)).toEqual(
      expect.arrayContaining(['ExecutionStarted', 'TaskScheduled', 'ExecutionSucceeded']),
    );
    expect(events.every((event) => event.execution_arn.endsWith(`:${runId}`))).toBe(true);
    // the pod: each of its lines begins with the run id
    expect(podLines.length).toBeGreaterThan(0);
    expect(podLines.every((line) => line.message.startsWith(`[${runId}] `))).toBe(true);

    // the run metrics, in EMF, with their documented dimensions
    const emf = functionLines.map((line) => json(line.message)).filter(isEmf);
    for (const line of emf) expect(line).toMatchObject({ runId, accountId: run.accountId });
    const dimensionsOf = (name: string) =>
      emf.flatMap((line) =>
        line._aws.CloudWatchMetrics.filter((m) => m.Metrics.some((metric) => metric.Name === name)).map(
          (m) => ({ namespace: m.Namespace, dimensions: m.Dimensions, values: line }),
        ),
      );
    for (const name of [
      'RunsDispatched',
      'RunsStarted',
      'QueueWait',
      'LaunchAttempts',
      'RunDuration',
      'RunCostUsd',
    ]) {
      expect(dimensionsOf(name), name).toEqual([
        expect.objectContaining({ namespace: 'ExecutionRuns', dimensions: [['service']] }),
      ]);
    }
    expect(dimensionsOf('RunsEnded')).toEqual([
      {
        namespace: 'ExecutionRuns',
        dimensions: [
          ['service', 'Status'],
          ['service', 'ExitReason'],
        ],
        values: expect.objectContaining({ Status: 'COMPLETED', ExitReason: 'completed', RunsEnded: 1 }),
      },
    ]);
    expect(dimensionsOf('TokensUsed')).toEqual([
      {
        namespace: 'ExecutionRuns',
        dimensions: [['service', 'Model']],
        values: expect.objectContaining({ Model: model, TokensUsed: 220 }),
      },
    ]);
    expect(dimensionsOf('SpendUsd').length).toBeGreaterThan(0);
  });
});
