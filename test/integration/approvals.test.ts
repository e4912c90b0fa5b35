import { GetExecutionHistoryCommand } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import type { Run } from '../../shared/domain/run.js';
import { api, dispatch, endpoints, getRun, waitForRun, waitForTerminal } from './support/api.js';
import {
  approvalLinkFor,
  dispatchSupervised,
  inbox,
  postDecision,
  scriptedPodPausingAt,
  waitForApproval,
} from './support/approvals.js';
import { executionsOf, sfn, tokenFor, waitForTaskStopped } from './support/aws.js';

const run = async (runId: string) => await getRun(runId);

/** TaskSucceeded events of the execution's approval waits, with what each was settled with. */
const approvalSettlements = async (runId: string) => {
  const [execution] = await executionsOf(runId);
  const { events = [] } = await sfn().send(
    new GetExecutionHistoryCommand({ executionArn: execution?.executionArn, maxResults: 1000 }),
  );
  return events.flatMap((event) => {
    const output = event.taskSucceededEventDetails?.output;
    return output?.includes('"decision"')
      ? [JSON.parse(output) as { approvalId: string; decision: string }]
      : [];
  });
};

describe('a supervised run', () => {
  it('stops at AWAITING_APPROVAL, mails the admin a link, and completes once approved through it', async () => {
    const { body: queued } = await dispatchSupervised();
    const { pending, mail, link } = await approvalLinkFor(queued.runId);
    expect(pending).toMatchObject({ name: 'plan', summary: expect.stringContaining('Plan for ITEM-1') });
    expect(Date.parse(pending.expiresAt ?? '')).toBeGreaterThan(Date.now());
    expect(mail.from).toBe('approvals@example.com');
    expect(mail.subject).toContain('Approval needed');
    expect(mail.body.html).toContain(link.href.replaceAll('&', '&amp;'));
    expect(link.pathname).toBe(`/approve/${pending.approvalId}`);
    expect(link.searchParams.get('for')).toBe('demo-admin');

    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toContain('Demo project');
    expect(html).toContain('Plan for ITEM-1');

    const approved = await postDecision(link, 'approve');
    expect(approved.status).toBe(200);
    expect(await approved.text()).toContain('Your approval was recorded');

    const { run: done } = await waitForTerminal(queued.runId);
    const final = done;
    expect(final.status).toBe('COMPLETED');
    expect(final.history.map((h) => h.status)).toEqual([
      'QUEUED',
      'PROVISIONING',
      'RUNNING',
      'AWAITING_APPROVAL',
      'RUNNING',
      'COMPLETED',
    ]);
    expect(final.pendingApproval).toBeUndefined();
    expect(final.approvals).toEqual([
      expect.objectContaining({
        approvalId: pending.approvalId,
        name: 'plan',
        decision: 'approved',
        by: 'demo-admin',
        email: 'admin@example.com',
        via: 'email_link',
      }),
    ]);
  });

  it('is abandoned when cancelled through the link, and its pod process is gone', async () => {
    const { body: queued } = await dispatchSupervised();
    const { run: waiting, link } = await approvalLinkFor(queued.runId);
    const cancelled = await postDecision(link, 'cancel');
    expect(cancelled.status).toBe(200);
    expect(await cancelled.text()).toContain('The run was cancelled');
    const { run: done } = await waitForTerminal(queued.runId);
    expect(done.status).toBe('ABANDONED');
    expect(done.exitReason).toBe('abandoned');
    expect(done.approvals?.[0]).toMatchObject({
      decision: 'cancelled',
      via: 'email_link',
    });
    await waitForTaskStopped(waiting.taskArn as string);
  });

  it('is decided through the API at each checkpoint: approved at the plan, cancelled at the commit', async () => {
    const { body: queued } = await dispatchSupervised({ checkpoints: ['plan', 'commit'] });
    const { pending: plan } = await waitForApproval(queued.runId);
    const approved = await api<{ approval: { decision: { via: string } }; run: Run }>(
      'POST',
      `/v1/runs/${queued.runId}/approve`,
    );
    expect(approved.status).toBe(200);
    expect(approved.body.approval.decision.via).toBe('api');
    expect(approved.body.run.status).toBe('RUNNING');

    const { run: atCommit, pending: commit } = await waitForApproval(queued.runId);
    expect(commit.name).toBe('commit');
    expect(commit.approvalId).not.toBe(plan.approvalId);
    const cancelled = await api('POST', `/v1/runs/${queued.runId}/cancel`);
    expect(cancelled.status).toBe(200);

    const { run: done } = await waitForTerminal(queued.runId);
    expect(done.status).toBe('ABANDONED');
    expect(done.exitReason).toBe('abandoned');
    expect(done.approvals?.map((a) => [a.name, a.decision, a.via])).toEqual([
      ['plan', 'approved', 'api'],
      ['commit', 'cancelled', 'api'],
    ]);
    await waitForTaskStopped(atCommit.taskArn as string);
  });

  it('is abandoned as timed_out when its approval window passes, after which the link changes nothing', async () => {
    const podId = `approval-window-${Date.now()}`;
    const pod = await api('PUT', `/v1/pods/${podId}`, {
      body: {
        name: 'Short approval window',
        cpu: 256,
        memoryMiB: 512,
        agent: { kind: 'demo' },
        approvalWindowSeconds: 5,
      },
    });
    expect(pod.status).toBe(200);
    const { body: queued } = await dispatchSupervised({}, { podId });
    const { run: waiting, pending, link } = await approvalLinkFor(queued.runId);
    expect(Date.parse(pending.expiresAt ?? '') - Date.parse(pending.requestedAt)).toBeLessThan(10_000);

    const { run: done } = await waitForTerminal(queued.runId, 30_000);
    expect(done.status).toBe('ABANDONED');
    expect(done.exitReason).toBe('timed_out');
    expect(done.approvals).toEqual([
      expect.objectContaining({ approvalId: pending.approvalId, decision: 'expired' }),
    ]);
    await waitForTaskStopped(waiting.taskArn as string);

    const page = await fetch(link);
    expect(page.status).toBe(410);
    expect(await page.text()).toContain('This approval has expired');
    const late = await postDecision(link, 'approve');
    expect(late.status).toBe(410);
    expect((await run(queued.runId)).approvals).toHaveLength(1);
    expect((await approvalSettlements(queued.runId)).length).toBe(0);
  });

  it('passes a checkpoint at once in autopilot, mailing no one', async () => {
    const { body: queued } = await dispatch({
      podId: await scriptedPodPausingAt(['plan', 'commit']),
      config: { demo: { steps: 1, stepDelayMs: 10 } },
    });
    const { run: done } = await waitForTerminal(queued.runId);
    expect(done.status).toBe('COMPLETED');
    expect(done.history.map((h) => h.status)).not.toContain('AWAITING_APPROVAL');
    expect((await inbox()).some((m) => m.body.text?.includes(queued.runId))).toBe(false);
  });

  it('is STOPPED while it waits for a decision, and its approval is withdrawn', async () => {
    const { body: queued } = await dispatchSupervised();
    const { run: waiting, link } = await approvalLinkFor(queued.runId);
    expect((await api('POST', `/v1/runs/${queued.runId}/stop`)).status).toBe(200);
    const { run: done } = await waitForTerminal(queued.runId);
    expect(done.status).toBe('STOPPED');
    await waitForTaskStopped(waiting.taskArn as string);
    await expect
      .poll(async () => (await run(queued.runId)).approvals?.[0]?.decision, { timeout: 15_000 })
      .toBe('withdrawn');
    // The execution still ends through Finalize, a moment after the run is STOPPED.
    await expect
      .poll(async () => (await executionsOf(queued.runId))[0]?.status, { timeout: 15_000 })
      .toBe('SUCCEEDED');
    const page = await fetch(link);
    expect(page.status).toBe(409);
    expect(await page.text()).toContain('The run is STOPPED');
  });
});

describe('the approval link', () => {
  it('changes nothing when fetched, as a mail scanner or a browser prefetch would', async () => {
    const { body: queued } = await dispatchSupervised();
    const { pending, link } = await approvalLinkFor(queued.runId);
    const gets = [
      fetch(link),
      fetch(link, { method: 'HEAD' }),
      fetch(link, { headers: { purpose: 'prefetch', 'sec-purpose': 'prefetch' } }),
      fetch(link, { headers: { 'user-agent': 'Mozilla/5.0 (compatible; SafeLinks scanner)' } }),
    ];
    for (const res of await Promise.all(gets)) expect(res.status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    const after = await run(queued.runId);
    expect(after.status).toBe('AWAITING_APPROVAL');
    expect(after.pendingApproval).toEqual(pending);
    expect(after.approvals).toBeUndefined();
    expect(await (await fetch(link)).text()).toContain('Approval needed');
    await api('POST', `/v1/runs/${queued.runId}/stop`);
  });

  it('answers a forged or missing signature with a 403 page', async () => {
    const { body: queued } = await dispatchSupervised();
    const { link } = await approvalLinkFor(queued.runId);
    const sig = link.searchParams.get('sig') ?? '';
    const variants = [
      new URL(`${link.origin}${link.pathname}?for=demo-admin`),
      new URL(`${link.origin}${link.pathname}?for=demo-admin&sig=${sig.slice(1)}x`),
      new URL(`${link.origin}${link.pathname}?for=demo-member&sig=${sig}`),
      new URL(`${link.origin}${link.pathname}x?for=demo-admin&sig=${sig}`),
    ];
    for (const forged of variants) {
      const res = await fetch(forged);
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toContain('text/html');
      expect(await res.text()).toContain('This link is not valid');
    }
    const forgedPost = await postDecision(link, 'approve', { sig: `${sig.slice(0, -2)}AA` });
    expect(forgedPost.status).toBe(403);
    expect((await postDecision(link, 'approve', { sig: '' })).status).toBe(403);
    expect((await run(queued.runId)).status).toBe('AWAITING_APPROVAL');
    await api('POST', `/v1/runs/${queued.runId}/stop`);
  });

  it('shows the first decision to a second one', async () => {
    const { body: queued } = await dispatchSupervised();
    const { link } = await approvalLinkFor(queued.runId);
    expect((await postDecision(link, 'approve')).status).toBe(200);
    const second = await postDecision(link, 'cancel');
    expect(second.status).toBe(409);
    const html = await second.text();
    expect(html).toContain('already decided');
    expect(html).toContain('Approved by demo-admin (admin@example.com) through the email link');
    const { run: done } = await waitForTerminal(queued.runId);
    expect(done.status).toBe('COMPLETED');
  });

  it('records exactly one of 20 concurrent decisions and settles the approval once', async () => {
    const { body: queued } = await dispatchSupervised();
    const { pending, link } = await approvalLinkFor(queued.runId);
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => postDecision(link, i % 2 ? 'approve' : 'cancel')),
    );
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    const { run: done } = await waitForTerminal(queued.runId);
    const final = done;
    expect(final.approvals).toHaveLength(1);
    expect(final.status).toBe(final.approvals?.[0]?.decision === 'approved' ? 'COMPLETED' : 'ABANDONED');
    const settlements = await approvalSettlements(queued.runId);
    expect(settlements).toEqual([expect.objectContaining({ approvalId: pending.approvalId })]);
  });
});

describe('deciding through the API', () => {
  it('needs the admin role in the project (403) and the run to be the caller tenant’s (404)', async () => {
    const { body: queued } = await dispatchSupervised();
    await waitForApproval(queued.runId);
    const e = endpoints();
    const member = await tokenFor({ sub: 'demo-member', accountId: e.accountId, accountRole: 'member' });
    const stranger = await tokenFor({ sub: 'demo-admin', accountId: 'another-tenant', accountRole: 'admin' });
    const asMember = await api<{ error: { code: string } }>('POST', `/v1/runs/${queued.runId}/approve`, {
      token: member,
    });
    expect(asMember.status).toBe(403);
    expect(asMember.body.error.code).toBe('Forbidden');
    expect((await api('POST', `/v1/runs/${queued.runId}/cancel`, { token: stranger })).status).toBe(404);
    expect((await api('POST', `/v1/runs/${queued.runId}/approve`, { token: null })).status).toBe(401);
    expect((await run(queued.runId)).status).toBe('AWAITING_APPROVAL');

    expect((await api('POST', `/v1/runs/${queued.runId}/approve`)).status).toBe(200);
    const again = await api<{ error: { code: string } }>('POST', `/v1/runs/${queued.runId}/cancel`);
    expect(again.status).toBe(409);
    await waitForRun(queued.runId, (r) => r.status === 'COMPLETED');
  });
});
