import { defineConfig } from 'vitest/config';

// The mutation test (stryker.config.mjs) runs the domain's fast tests only: the `unit` project of
// vitest.config.ts without its slow test/infra and pod tests, which never exercise shared/domain.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    environment: 'node',
    setupFiles: ['test/support/sdk-matchers.ts'],
    testTimeout: 20_000,
  },
});
