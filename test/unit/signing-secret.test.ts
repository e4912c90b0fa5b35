import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingSecret } from '../../shared/adapters/signing-secret.js';

const SECRET = 'k'.repeat(64);

/** Stands in for the Parameters and Secrets extension's localhost endpoint. */
let server: Server;
let port: number;
const requests: IncomingMessage[] = [];
let answers: { status: number; body: unknown }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req);
    const answer = answers.shift() ?? { status: 200, body: { SecretString: SECRET } };
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const env = () => ({
  APPROVAL_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:1:secret:approval-links-AbCdEf',
  PARAMETERS_SECRETS_EXTENSION_HTTP_PORT: String(port),
  AWS_SESSION_TOKEN: 'session-token',
});

describe('the signing secrets', () => {
  it('come from APPROVAL_SIGNING_SECRET and CURSOR_SIGNING_SECRET locally, each for its purpose', async () => {
    const env = { APPROVAL_SIGNING_SECRET: SECRET, CURSOR_SIGNING_SECRET: 'c'.repeat(32) };
    expect(await signingSecret('approval', env)()).toBe(SECRET);
    expect(await signingSecret('cursor', env)()).toBe('c'.repeat(32));
  });

  it('refuse a short secret and a missing configuration at cold start', () => {
    expect(() => signingSecret('approval', { APPROVAL_SIGNING_SECRET: 'short' })).toThrow(/shorter than 32/);
    expect(() => signingSecret('approval', {})).toThrow(/APPROVAL_SIGNING_SECRET or APPROVAL_SECRET_ARN/);
    // one purpose never falls back on the other's key
    expect(() => signingSecret('cursor', { APPROVAL_SIGNING_SECRET: SECRET })).toThrow(
      /CURSOR_SIGNING_SECRET or CURSOR_SECRET_ARN/,
    );
  });

  it('are read once through the extension, with the session token, and then reused', async () => {
    requests.length = 0;
    const secret = signingSecret('approval', env());
    expect(await Promise.all([secret(), secret()])).toEqual([SECRET, SECRET]);
    expect(await secret()).toBe(SECRET);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.url).toBe(
      `/secretsmanager/get?secretId=${encodeURIComponent(env().APPROVAL_SECRET_ARN)}`,
    );
    expect(requests[0]?.headers['x-aws-parameters-secrets-token']).toBe('session-token');
  });

  it('are read again by the next request after a failed read', async () => {
    requests.length = 0;
    answers = [{ status: 400, body: { message: 'not ready' } }];
    const secret = signingSecret('approval', env());
    await expect(secret()).rejects.toThrow(/answered 400/);
    expect(await secret()).toBe(SECRET);
    expect(requests).toHaveLength(2);
  });
});
