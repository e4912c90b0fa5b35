import type { PendingApproval } from '../../../shared/domain/approval.js';
import type { Run } from '../../../shared/domain/run.js';
import type { Checkpoint } from '../../../shared/domain/tenancy.js';
import { api, dispatch, endpoints, waitForRun } from './api.js';

/** Supervised runs on the local cloud: the inbox, the approval mail and its link. */

export interface InboxMail {
  messageId: string;
  from: string;
  destination: { to: string[] };
  subject: string;
  body: { html?: string; text?: string };
}

/** Everything SES has sent, as the local SES's `GET /store` returns it. */
export const inbox = async (): Promise<InboxMail[]> => {
  const res = await fetch(`${endpoints().services.sesv2}/store`);
  return ((await res.json()) as { emails: InboxMail[] }).emails;
};

/** The approval mail sent to `to` for this approval, once it has arrived. */
export const approvalMail = async (approvalId: string, to = 'admin@example.com', timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const mail = (await inbox()).find(
      (m) => m.destination.to.includes(to) && m.body.text?.includes(approvalId),
    );
    if (mail) return mail;
    if (Date.now() > deadline) throw new Error(`no approval mail for ${approvalId} to ${to}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** The signed link in a mail's text. */
export const linkIn = (mail: InboxMail): URL => {
  const match = mail.body.text?.match(/https?:\/\/\S+\/approve\/\S+/);
  if (!match) throw new Error(`no approval link in: ${mail.body.text}`);
  return new URL(match[0]);
};

const scriptedPods = new Map<string, Promise<string>>();

/** A scripted pod (the demo agent) whose supervised runs pause at `checkpoints`. */
export const scriptedPodPausingAt = (checkpoints: Checkpoint[]): Promise<string> => {
  const podId = `scripted-${checkpoints.join('-') || 'no-checkpoints'}`;
  const made =
    scriptedPods.get(podId) ??
    api('PUT', `/v1/pods/${podId}`, {
      body: { name: podId, cpu: 1024, memoryMiB: 2048, agent: { kind: 'demo' }, checkpoints },
    }).then(({ status }) => {
      if (status !== 200) throw new Error(`PUT /v1/pods/${podId} answered ${status}`);
      return podId;
    });
  scriptedPods.set(podId, made);
  return made;
};

/** A supervised run of the demo agent that pauses at `checkpoints` (the plan, by default). */
export const dispatchSupervised = async (
  { checkpoints = ['plan'], ...demo }: Record<string, unknown> & { checkpoints?: Checkpoint[] } = {},
  request: Record<string, unknown> = {},
) =>
  dispatch({
    mode: 'supervised',
    podId: await scriptedPodPausingAt(checkpoints),
    config: { demo: { steps: 2, stepDelayMs: 10, ...demo } },
    ...request,
  });

/** Waits until the run waits for a decision whose approval was requested (it has an id). */
export const waitForApproval = async (
  runId: string,
  timeoutMs = 30_000,
): Promise<{ run: Run; pending: PendingApproval & { approvalId: string } }> => {
  const { run } = await waitForRun(
    runId,
    (r) => r.status === 'AWAITING_APPROVAL' && Boolean(r.pendingApproval?.approvalId),
    timeoutMs,
  );
  const pending = run.pendingApproval as PendingApproval & { approvalId: string };
  return { run, pending };
};

/** The pending run's approval link, from the admin's mail. */
export const approvalLinkFor = async (runId: string) => {
  const { run, pending } = await waitForApproval(runId);
  const mail = await approvalMail(pending.approvalId);
  return { run, pending, mail, link: linkIn(mail) };
};

/** What the page's form posts: the signed fields from the link and the button pressed. */
export const postDecision = (link: URL, decision: string, fields: Record<string, string> = {}) => {
  const body = new URLSearchParams({
    for: link.searchParams.get('for') ?? '',
    sig: link.searchParams.get('sig') ?? '',
    decision,
    ...fields,
  });
  return fetch(`${link.origin}${link.pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
};
