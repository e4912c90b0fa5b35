import {
  DescribeExecutionCommand,
  type DescribeExecutionOutput,
  GetExecutionHistoryCommand,
  SFNClient,
} from '@aws-sdk/client-sfn';

/** An SDK client for a local emulator: dummy credentials, and no retries, so injected faults show. */
export const sfnClient = (endpoint: string) =>
  new SFNClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });

/** Polls `probe` until it returns a value other than undefined. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`nothing after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The execution once it has left RUNNING. */
export const finished = (
  client: SFNClient,
  executionArn: string,
  timeoutMs = 5_000,
): Promise<DescribeExecutionOutput> =>
  eventually(async () => {
    const execution = await client.send(new DescribeExecutionCommand({ executionArn }));
    return execution.status === 'RUNNING' ? undefined : execution;
  }, timeoutMs);

/** Names of the states the execution entered, in order. */
export async function statesEntered(client: SFNClient, executionArn: string): Promise<string[]> {
  const { events = [] } = await client.send(
    new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
  );
  return events.flatMap((event) =>
    event.stateEnteredEventDetails?.name ? [event.stateEnteredEventDetails.name] : [],
  );
}
