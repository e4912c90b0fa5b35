import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { LAMBDA_BUNDLE } from './lambda.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Bundles functions/<entry>.ts as NodejsFunction does with the project's settings, outside CDK. */
export const bundleFunction = async (entry: string, outfile: string): Promise<Metafile> => {
  const result = await build({
    entryPoints: [path.join(ROOT, 'functions', `${entry}.ts`)],
    outfile,
    bundle: true,
    platform: 'node',
    format: LAMBDA_BUNDLE.format,
    target: LAMBDA_BUNDLE.target,
    mainFields: [...LAMBDA_BUNDLE.mainFields],
    minify: LAMBDA_BUNDLE.minify,
    sourcemap: LAMBDA_BUNDLE.sourceMap,
    sourcesContent: LAMBDA_BUNDLE.sourcesContent,
    banner: { js: LAMBDA_BUNDLE.banner },
    alias: LAMBDA_BUNDLE.alias,
    metafile: true,
    logLevel: 'error',
    absWorkingDir: ROOT,
  });
  return result.metafile;
};
