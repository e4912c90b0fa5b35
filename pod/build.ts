import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

/**
 * The one way the pod is bundled: the Dockerfile runs this file, and the local cloud calls
 * `buildPodBundle` to run the same bundle as a child process.
 */
export const POD_ENTRY = fileURLToPath(new URL('./src/main.ts', import.meta.url));

/** `entry` is another entry point for the same code, such as the local cloud's shared pod host. */
export const buildPodBundle = async (outfile: string, entry = POD_ENTRY): Promise<void> => {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    legalComments: 'none',
    logLevel: 'warning',
  });
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outfile = process.argv[2];
  if (!outfile) {
    process.stderr.write('usage: tsx pod/build.ts <outfile>\n');
    process.exit(2);
  }
  await buildPodBundle(outfile);
}
