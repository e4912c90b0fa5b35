// @ts-check
/**
 * Mutation test of the domain: `npm run test:mutation`. Mutates shared/domain and runs the unit tests
 * that cover each mutant (vitest.mutation.config.ts); the report goes to reports/mutation/mutation.html.
 * StrykerJS stays on 9.6 while the project runs on Node 20: 10.x refuses to start below Node 22.
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  mutate: ['shared/domain/**/*.ts'],
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts' },
  // Each mutant runs only the tests that reach it.
  coverageAnalysis: 'perTest',
  // Much of the domain is tables built when a module loads (the transitions, the status sets, the
  // prices): their mutants matter, so they are kept, though each runs every test (most of the time).
  ignoreStatic: false,
  concurrency: 2,
  incremental: false,
  thresholds: { high: 95, low: 90, break: 90 },
  reporters: ['clear-text', 'progress', 'html'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
