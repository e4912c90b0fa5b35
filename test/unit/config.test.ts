import { afterEach, describe, expect, it } from 'vitest';
import { readEnv } from '../../shared/config.js';

describe('readEnv', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('reads the named variables and applies defaults for the ones not set', () => {
    process.env.TABLE_NAME = 'runs';
    delete process.env.CONTROL_POLL_MS;
    delete process.env.TENANT_CLAIM;
    expect(readEnv('TABLE_NAME', 'CONTROL_POLL_MS', 'TENANT_CLAIM')).toEqual({
      TABLE_NAME: 'runs',
      CONTROL_POLL_MS: 10_000,
      TENANT_CLAIM: 'custom:accountId',
    });
  });

  it('fails with the name of a missing required variable', () => {
    delete process.env.QUEUE_URL;
    expect(() => readEnv('QUEUE_URL')).toThrow(/QUEUE_URL/);
  });
});
