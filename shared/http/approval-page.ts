import type { Approval, DecisionRecord } from '../domain/approval.js';
import type { RunStatus } from '../domain/run.js';
import type { HttpResult } from './responses.js';

/**
 * The approval link's pages and mail: server-rendered HTML that works on a phone without JavaScript.
 * Everything that comes from a record or a request is escaped.
 */

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);

/** What the page shows besides the approval itself. */
export interface ApprovalContext {
  projectName: string;
  podName: string;
  runStatus: RunStatus;
}

export type ApprovalView =
  | { kind: 'pending' | 'expired' | 'closed'; approval: Approval; context: ApprovalContext }
  | {
      kind: 'decided';
      approval: Approval & { decision: DecisionRecord };
      context: ApprovalContext;
      /** true on the answer to the POST that recorded this decision */
      yours: boolean;
    };

/** The signed fields the page's form posts back. */
export interface LinkFields {
  for: string;
  sig: string;
}

const when = (iso: string): string => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

const VIA: Record<DecisionRecord['via'], string> = { email_link: 'the email link', api: 'the API' };

const decidedBy = (d: DecisionRecord): string =>
  `${d.decision === 'approved' ? 'Approved' : 'Cancelled'} by ${d.email ? `${d.by} (${d.email})` : d.by} through ${VIA[d.via]} at ${when(d.at)}.`;

const STYLE = `
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24;background:#f4f5f7}
main{max-width:40rem;margin:0 auto;padding:1.25rem;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:1.4rem;margin:.25rem 0 1rem}
h2{font-size:1.1rem;margin:1.25rem 0 .5rem}
.summary{font-size:1.1rem;font-weight:600;white-space:pre-wrap;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{color:#57606a}dd{margin:0;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.75rem;border-radius:6px;font-size:.9rem}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0}
button{flex:1 1 10rem;font:inherit;font-weight:600;padding:.9rem 1rem;border-radius:8px;border:0;cursor:pointer}
.approve{background:#1f883d;color:#fff}.cancel{background:#fff;color:#cf222e;border:2px solid #cf222e}
.note{color:#57606a;font-size:.9rem}
.notice{padding:.75rem 1rem;border-radius:6px;background:#fff8c5}
.ok{background:#dafbe1}.stop{background:#ffebe9}
`;

const document = (title: string, body: string): string =>
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body><main>
${body}
</main></body>
</html>
`;

export type HtmlResult = HttpResult & { headers: Record<string, string> };

/** The link carries its signature: no caching, no referrer, no indexing, no framing, no scripts. */
const html = (statusCode: number, body: string): HtmlResult => ({
  statusCode,
  headers: {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'x-robots-tag': 'noindex, nofollow',
    'x-content-type-options': 'nosniff',
    'content-security-policy':
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  },
  body,
});

const facts = (approval: Approval, context: ApprovalContext): string => {
  const rows: [string, string][] = [
    ['Project', context.projectName],
    ['Item', approval.itemId],
    ['Pod', context.podName],
    ['Checkpoint', approval.checkpoint.name],
    ['Run', approval.runId],
    ['Requested', when(approval.requestedAt)],
    ['Expires', when(approval.expiresAt)],
  ];
  return `<dl>${rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('')}</dl>`;
};

const details = (approval: Approval): string => {
  const { details: text, detailsTruncated } = approval.checkpoint;
  if (!text) return '';
  const cut = detailsTruncated ? '<p class="note">The details were too long and are shown in part.</p>' : '';
  return `<h2>Details</h2><pre>${escapeHtml(text)}</pre>${cut}`;
};

const summary = (approval: Approval) => `<p class="summary">${escapeHtml(approval.checkpoint.summary)}</p>`;

const decisionForm = (approval: Approval, link: LinkFields): string =>
  // A relative action: the POST goes to this same /approve/{approvalId}, whatever prefix the API has.
  `<form method="post" action="${escapeHtml(encodeURIComponent(approval.approvalId))}">
<input type="hidden" name="for" value="${escapeHtml(link.for)}">
<input type="hidden" name="sig" value="${escapeHtml(link.sig)}">
<div class="actions">
<button class="approve" type="submit" name="decision" value="approve">Approve</button>
<button class="cancel" type="submit" name="decision" value="cancel">Cancel the run</button>
</div>
</form>
<p class="note">Approve lets the agent go on from this checkpoint. Cancel ends the run as abandoned and tears its sandbox down.</p>`;

const decidedBody = (view: Extract<ApprovalView, { kind: 'decided' }>): string => {
  const d = view.approval.decision;
  const heading = d.decision === 'approved' ? 'Approved' : 'Cancelled';
  let message: string;
  if (d.applied === false) {
    message = `${decidedBy(d)} The run had already stopped waiting, so the decision changed nothing.`;
  } else if (view.yours) {
    message =
      d.decision === 'approved'
        ? 'Your approval was recorded. The agent goes on.'
        : 'The run was cancelled. Its sandbox is being torn down.';
  } else {
    message = `This checkpoint was already decided. ${decidedBy(d)}`;
  }
  const tone = d.decision === 'approved' ? 'ok' : 'stop';
  return `<h1>${heading}</h1><p class="notice ${tone}">${escapeHtml(message)}</p>${
    view.yours ? `<p class="note">${escapeHtml(decidedBy(d))}</p>` : ''
  }${summary(view.approval)}${facts(view.approval, view.context)}`;
};

/** The page for a view; `method` says whether it answers the link (GET) or a decision (POST). */
export const renderApprovalPage = (
  view: ApprovalView,
  method: 'GET' | 'POST',
  link: LinkFields,
): HtmlResult => {
  const { approval, context } = view;
  switch (view.kind) {
    case 'pending':
      return html(
        200,
        document(
          `Approve ${approval.checkpoint.name}: ${approval.itemId}`,
          `<h1>Approval needed</h1>${summary(approval)}${facts(approval, context)}${details(approval)}${decisionForm(approval, link)}`,
        ),
      );
    case 'decided':
      return html(
        view.yours || method === 'GET' ? 200 : 409,
        document(`${approval.checkpoint.name}: ${approval.itemId}`, decidedBody(view)),
      );
    case 'expired':
      return html(
        410,
        document(
          'This approval has expired',
          `<h1>This approval has expired</h1><p class="notice">${escapeHtml(
            `No decision was made before ${when(approval.expiresAt)}. The run was abandoned and nothing can be decided any more.`,
          )}</p>${summary(approval)}${facts(approval, context)}`,
        ),
      );
    case 'closed':
      return html(
        409,
        document(
          'Nothing to decide',
          `<h1>Nothing to decide</h1><p class="notice">${escapeHtml(
            `The run is ${context.runStatus}; this checkpoint no longer waits for a decision.`,
          )}</p>${summary(approval)}${facts(approval, context)}`,
        ),
      );
  }
};

const ERROR_TITLES: Record<number, string> = {
  403: 'This link is not valid',
  404: 'No such approval',
  500: 'Something went wrong',
};

/** A page for a refused or failed request: the status, a title and a sentence. */
export const renderErrorPage = (statusCode: number, message: string): HtmlResult => {
  const title = ERROR_TITLES[statusCode] ?? 'This request cannot be completed';
  return html(statusCode, document(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>`));
};

export interface ApprovalMail {
  subject: string;
  html: string;
  text: string;
}

const MAIL_DETAILS_CHARS = 2000;

/** The mail each project admin receives, with a link signed for them. */
export const renderApprovalMail = (
  approval: Approval,
  context: ApprovalContext,
  link: string,
): ApprovalMail => {
  const { checkpoint } = approval;
  const subject = `[${context.projectName}] Approval needed: ${approval.itemId} (${checkpoint.name})`;
  const excerpt =
    checkpoint.details && checkpoint.details.length > MAIL_DETAILS_CHARS
      ? `${checkpoint.details.slice(0, MAIL_DETAILS_CHARS)}…`
      : checkpoint.details;
  const text = [
    `The agent working on ${approval.itemId} in ${context.projectName} stopped at the checkpoint "${checkpoint.name}" and waits for your decision.`,
    '',
    checkpoint.summary,
    '',
    ...(excerpt ? [excerpt, ''] : []),
    `Pod: ${context.podName}`,
    `Run: ${approval.runId}`,
    `Decide before ${when(approval.expiresAt)}; after that the run is abandoned.`,
    '',
    `Approve or cancel: ${link}`,
    '',
    'Opening the link changes nothing; the page asks you to choose.',
  ].join('\n');
  const body = `<p>The agent working on <b>${escapeHtml(approval.itemId)}</b> in <b>${escapeHtml(
    context.projectName,
  )}</b> stopped at the checkpoint <b>${escapeHtml(checkpoint.name)}</b> and waits for your decision.</p>
<p style="font-size:1.1em;font-weight:600;white-space:pre-wrap">${escapeHtml(checkpoint.summary)}</p>
${excerpt ? `<pre style="white-space:pre-wrap;background:#f6f8fa;padding:12px;border-radius:6px">${escapeHtml(excerpt)}</pre>` : ''}
<p>Pod: ${escapeHtml(context.podName)}<br>Run: ${escapeHtml(approval.runId)}<br>Decide before ${escapeHtml(
    when(approval.expiresAt),
  )}; after that the run is abandoned.</p>
<p><a href="${escapeHtml(link)}" style="display:inline-block;padding:12px 20px;background:#1f883d;color:#fff;border-radius:8px;text-decoration:none;font-weight:600">Review and decide</a></p>
<p style="color:#57606a;font-size:.9em">Opening the link changes nothing; the page asks you to choose.</p>`;
  return {
    subject,
    html: `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(subject)}</title></head><body style="font-family:system-ui,sans-serif;line-height:1.5;color:#1b1f24">${body}</body></html>`,
    text,
  };
};
