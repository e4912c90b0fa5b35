import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForTerminal } from '../integration/support/api.js';
import { approvalLinkFor, dispatchSupervised } from '../integration/support/approvals.js';

/** Debian's chromium, which .ci/run installs; playwright-core brings no browser of its own. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let profile: string;
let browser: BrowserContext;

beforeAll(async () => {
  // A fresh profile each run (the persistent context's user data dir).
  profile = await mkdtemp(path.join(tmpdir(), 'approval-e2e-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
  });
});

afterAll(async () => {
  await browser?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

describe('the approval link in a browser', () => {
  it('shows the checkpoint on a phone, and Approve lets the run complete', async () => {
    const { body: queued } = await dispatchSupervised();
    const { pending, link } = await approvalLinkFor(queued.runId);
    const page = await browser.newPage();

    const opened = await page.goto(link.href);
    expect(opened?.status()).toBe(200);
    expect(await page.locator('h1').textContent()).toBe('Approval needed');
    expect(await page.locator('.summary').textContent()).toBe(pending.summary);
    expect(await page.locator('dl').textContent()).toContain('Demo project');
    // Readable on a phone: nothing wider than the screen.
    expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);

    await Promise.all([
      page.waitForURL((url) => url.search === ''),
      page.getByRole('button', { name: 'Approve' }).click(),
    ]);
    expect(await page.locator('h1').textContent()).toBe('Approved');
    expect(await page.locator('.notice').textContent()).toContain('Your approval was recorded');

    const { run } = await waitForTerminal(queued.runId);
    expect(run.status).toBe('COMPLETED');
    expect(run.approvals?.[0]).toMatchObject({
      decision: 'approved',
      via: 'email_link',
    });
  });

  it('cancels the run with Cancel', async () => {
    const { body: queued } = await dispatchSupervised();
    const { link } = await approvalLinkFor(queued.runId);
    const page = await browser.newPage();
    await page.goto(link.href);
    await Promise.all([
      page.waitForURL((url) => url.search === ''),
      page.getByRole('button', { name: 'Cancel the run' }).click(),
    ]);
    expect(await page.locator('h1').textContent()).toBe('Cancelled');
    const { run } = await waitForTerminal(queued.runId);
    expect(run.status).toBe('ABANDONED');
  });
});
