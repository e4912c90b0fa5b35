import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** Imports go one way (DESIGN §5): these hold the layers apart as the code grows. */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const sourceFiles = (dir: string): string[] =>
  readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(relative);
    return /\.tsx?$/.test(entry.name) && !entry.name.endsWith('.test.ts') ? [relative] : [];
  });

/** Every module a file imports (static, dynamic and type-only), resolved against the root when relative. */
const importsOf = (file: string): string[] => {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import\()\s*['"]([^'"]+)['"]/g)].map((m) => m[1] as string);
  return specifiers.map((s) => (s.startsWith('.') ? path.join(path.dirname(file), s) : s));
};

const offending = (files: string[], bad: (specifier: string) => boolean) =>
  files.flatMap((file) =>
    importsOf(file)
      .filter(bad)
      .map((specifier) => `${file} imports ${specifier}`),
  );

describe('the import structure', () => {
  it('keeps shared/ free of infra/, functions/, bench/ and the pod', () => {
    const upward = (s: string) => /^(infra|functions|bench|pod|test)\//.test(s);
    expect(offending(sourceFiles('shared'), upward)).toEqual([]);
  });

  it('keeps the domain free of the AWS SDK, Lambda types and I/O', () => {
    const sdk = (s: string) =>
      /^@aws-sdk\//.test(s) ||
      /^@aws-lambda-powertools\//.test(s) ||
      s === 'aws-lambda' ||
      /^node:(fs|http|https|net|child_process)/.test(s);
    expect(offending(sourceFiles('shared/domain'), sdk)).toEqual([]);
    const outward = (s: string) => /^shared\/(adapters|usecases|http)\//.test(s) || s === 'shared/wiring.js';
    expect(offending(sourceFiles('shared/domain'), outward)).toEqual([]);
  });

  it('keeps the use cases off the adapters: they get them as ports', () => {
    const adapters = (s: string) =>
      /^shared\/adapters\//.test(s) || s === 'shared/wiring.js' || /^@aws-sdk\//.test(s);
    expect(offending(sourceFiles('shared/usecases'), adapters)).toEqual([]);
  });

  it('lets the CLI share only the wire contracts and the domain, and talk to nothing but the API and its stream', () => {
    const beyond = (s: string) =>
      (/^shared\//.test(s) && !/^shared\/(schemas|domain)\//.test(s)) ||
      /^(infra|functions|bench|pod|test)\//.test(s) ||
      /^@aws-sdk\//.test(s) ||
      /^@aws-lambda-powertools\//.test(s);
    expect(sourceFiles('cli').length).toBeGreaterThan(0);
    expect(offending(sourceFiles('cli'), beyond)).toEqual([]);
  });

  it('lets the console share only the wire contracts and the domain, and reach nothing but the API, its stream and sign-in', () => {
    const beyond = (s: string) =>
      (/^shared\//.test(s) && !/^shared\/(schemas|domain)\//.test(s)) ||
      /^(infra|functions|bench|pod|test|cli)\//.test(s) ||
      /^@aws-sdk\//.test(s) ||
      /^node:/.test(s);
    expect(sourceFiles('console/src').length).toBeGreaterThan(0);
    expect(offending(sourceFiles('console/src'), beyond)).toEqual([]);
  });

  it('lets the pod share only the wire contracts and the domain’s values', () => {
    const beyond = (s: string) =>
      /^shared\//.test(s) && !/^shared\/(schemas\/|domain\/(run|pull-request)\.js$|zod\.js$)/.test(s);
    expect(offending(sourceFiles('pod'), beyond)).toEqual([]);
  });
});
