import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * The one way the pod is bundled: the Dockerfile runs this file, and the local cloud calls
 * `buildPodBundle` to run the same bundle as a child process.
 */
export const POD_ENTRY = fileURLToPath(new URL('./src/main.ts', import.meta.url));

/**
 * The Claude Agent SDK is never bundled: it finds the Claude Code CLI it starts in its own package
 * folder, and its licence is not ours to redistribute in a file of our own. The image installs the
 * package beside the bundle (`package`); a bundle the local cloud runs from a temporary folder imports
 * it from this checkout (`checkout`).
 */
const CLAUDE_AGENT_SDK = '@anthropic-ai/claude-agent-sdk';

const sdkFromCheckout: Plugin = {
  name: 'claude-agent-sdk-from-checkout',
  setup(bundler) {
    bundler.onResolve({ filter: /^@anthropic-ai\/claude-agent-sdk$/ }, () => ({
      path: fileURLToPath(import.meta.resolve(CLAUDE_AGENT_SDK)),
      external: true,
    }));
  },
};

/** `entry` is another entry point for the same code, such as the local cloud's shared pod host. */
export const buildPodBundle = async (
  outfile: string,
  entry = POD_ENTRY,
  sdk: 'package' | 'checkout' = 'checkout',
): Promise<void> => {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    legalComments: 'none',
    logLevel: 'warning',
    ...(sdk === 'package' ? { external: [CLAUDE_AGENT_SDK] } : { plugins: [sdkFromCheckout] }),
  });
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outfile = process.argv[2];
  if (!outfile) {
    process.stderr.write('usage: tsx pod/build.ts <outfile>\n');
    process.exit(2);
  }
  await buildPodBundle(outfile, POD_ENTRY, 'package');
}
