#!/usr/bin/env node
// The `runs` command: loads the TypeScript CLI through tsx, so it runs with no build step.
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const tsconfig = fileURLToPath(new URL('../tsconfig.json', import.meta.url));
const { main } = await tsImport('./main.ts', { parentURL: import.meta.url, tsconfig });

const interrupted = new AbortController();
process.once('SIGINT', () => interrupted.abort());
// a reader that stopped reading (`runs list | head`) is not an error
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: interrupted.signal,
});
