import { describe, expect, it } from 'vitest';
import type { Approval } from '../../shared/domain/approval.js';
import {
  type ApprovalContext,
  type ApprovalView,
  escapeHtml,
  renderApprovalMail,
  renderApprovalPage,
  renderErrorPage,
} from '../../shared/http/approval-page.js';

const HOSTILE = `<script>alert("x")</script>&'`;

const approval: Approval = {
  approvalId: 'appr_0123456789abcdef',
  runId: 'run_01J0000000000000000000000A',
  accountId: 'acct-1',
  projectId: 'proj-1',
  itemId: `ITEM-${HOSTILE}`,
  podId: 'pod-1',
  checkpoint: {
    seq: 4,
    name: `plan${HOSTILE}`,
    summary: `Summary ${HOSTILE}`,
    details: `Details ${HOSTILE}`,
    detailsTruncated: true,
  },
  requestedAt: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-01-01T01:00:00.000Z',
  podSecondsLeft: 3000,
};
const context: ApprovalContext = {
  projectName: `Project ${HOSTILE}`,
  podName: `Pod ${HOSTILE}`,
  runStatus: 'AWAITING_APPROVAL',
};
const link = { for: `alice"><b>`, sig: `sig"'<x>` };
const decided = (yours: boolean, applied?: boolean): ApprovalView => ({
  kind: 'decided',
  approval: {
    ...approval,
    decision: {
      decision: 'approved',
      by: 'bob',
      email: 'bob@example.com',
      via: 'email_link',
      at: '2026-01-01T00:10:00.000Z',
      applied,
    },
  },
  context,
  yours,
});

describe('escapeHtml', () => {
  it('escapes the five characters that can break out of text or an attribute', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
    );
  });
});

describe('the approval page', () => {
  const pending = renderApprovalPage({ kind: 'pending', approval, context }, 'GET', link);

  it('escapes everything that comes from a record or the request, and runs no script', () => {
    expect(pending.body).not.toContain('<script>');
    expect(pending.body).not.toContain('<b>');
    expect(pending.body).not.toContain(`sig"'`);
    expect(pending.body).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;');
    expect(pending.headers?.['content-security-policy']).toContain("default-src 'none'");
  });

  it('shows the project, item, pod, checkpoint summary and details', () => {
    for (const text of [context.projectName, approval.itemId, context.podName, approval.checkpoint.summary]) {
      expect(pending.body).toContain(escapeHtml(text));
    }
    expect(pending.body).toContain(escapeHtml(approval.checkpoint.details ?? ''));
    expect(pending.body).toContain('shown in part');
  });

  it('offers Approve and Cancel as one form that posts the signed fields back to the same link', () => {
    expect(pending.statusCode).toBe(200);
    expect(pending.body).toContain(`<form method="post" action="${approval.approvalId}">`);
    expect(pending.body).toContain(`name="for" value="${escapeHtml(link.for)}"`);
    expect(pending.body).toContain(`name="sig" value="${escapeHtml(link.sig)}"`);
    expect(pending.body).toContain('name="decision" value="approve">Approve</button>');
    expect(pending.body).toContain('name="decision" value="cancel">Cancel the run</button>');
    expect(pending.body).toContain('name="viewport"');
  });

  it('is never cached, indexed, framed or leaked through a referrer', () => {
    expect(pending.headers).toMatchObject({
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'x-robots-tag': 'noindex, nofollow',
    });
    expect(pending.headers?.['content-security-policy']).toContain("frame-ancestors 'none'");
  });

  it('shows the decision on record, with no form, to a later visitor or a second decision', () => {
    const seen = renderApprovalPage(decided(false), 'GET', link);
    expect(seen.statusCode).toBe(200);
    expect(seen.body).toContain('already decided');
    expect(seen.body).toContain(
      'Approved by bob (bob@example.com) through the email link at 2026-01-01 00:10 UTC',
    );
    expect(seen.body).not.toContain('<form');
    expect(renderApprovalPage(decided(false), 'POST', link).statusCode).toBe(409);
  });

  it('confirms the decision to the one who made it, or says it changed nothing when the wait was over', () => {
    const mine = renderApprovalPage(decided(true), 'POST', link);
    expect(mine.statusCode).toBe(200);
    expect(mine.body).toContain('Your approval was recorded');
    const late = renderApprovalPage(decided(true, false), 'POST', link);
    expect(late.body).toContain('changed nothing');
  });

  it('says an expired approval expired (410), and a run that moved on has nothing to decide (409)', () => {
    const expired = renderApprovalPage({ kind: 'expired', approval, context }, 'GET', link);
    expect(expired.statusCode).toBe(410);
    expect(expired.body).toContain('This approval has expired');
    expect(expired.body).not.toContain('<form');
    const closed = renderApprovalPage(
      { kind: 'closed', approval, context: { ...context, runStatus: 'STOPPED' } },
      'GET',
      link,
    );
    expect(closed.statusCode).toBe(409);
    expect(closed.body).toContain('The run is STOPPED');
  });

  it('renders refusals as pages with their status', () => {
    const page = renderErrorPage(403, `bad ${HOSTILE}`);
    expect(page.statusCode).toBe(403);
    expect(page.body).toContain('This link is not valid');
    expect(page.body).not.toContain('<script>');
  });
});

describe('the approval mail', () => {
  const url = 'https://api.example.com/approve/appr_0123456789abcdef?for=alice&sig=abc';
  const mail = renderApprovalMail(approval, context, url);

  it('carries the link and the checkpoint in its text and HTML parts', () => {
    expect(mail.text).toContain(url);
    expect(mail.text).toContain(approval.checkpoint.summary);
    expect(mail.html).toContain(`href="${escapeHtml(url)}"`);
    expect(mail.html).toContain(escapeHtml(approval.checkpoint.summary));
    expect(mail.html).not.toContain('<script>');
    expect(mail.subject).toContain(approval.itemId);
  });

  it('keeps long details to an excerpt', () => {
    const long = renderApprovalMail(
      { ...approval, checkpoint: { ...approval.checkpoint, details: 'x'.repeat(10_000) } },
      context,
      url,
    );
    expect(long.text.length).toBeLessThan(3000);
  });
});
