import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AwsError,
  type RunningServer,
  startJsonProtocolServer,
} from '../../infra/local/emulators/json-protocol.js';

const GROUP = '/execution-runs/pods';

describe('the log reader the API is wired with', () => {
  // A CloudWatch Logs endpoint that throttles the first calls, to see the client back off and retry.
  let server: RunningServer;
  let throttleNext = 0;
  let calls = 0;
  const saved = { ...process.env };
  beforeAll(async () => {
    server = await startJsonProtocolServer({
      targetPrefix: 'Logs_20140328',
      errorNamespace: 'com.amazonaws.logs',
      operations: {
        GetLogEvents: () => {
          calls++;
          if (throttleNext > 0) {
            throttleNext--;
            throw new AwsError('ThrottlingException', 'Rate exceeded');
          }
          return {
            events: [{ timestamp: 1, message: 'hello' }],
            nextForwardToken: 'f/1',
            nextBackwardToken: 'b/0',
          };
        },
      },
    });
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: server.url,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
  });
  afterAll(async () => {
    process.env = { ...saved };
    await server.close();
  });

  it('retries throttled reads with back-off and answers once CloudWatch does', async () => {
    const { logReader } = await import('../../shared/wiring.js');
    throttleNext = 1;
    calls = 0;
    const page = await logReader(GROUP).getEvents({ logStream: 's', limit: 10, forward: false });
    expect(page?.events).toEqual([{ timestamp: 1, message: 'hello' }]);
    expect(calls).toBe(2);
  });
});
