import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, endpoints, waitForRun, waitForTerminal } from '../integration/support/api.js';
import { scriptedPodPausingAt } from '../integration/support/approvals.js';

/** Debian's chromium; playwright-core brings no browser of its own. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'];

type Person = 'admin' | 'member' | 'outsider';

let browser: Browser;
const contexts: BrowserContext[] = [];
/** what the browser reported as an error on any page: the console must make none */
const consoleErrors: string[] = [];

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

beforeEach(() => {
  consoleErrors.length = 0;
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
});

/**
 * A browser signed in to the console as one of the local cloud's people, the way a person does it:
 * the sign-in page's button. `expected` are resource errors the test provokes (a refused read).
 */
const signedIn = async (person: Person, viewport = { width: 1280, height: 900 }) => {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  watch(page);
  await page.goto(`${endpoints().consoleUrl}/runs`);
  await page.getByRole('button', { name: new RegExp(`^Sign in as ${personId(person)} `) }).click();
  await page.getByRole('heading', { name: 'Runs', exact: true }).waitFor();
  return { context, page };
};

const personId = (person: Person) =>
  ({ admin: 'demo-admin', member: 'demo-member', outsider: 'outsider' })[person];

const watch = (page: Page, expected: RegExp[] = []) => {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    if (expected.some((pattern) => pattern.test(message.text()))) return;
    consoleErrors.push(`${page.url()}: ${message.text()}`);
  });
  page.on('pageerror', (err) => consoleErrors.push(`${page.url()}: ${err.message}`));
};

const rowOf = (page: Page, runId: string) => page.locator(`tr[data-run-id="${runId}"]`);

/** Runs that end at once, CANCELLED by the checks, on a disabled pod of their own: a list with a known end. */
const cancelledRuns = async (count: number) => {
  const podId = `console-off-${Date.now().toString(36)}`;
  const saved = await api('PUT', `/v1/pods/${podId}`, {
    body: { name: podId, cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' }, enabled: false },
  });
  expect(saved.status).toBe(200);
  const runs: Run[] = [];
  for (let i = 0; i < count; i++) {
    const { status, body } = await dispatch({ podId, itemId: `LIST-${i}` });
    expect(status).toBe(202);
    runs.push(body);
  }
  for (const run of runs) await waitForTerminal(run.runId);
  return { podId, runIds: runs.map((run) => run.runId) };
};

describe('the web console', () => {
  it('dispatches a supervised run from the form, shows it live, and approves it to COMPLETED', async () => {
    const podId = await scriptedPodPausingAt(['plan']);
    const { context, page: list } = await signedIn('admin');
    const form = await context.newPage();
    watch(form);

    await form.goto(`${endpoints().consoleUrl}/dispatch`);
    await form.getByLabel('Item').fill('CONSOLE-1');
    await form.getByLabel('Pod', { exact: true }).selectOption(podId);
    await form.getByLabel('supervised').check();
    await form.getByLabel('Prompt').fill('Add a health check');
    await form.getByLabel('Demo script').fill('{"steps": 4, "stepDelayMs": 400}');
    await form.getByRole('button', { name: 'Dispatch' }).click();
    const dispatched = form.getByRole('status').getByRole('link');
    const runId = (await dispatched.textContent()) as string;
    expect(runId).toMatch(/^run_/);

    // the list, open in the other tab since before the dispatch, shows the run without a reload
    await rowOf(list, runId).waitFor({ timeout: 15_000 });
    await rowOf(list, runId).getByRole('link', { name: 'CONSOLE-1' }).click();
    expect(new URL(list.url()).pathname).toBe(`/runs/${runId}`);

    // the phase bar advances as the stream brings the run's phases
    const progress = list.getByRole('progressbar', { name: 'Phase' });
    const reached = new Set<string>();
    const approve = list.getByRole('button', { name: 'Approve' });
    for (const deadline = Date.now() + 60_000; !(await approve.isVisible()); ) {
      reached.add((await progress.getAttribute('aria-valuenow')) as string);
      expect(Date.now()).toBeLessThan(deadline);
      await list.waitForTimeout(50);
    }
    await expect(list.locator('.checkpoint .summary').textContent()).resolves.toBeTruthy();
    // what the agent sent with the checkpoint, which the API keeps beside the run
    const { body: checkpoint } = await api<{ details?: string }>('GET', `/v1/runs/${runId}/checkpoint`);
    await list.locator('.checkpoint-details pre').waitFor();
    expect(await list.locator('.checkpoint-details pre').textContent()).toBe(checkpoint.details);
    await approve.click();
    const status = list.locator('.run-head .status');
    for (const deadline = Date.now() + 60_000; (await status.textContent()) !== 'Completed'; ) {
      reached.add((await progress.getAttribute('aria-valuenow')) as string);
      expect(Date.now()).toBeLessThan(deadline);
      await list.waitForTimeout(50);
    }
    await list.locator('a.pull-request').waitFor({ timeout: 15_000 });
    reached.add((await progress.getAttribute('aria-valuenow')) as string);

    // the frozen config, read when opened
    await list.getByText('Frozen config').click();
    await expect(list.locator('.config pre').textContent()).resolves.toContain(
      '"prompt": "Add a health check"',
    );

    const run = (await api<Run>('GET', `/v1/runs/${runId}`)).body;
    expect(run.status).toBe('COMPLETED');
    expect(run).toMatchObject({ source: 'manual', mode: 'supervised', podId, attribution: 'demo-admin' });
    expect(await list.locator('a.pull-request').getAttribute('href')).toBe(run.pullRequest?.url);
    expect(run.approvals?.[0]).toMatchObject({ decision: 'approved', via: 'api', by: 'demo-admin' });
    // more than two points of the bar were seen: it moved while the page was open
    expect(reached.size).toBeGreaterThan(2);
    expect(
      [...reached]
        .map(Number)
        .sort((a, b) => a - b)
        .at(-1),
    ).toBe(5);
    expect(consoleErrors).toEqual([]);
  });

  it('filters with several chips at once, keeps them in the URL, and loads more to the end, each run once', async () => {
    const { podId, runIds } = await cancelledRuns(30);
    const { page } = await signedIn('admin');

    await page.goto(`${endpoints().consoleUrl}/runs?podId=${podId}`);
    await page.getByRole('button', { name: 'Failed' }).click();
    // from the keyboard as well: the chips are buttons
    await page.getByRole('button', { name: 'Queued' }).focus();
    await page.keyboard.press('Space');
    await page.waitForURL((url) => url.searchParams.get('status') === 'FAILED,CANCELLED,STOPPED,QUEUED');
    await expect(page.getByRole('button', { name: 'Failed' }).getAttribute('aria-pressed')).resolves.toBe(
      'true',
    );

    // the view is shared by its URL: a fresh load shows the same filters and runs
    await page.reload();
    await expect(page.getByRole('button', { name: 'Queued' }).getAttribute('aria-pressed')).resolves.toBe(
      'true',
    );
    await expect(page.getByLabel('Pod', { exact: true }).inputValue()).resolves.toBe(podId);
    await page.locator('tr[data-run-id]').first().waitFor();
    const rows = page.locator('tr[data-run-id]');
    expect(await rows.count()).toBe(25);
    while (await page.getByRole('button', { name: 'Load more' }).isVisible()) {
      const before = await rows.count();
      await page.getByRole('button', { name: 'Load more' }).click();
      await expect.poll(() => rows.count()).toBeGreaterThan(before);
    }
    await page.getByText('That is every run.').waitFor();
    const shown = await page
      .locator('tr[data-run-id]')
      .evaluateAll((rows) => rows.map((row) => row.getAttribute('data-run-id')));
    expect(shown).toEqual([...runIds].reverse());

    // a chip that matches none of them empties the list
    await page.getByRole('button', { name: 'Failed' }).click();
    await page.getByText('No runs match these filters.').waitFor();
    expect(new URL(page.url()).searchParams.get('status')).toBe('QUEUED');
    expect(consoleErrors).toEqual([]);
  });

  it('loads older log pages back to the first line of a 5,000-line run', async () => {
    const { body: queued } = await dispatch({ config: { demo: { steps: 1, logLines: 5000 } } });
    await waitForTerminal(queued.runId);
    const { page } = await signedIn('admin');

    await page.goto(`${endpoints().consoleUrl}/runs/${queued.runId}`);
    const log = page.getByRole('log', { name: 'Log lines' });
    await log.waitFor();
    const older = page.getByRole('button', { name: 'Load older' });
    const lines = page.locator('.log-line');
    let pages = 1;
    while (await older.isVisible()) {
      const before = await lines.count();
      await older.click();
      await expect.poll(() => lines.count()).toBeGreaterThan(before);
      pages++;
    }
    await page.getByText('From the first line.').waitFor();
    const numbered = (await lines.allTextContents()).filter((line) =>
      / line \d{6} demo agent output/.test(line),
    );
    expect(numbered).toHaveLength(5000);
    expect(numbered[0]).toContain('line 000001 demo agent output');
    expect(numbered.at(-1)).toContain('line 005000 demo agent output');
    expect(pages).toBeGreaterThanOrEqual(10);
    expect(consoleErrors).toEqual([]);
  });

  it('tails the log of a running run live, each line once', async () => {
    const { body: queued } = await dispatch({
      config: { demo: { steps: 1, logLines: 600, logLinesPerWrite: 50, logDelayMs: 250 } },
    });
    const { page } = await signedIn('admin');
    await page.goto(`${endpoints().consoleUrl}/runs/${queued.runId}`);
    const lines = page.locator('.log-line');
    const numbered = async () =>
      (await lines.allTextContents()).filter((line) => / line \d{6} demo agent output/.test(line));
    // the page was opened before the last lines were written: they arrive without a reload
    await expect.poll(numbered, { timeout: 60_000 }).toHaveLength(600);
    const all = await numbered();
    expect(new Set(all).size).toBe(600);
    expect(all.at(-1)).toContain('line 000600 demo agent output');
    expect(consoleErrors).toEqual([]);
  });

  it("shows a member no Approve, Stop or Redrive, which the API refuses anyway; another account's run is not found", async () => {
    const podId = await scriptedPodPausingAt(['plan']);
    const { body: queued } = await dispatch({ podId, mode: 'supervised' });
    await waitForRun(
      queued.runId,
      (run) => run.status === 'AWAITING_APPROVAL' && !!run.pendingApproval?.approvalId,
    );
    const { page } = await signedIn('member');

    await page.goto(`${endpoints().consoleUrl}/runs/${queued.runId}`);
    await page.getByText('A project admin decides this checkpoint.').waitFor();
    for (const name of ['Approve', 'Cancel', 'Stop', 'Redrive', 'Done', 'Replay']) {
      expect(await page.getByRole('button', { name, exact: true }).count()).toBe(0);
    }
    const { tokens } = endpoints();
    for (const read of ['', '/config', '/checkpoint']) {
      const refused = await api('GET', `/v1/runs/${queued.runId}${read}`, { token: tokens.outsider });
      expect(refused.status, read).toBe(404);
    }
    for (const action of ['approve', 'cancel', 'stop', 'redrive']) {
      const refused = await api('POST', `/v1/runs/${queued.runId}/${action}`, { token: tokens.member });
      expect(refused.status, action).toBe(403);
    }
    expect(consoleErrors).toEqual([]);

    const outsider = await signedIn('outsider');
    const notFound = await outsider.context.newPage();
    watch(notFound, [/status of 404/]);
    await notFound.goto(`${endpoints().consoleUrl}/runs/${queued.runId}`);
    await notFound.getByRole('heading', { name: 'Run not found' }).waitFor();
    expect(await notFound.getByRole('button', { name: 'Approve' }).count()).toBe(0);

    await api('POST', `/v1/runs/${queued.runId}/cancel`);
    expect(consoleErrors).toEqual([]);
  });

  it('lets an account admin edit a pod, and shows a member its settings read-only', async () => {
    const podId = `console-edit-${Date.now().toString(36)}`;
    await api('PUT', `/v1/pods/${podId}`, {
      body: { name: 'Before', cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' } },
    });
    const { page } = await signedIn('admin');

    await page.goto(`${endpoints().consoleUrl}/pods/${podId}`);
    const settings = page.getByLabel('Settings (JSON)');
    const edited = JSON.parse(await settings.inputValue());
    await settings.fill(JSON.stringify({ ...edited, name: 'After', memoryMiB: 3000 }));
    await page.getByRole('button', { name: 'Save' }).click();
    // the API's refusal, in its words
    await expect(page.getByRole('alert').textContent()).resolves.toContain('memoryMiB');
    await settings.fill(JSON.stringify({ ...edited, name: 'After' }));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: 'After' }).waitFor();
    expect((await api<{ name: string }>('GET', `/v1/pods/${podId}`)).body.name).toBe('After');

    const member = await signedIn('member');
    await member.page.goto(`${endpoints().consoleUrl}/pods/${podId}`);
    await member.page.getByRole('heading', { name: 'After' }).waitFor();
    expect(await member.page.getByLabel('Settings (JSON)').count()).toBe(0);
    expect(await member.page.getByRole('button', { name: 'Save' }).count()).toBe(0);
    // the browser itself reports the refused request (the 400) as a failed resource; nothing else
    expect(consoleErrors.filter((e) => !/status of 400/.test(e))).toEqual([]);
  });

  it('has no serious or critical accessibility violation on any page, and fits a 375 px screen', async () => {
    const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
    const { body: queued } = await dispatch({ config: { demo: { steps: 2, logLines: 20 } } });
    await waitForTerminal(queued.runId);
    const e = endpoints();
    const { page } = await signedIn('admin', { width: 375, height: 812 });
    const pages: [string, string][] = [
      ['/runs', 'Runs'],
      [`/projects/${e.projectId}/runs`, `Runs of ${e.projectId}`],
      [`/runs/${queued.runId}`, queued.itemId],
      ['/dispatch', 'Dispatch a run'],
      ['/spend', 'Spend'],
      ['/pods', 'Pods'],
      [`/pods/${e.scriptedPodId}`, 'Scripted pod'],
      ['/projects', 'Projects'],
      [`/projects/${e.projectId}`, 'Demo project'],
    ];
    const violations: string[] = [];
    for (const [path, heading] of pages) {
      await page.goto(`${e.consoleUrl}${path}`);
      await page.getByRole('heading', { level: 1, name: heading }).waitFor();
      await expect.poll(() => page.locator('.loading').count()).toBe(0);
      // axe is evaluated through the debugging protocol: the console's CSP allows no injected script
      await page.evaluate(axeSource);
      violations.push(...(await seriousViolations(page)).map((v) => `${path} ${v}`));
      const width = await page.evaluate<number>('document.documentElement.scrollWidth');
      const wider = await page.evaluate<string[]>(
        `[...document.querySelectorAll('body *')].filter((el) => el.getBoundingClientRect().right > 375)
          .map((el) => el.tagName + '.' + el.className + ': ' + el.textContent.slice(0, 40))`,
      );
      expect(width, `${path} is ${width} px wide: ${wider.join(' | ')}`).toBeLessThanOrEqual(375);
    }
    // the sign-in page, signed out
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.goto(`${e.consoleUrl}/sign-in`);
    await page.evaluate(axeSource);
    violations.push(...(await seriousViolations(page)).map((v) => `/sign-in ${v}`));
    expect(violations).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});

/** axe-core's serious and critical findings on the page, once axe is loaded into it. */
const seriousViolations = (page: Page) =>
  page.evaluate<string[]>(`axe.run().then((result) => result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => v.id + ': ' + v.nodes.map((n) => n.target.join(' ')).join(', ')))`);
