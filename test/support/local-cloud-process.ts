import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import type { Endpoints } from '../../infra/local/cloud.js';
import type { FrontStats } from '../../infra/local/dynamodb-front.js';

declare module 'vitest' {
  export interface ProvidedContext {
    endpoints: Endpoints;
    startupOutput: string;
  }
}

/**
 * A vitest global setup that starts a local cloud in a process of its own, on free ports, from
 * `script` (which takes `--base-port` and `--state-dir` as `npm start` does), provides its endpoints
 * to the tests, and stops it after them; it fails the run if the DynamoDB front refused any function
 * a grant.
 */
export const localCloudSetup = (script: string) => async (project: TestProject) => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'local-cloud-'));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', script, '--base-port', '0', '--state-dir', stateDir],
    { cwd: path.resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
    if (process.env.LOCAL_CLOUD_VERBOSE) process.stderr.write(d);
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the local cloud did not start in 120 s:\n${output}`)),
      120_000,
    );
    child.once('exit', (code) => reject(new Error(`the local cloud exited with ${code}:\n${output}`)));
    child.stdout?.on('data', () => {
      if (output.includes('The local cloud is running.')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const endpoints = JSON.parse(await readFile(path.join(stateDir, 'endpoints.json'), 'utf8')) as Endpoints;
  project.provide('endpoints', endpoints);
  project.provide('startupOutput', output);
  return async () => {
    const refused = await refusedGrants(endpoints);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(stateDir, { recursive: true, force: true });
    if (refused.length > 0) {
      throw new Error(
        `the DynamoDB front refused functions what their grants in shared/manifest.ts lack: ${refused.join(', ')}`,
      );
    }
  };
};

/** `function Operation` for each refusal: every path the tests took must be within the grants. */
const refusedGrants = async (endpoints: Endpoints): Promise<string[]> => {
  const response = await fetch(`${endpoints.services.dynamodbFront}/_local/stats`);
  const { functions } = (await response.json()) as { functions: Record<string, Record<string, FrontStats>> };
  return Object.entries(functions).flatMap(([fn, operations]) =>
    Object.entries(operations)
      .filter(([, stats]) => stats.denied > 0)
      .map(([operation, stats]) => `${fn} ${operation} (${stats.denied}×)`),
  );
};
