import { fileURLToPath } from 'node:url';

/**
 * How every Lambda is bundled (esbuild): the function construct gives these to NodejsFunction, and the
 * benchmark builds with them to measure what ships. An ESM bundle that carries its own AWS SDK, which
 * loads faster than the runtime's copy of it.
 */
export const LAMBDA_BUNDLE = {
  format: 'esm',
  target: 'node22',
  mainFields: ['module', 'main'],
  minify: true,
  sourceMap: true,
  // stack traces need only the mappings; the source text would be parsed at every cold start
  sourcesContent: false,
  // ESM bundles have no `require`; CommonJS dependencies bundled into them still call it.
  banner: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
  alias: {
    // Lambda's credentials are in the environment: the SDK's default chain, less what never runs there
    '@aws-sdk/credential-provider-node': fileURLToPath(new URL('./env-credentials.ts', import.meta.url)),
  } as Record<string, string>,
} as const;
