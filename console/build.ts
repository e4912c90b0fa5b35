import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';

/** The console's JavaScript may weigh at most this much gzipped. */
export const JS_BUDGET_GZIP_BYTES = 150 * 1024;

const CONFIG_FILE = path.join(import.meta.dirname, 'vite.config.ts');

export interface ConsoleBuild {
  outDir: string;
  /** the JavaScript's total size, gzipped */
  jsGzipBytes: number;
}

/**
 * Builds the console into `outDir` (index.html and hashed assets; `config.json` is the deployment's
 * and is not part of the build) and refuses a build whose JavaScript is over budget.
 */
export const buildConsole = async (outDir: string): Promise<ConsoleBuild> => {
  await build({ configFile: CONFIG_FILE, build: { outDir, emptyOutDir: true }, logLevel: 'warn' });
  const assets = path.join(outDir, 'assets');
  let jsGzipBytes = 0;
  for (const name of await readdir(assets)) {
    if (name.endsWith('.js')) jsGzipBytes += gzipSync(await readFile(path.join(assets, name))).length;
  }
  if (jsGzipBytes > JS_BUDGET_GZIP_BYTES) {
    throw new Error(
      `the console's JavaScript is ${jsGzipBytes} bytes gzipped, over its budget of ${JS_BUDGET_GZIP_BYTES}`,
    );
  }
  return { outDir, jsGzipBytes };
};

// `npm run build:console [outDir]` (and the CDK app's asset bundling): build, and say what it weighs.
if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  const outDir = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, 'dist'));
  buildConsole(outDir).then(
    ({ jsGzipBytes }) =>
      console.error(
        `console built into ${outDir}: JavaScript ${(jsGzipBytes / 1024).toFixed(1)} KB gzipped (budget ${JS_BUDGET_GZIP_BYTES / 1024} KB)`,
      ),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
