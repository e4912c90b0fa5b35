import { describe, expect, it } from 'vitest';
import { agentEventSchema } from '../../shared/schemas/agent-events.js';

const at = '2026-01-01T00:00:00.000Z';
const artifact = (url: string) => ({ seq: 1, at, type: 'artifact', kind: 'commit', url });
const usage = (tokens: Record<string, number>) => ({
  seq: 1,
  at,
  type: 'usage',
  model: 'm',
  inputTokens: 1,
  outputTokens: 1,
  ...tokens,
});
const step = (tokens: Record<string, number>) => ({
  seq: 1,
  at,
  type: 'step',
  kind: 'assistant',
  content: 'x',
  usage: { inputTokens: 1, outputTokens: 1, ...tokens },
});

const messages = (value: unknown) =>
  agentEventSchema.safeParse(value).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];

describe('agent events from the pod', () => {
  it.each([
    ['a commit', 'https://github.com/acme/app/commit/7f3a'],
    ['a local git server', 'http://127.0.0.1:4010/acme/app/commit/7f3a'],
    ['2 KB', `https://example.com/${'a'.repeat(2048 - 'https://example.com/'.length)}`],
  ])('take an http(s) artifact url: %s', (_, url) => {
    expect(messages(artifact(url))).toEqual([]);
  });

  it.each([
    'javascript:alert(1)',
    'file:///etc/passwd',
    'ftp://example.com/x',
    'data:text/html,<script>alert(1)</script>',
    'ssh://git@github.com/acme/app.git',
  ])('refuse an artifact url that is not http(s): %s', (url) => {
    expect(messages(artifact(url))).toEqual([expect.stringMatching(/^url: .*http/)]);
  });

  it('refuse a pull request artifact: pull requests are the control plane’s to open', () => {
    expect(messages({ ...artifact('https://github.com/acme/app/pull/7'), kind: 'pull_request' })).toEqual([
      expect.stringMatching(/^kind: /),
    ]);
  });

  it('refuse an artifact url over 2 KB', () => {
    const url = `https://example.com/${'a'.repeat(2049 - 'https://example.com/'.length)}`;
    expect(messages(artifact(url))).toEqual([expect.stringMatching(/^url: .*2048/)]);
  });

  it('take a seq up to 9,999,999,999, the most ten digits key, and no more', () => {
    expect(messages({ seq: 9_999_999_999, at, type: 'heartbeat' })).toEqual([]);
    expect(messages({ seq: 10_000_000_000, at, type: 'heartbeat' })).toEqual([
      expect.stringMatching(/^seq: .*9999999999/),
    ]);
  });

  it.each(['inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens'])(
    'cap %s at 100,000,000 an event, in usage events and in steps',
    (field) => {
      expect(messages(usage({ [field]: 100_000_000 }))).toEqual([]);
      expect(messages(step({ [field]: 100_000_000 }))).toEqual([]);
      expect(messages(usage({ [field]: 100_000_001 }))).toEqual([
        expect.stringMatching(new RegExp(`^${field}: .*100000000 tokens`)),
      ]);
      expect(messages(step({ [field]: 100_000_001 }))).toEqual([
        expect.stringMatching(new RegExp(`^usage.${field}: .*100000000 tokens`)),
      ]);
    },
  );
});
