import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Metafile } from 'esbuild';
import { bundleFunction } from '../infra/bundling/build.js';
import { FUNCTIONS, type FunctionName } from '../shared/manifest.js';
import { median } from './support/stats.js';

/**
 * (6) Each Lambda as CDK ships it (infra/bundling/lambda.ts: esbuild, ESM, minified, source map, the
 * AWS SDK bundled in) and how long a fresh Node process takes to import it: the part of a
 * cold start the code decides.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMPORTS = 5;
const run = promisify(execFile);

export interface HandlerResult {
  fn: FunctionName;
  entry: string;
  bundleBytes: number;
  sourceMapBytes: number;
  /** median of fresh-process imports, with NODE_OPTIONS=--enable-source-maps as deployed */
  importMs: number;
  /** the same without source maps */
  importMsWithoutSourceMaps: number;
  /** the largest contributors to the bundle, by package */
  largest: { name: string; bytes: number }[];
}

/** What a module is part of: its npm package, or the project's own code. */
const packageOf = (input: string) => {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
  return match ? (match[1] as string) : 'project code';
};

const largestOf = (metafile: Metafile, outfile: string) => {
  const output = Object.entries(metafile.outputs).find(([name]) => path.resolve(ROOT, name) === outfile)?.[1];
  const byPackage = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    byPackage.set(packageOf(input), (byPackage.get(packageOf(input)) ?? 0) + bytesInOutput);
  }
  return [...byPackage]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([name, bytes]) => ({ name, bytes }));
};

/** The bundle CDK builds for a function. */
const bundle = async (entry: string, outdir: string) => {
  const outfile = path.join(outdir, entry, 'index.mjs');
  return { outfile, metafile: await bundleFunction(entry, outfile) };
};

const TIMER = `const started = performance.now();
await import(process.argv[1]);
process.stdout.write(String(performance.now() - started));`;

/**
 * A fresh Node process imports the bundle, timed around the import alone, in the environment the local
 * cloud gives the function's sandboxes, which holds everything a handler reads at import.
 */
const coldImportMs = async (
  outfile: string,
  environment: Record<string, string>,
  sourceMaps: boolean,
): Promise<number> => {
  const env = { ...environment, NODE_OPTIONS: sourceMaps ? '--enable-source-maps' : '' };
  const { stdout } = await run(
    process.execPath,
    ['--input-type=module', '-e', TIMER, pathToFileURL(outfile).href],
    {
      env,
    },
  );
  return Number(stdout);
};

export const measureHandlers = async (
  log: (line: string) => void,
  environmentOf: (fn: FunctionName) => Record<string, string>,
): Promise<HandlerResult[]> => {
  const outdir = await mkdtemp(path.join(tmpdir(), 'bench-bundles-'));
  try {
    const results: HandlerResult[] = [];
    for (const [fn, definition] of Object.entries(FUNCTIONS) as [
      FunctionName,
      (typeof FUNCTIONS)[FunctionName],
    ][]) {
      const { outfile, metafile } = await bundle(definition.entry, outdir);
      const withMaps: number[] = [];
      const withoutMaps: number[] = [];
      for (let i = 0; i < IMPORTS; i++) {
        withMaps.push(await coldImportMs(outfile, environmentOf(fn), true));
        withoutMaps.push(await coldImportMs(outfile, environmentOf(fn), false));
      }
      const result: HandlerResult = {
        fn,
        entry: definition.entry,
        bundleBytes: (await stat(outfile)).size,
        sourceMapBytes: (await stat(`${outfile}.map`)).size,
        importMs: median(withMaps),
        importMsWithoutSourceMaps: median(withoutMaps),
        largest: largestOf(metafile, outfile),
      };
      log(
        `  ${definition.entry}: ${(result.bundleBytes / 1024).toFixed(0)} KB, import ${result.importMs.toFixed(0)} ms`,
      );
      results.push(result);
    }
    return results;
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
};
