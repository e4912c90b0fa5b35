import { describe, expect, it } from 'vitest';
import { dispatchRequestSchema, projectRequestSchema } from '../../shared/schemas/api.js';

const project = (repos: string[]) => projectRequestSchema.safeParse({ name: 'P', repos });
const dispatch = (repos: string[]) =>
  dispatchRequestSchema.safeParse({ itemId: 'I', podId: 'p', mode: 'autopilot', prompt: 'x', repos });

describe('a repository, as a project or a dispatch names it', () => {
  it.each([
    'https://github.com/org/app.git',
    'https://github.com/org/app',
    'http://127.0.0.1:4518/demo/demo-app.git',
  ])('takes the clone URL %s', (url) => {
    expect(project([url]).success).toBe(true);
    expect(dispatch([url]).success).toBe(true);
  });

  it.each([
    ['a bare owner/name', 'org/app'],
    ['an ssh address', 'git@github.com:org/app.git'],
    ['a URL with a password in it', 'https://x-access-token:ghs_secret@github.com/org/app.git'],
    ['a URL with a user in it', 'https://someone@github.com/org/app.git'],
    ['a host without a repository', 'https://github.com/'],
    ['a file path', 'file:///srv/git/app.git'],
    ['an overlong URL', `https://github.com/org/${'a'.repeat(300)}`],
  ])('refuses %s with a message that says what a repository is', (_, url) => {
    for (const parsed of [project([url]), dispatch([url])]) {
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/clone URL|at most 300/);
    }
  });
});
