import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleFunction } from '../../infra/bundling/build.js';

const run = promisify(execFile);

/** A handler as it ships, run in a fresh Node process with only what Lambda would give it. */
describe('Lambda bundle', () => {
  let dir: string;
  let outfile: string;
  let inputs: string[];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lambda-bundle-'));
    outfile = path.join(dir, 'checks', 'index.mjs');
    const metafile = await bundleFunction('checks', outfile);
    // what ships: esbuild also lists modules it read and then shook out entirely
    const output = Object.entries(metafile.outputs).find(([name]) => name.endsWith('index.mjs'))?.[1];
    inputs = Object.entries(output?.inputs ?? {})
      .filter(([, { bytesInOutput }]) => bytesInOutput > 0)
      .map(([input]) => input);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("leaves out the SDK's default credential chain and classic zod", () => {
    expect(inputs.filter((i) => /credential-provider-(node|ini|sso|process)|nested-clients/.test(i))).toEqual(
      [],
    );
    expect(inputs.filter((i) => /node_modules\/zod\/v4\/classic|zod\/v4\/locales\/(?!en)/.test(i))).toEqual(
      [],
    );
    expect(inputs.some((i) => i.includes('credential-provider-env'))).toBe(true);
  });

  it('signs its AWS calls with the role credentials Lambda puts in the environment', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const dynamo = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = dynamo.address() as AddressInfo;
      const script = `const { handler } = await import(${JSON.stringify(outfile)});
const context = { functionName: 'checks', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 10000 };
console.log(JSON.stringify(await handler({ runId: 'run_1' }, context)));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        env: {
          PATH: process.env.PATH,
          AWS_REGION: 'eu-west-1',
          AWS_ACCESS_KEY_ID: 'AKIDLAMBDAROLE',
          AWS_SECRET_ACCESS_KEY: 'secret',
          AWS_SESSION_TOKEN: 'role-session',
          AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${port}`,
          TABLE_NAME: 'runs',
          AGENT_API_URL: 'https://agent.example.com',
          POD_HEARTBEAT_SECONDS: '60',
          POD_TASK_DEFINITION_ARN: 'arn:aws:ecs:us-east-1:123456789012:task-definition/pod:1',
          POWERTOOLS_LOG_LEVEL: 'SILENT',
        },
      });

      // the fake table has no such run: the checks refuse it, having asked DynamoDB
      expect(JSON.parse(stdout)).toMatchObject({ ok: false, message: 'run run_1 does not exist' });
      expect(seen.length).toBeGreaterThan(0);
      expect(seen[0]?.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=AKIDLAMBDAROLE\/\d{8}\/eu-west-1\/dynamodb\//,
      );
      expect(seen[0]?.['x-amz-security-token']).toBe('role-session');
    } finally {
      dynamo.close();
    }
  });
});
