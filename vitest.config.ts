import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            'test/unit/**/*.test.ts',
            'test/infra/**/*.test.ts',
            'pod/**/*.test.ts',
            'console/**/*.test.ts',
          ],
          environment: 'node',
          setupFiles: ['test/support/sdk-matchers.ts'],
          // The unit tests share two cores with the DynamoDB Local JVMs and the local cloud of the other
          // projects; a generous timeout keeps a loaded machine from failing a correct test.
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'local',
          include: ['test/local/**/*.test.ts', 'test/statemachine/**/*.test.ts', 'test/data/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'integration',
          // e2e: browser tests against the same local cloud
          include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'faults',
          // faults injected into a local cloud of its own; each test states the bound its runs end within
          include: ['test/faults/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/faults/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          // after the other projects, so no other test's load skews the bounds its runs are held to
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
