import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { createDevIssuer } from '../infra/local/dev-auth.js';
import { CONSOLE_TOKEN_KEY } from '../shared/schemas/console.js';
import { load, runItems, type Tenant } from './list-scale.js';
import type { BenchCloud } from './support/cloud.js';
import { percentile } from './support/stats.js';

/**
 * (10) The web console's runs page for an account with 1,000 runs: from the navigation to its first
 * page of rows drawn, in Debian's chromium on the local cloud (the HTML, the script, config.json and
 * the API's first page, then the render). The runs are written as dispatch writes them, then ended.
 */

export const CONSOLE_RUNS = 1_000;
const SAMPLES = 20;
const WARM_UP = 3;
const PAGE_ROWS = 25;
const TENANT: Tenant = { accountId: 'bench-console-account', projectId: 'bench-console-project' };
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export interface ConsolePageResult {
  runs: number;
  samples: number;
  /** navigation to the first page's rows drawn */
  p50Ms: number;
  p95Ms: number;
}

export const measureConsolePage = async (bench: BenchCloud): Promise<ConsolePageResult> => {
  const e = bench.cloud.endpoints;
  await load(bench.db, e.tableName, await runItems(CONSOLE_RUNS, 0, TENANT));
  const issuer = await createDevIssuer({
    issuer: e.issuer,
    audience: e.audience,
    keyPath: e.devIssuerKeyPath,
  });
  const token = await issuer.sign({
    sub: 'bench-console-admin',
    'custom:accountId': TENANT.accountId,
    'custom:accountRole': 'admin',
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // signed in as the account's admin, as the sign-in would leave the browser
    await context.addInitScript(
      `localStorage.setItem(${JSON.stringify(CONSOLE_TOKEN_KEY)}, ${JSON.stringify(token)})`,
    );
    const samples: number[] = [];
    for (let i = 0; i < WARM_UP + SAMPLES; i++) {
      const page = await context.newPage();
      const started = performance.now();
      await page.goto(`${e.consoleUrl}/runs`);
      await page
        .locator('tr[data-run-id]')
        .nth(PAGE_ROWS - 1)
        .waitFor();
      if (i >= WARM_UP) samples.push(performance.now() - started);
      await page.close();
    }
    return {
      runs: CONSOLE_RUNS,
      samples: SAMPLES,
      p50Ms: percentile(samples, 50),
      p95Ms: percentile(samples, 95),
    };
  } finally {
    await browser.close();
  }
};
