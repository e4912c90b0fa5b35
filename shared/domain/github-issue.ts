import { formatRunCost } from './money.js';
import type { Run } from './run.js';
import { type Project, type ProjectMember, sameRepository } from './tenancy.js';

/**
 * Runs started from GitHub issues: which pod a comment or a label calls, who may call it, what the
 * run is asked, and what the run answers on the issue.
 */

export interface IssueFacts {
  fullName: string;
  number: number;
  title: string;
  body: string;
  url: string;
}

/** Where a run is read: its record in the API (and `/steps` after it for its steps). */
export const runLink = (publicApiUrl: string, runId: string): string =>
  `${publicApiUrl.replace(/\/+$/, '')}/v1/runs/${runId}`;

/** The label that starts a run of a pod when it is added to an issue. */
export const POD_LABEL_PREFIX = 'pod:';

export const podOfLabel = (label: string): string | undefined =>
  label.startsWith(POD_LABEL_PREFIX) && label.length > POD_LABEL_PREFIX.length
    ? label.slice(POD_LABEL_PREFIX.length)
    : undefined;

/** Blanks of the same length, newlines kept: what is masked keeps every other character in place. */
const blank = (text: string) => text.replace(/[^\n]/g, ' ');

/**
 * The comment with what people quote and show as code blanked out: `> @pod ...` and `` `@pod` `` are
 * not said now and must not start a run. Fenced blocks (indented too, or left open to the end, as
 * GitHub shows them), inline code and quoted lines.
 */
const spokenOnly = (markdown: string): string =>
  markdown
    .replace(/^[ \t]*(`{3,}|~{3,})[^\n]*(?:\n[\s\S]*?(?:\n[ \t]*\1[^\n]*(?=\n|$)|$)|$)/gm, blank)
    .replace(/^[ \t]*>[^\n]*/gm, blank)
    .replace(/`[^`\n]*`/g, blank);

/** GitHub's mention: `@` not inside a word, an e-mail address or a path. */
const MENTION = /(?<![\w@/.`-])@([A-Za-z0-9][A-Za-z0-9_.-]*)/g;

/**
 * The first pod a comment calls by its handle (the pod's id, in any case), and what the comment says
 * after the handle, as written (code included); with nothing after it, the rest of the comment.
 * Undefined when it calls none of `podIds`.
 */
export const mentionedPod = (
  commentBody: string,
  podIds: readonly string[],
): { podId: string; instructions: string } | undefined => {
  const known = new Map(podIds.map((id) => [id.toLowerCase(), id]));
  for (const match of spokenOnly(commentBody).matchAll(MENTION)) {
    // a sentence may end right after the handle: `ask @demo-pod.`
    const handle = (match[1] ?? '').replace(/[.]+$/, '');
    const podId = known.get(handle.toLowerCase());
    if (podId === undefined) continue;
    const start = match.index ?? 0;
    const end = start + 1 + handle.length;
    // what follows the handle, without the punctuation that closes a sentence around it
    const rest = commentBody.slice(end).replace(/^[.,:;!?]+/, '');
    const instructions = rest.trim() || `${commentBody.slice(0, start)}${rest}`.trim();
    return { podId, instructions };
  }
  return undefined;
};

/**
 * Whether a comment or label could call a pod at all (a handle, a `pod:` label): most comments on a
 * repository do not, and are dismissed before anything is read for them.
 */
export const mayCallPod = (said: { comment: string } | { label: string }): boolean =>
  'comment' in said
    ? spokenOnly(said.comment).search(MENTION) >= 0
    : podOfLabel(said.label.toLowerCase()) !== undefined;

/** The pod a `pod:<podId>` label calls (labels are case-insensitive on GitHub), if it is one of `podIds`. */
export const labelledPod = (label: string, podIds: readonly string[]): string | undefined => {
  const named = podOfLabel(label.toLowerCase());
  return named === undefined ? undefined : podIds.find((id) => id.toLowerCase() === named);
};

const ITEM_ID_MAX = 128;

/** The item of a run started from an issue, within the item id's alphabet: `<owner>.<repo>.<number>`. */
export const issueItemId = (fullName: string, number: number): string => {
  const suffix = `.${number}`;
  const name = fullName
    .replace('/', '.')
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return `${(name || 'issue').slice(0, ITEM_ID_MAX - suffix.length)}${suffix}`;
};

/** The prompt's most (GitHub's comments are far shorter): the issue's text is what gets cut. */
const PROMPT_MAX = 200_000;

/** The run is asked what the comment says (or, for a label, to resolve the issue), with the issue as context. */
export const issuePrompt = (issue: IssueFacts, instructions?: string): string => {
  const ask = instructions?.trim() || `Resolve GitHub issue ${issue.fullName}#${issue.number}.`;
  const head = `${ask}\n\nGitHub issue ${issue.fullName}#${issue.number}: ${issue.title}\n${issue.url}\n\n`;
  return `${head}${issue.body}`.slice(0, PROMPT_MAX);
};

/**
 * The project the person who called a pod dispatches in: among the projects that include the
 * issue's repository, the first (by id) where their GitHub login has at least the member role.
 * Undefined with why not otherwise.
 */
export const projectForCaller = (
  projects: readonly Project[],
  cloneUrl: string,
  login: string,
): { project: Project; member: ProjectMember } | { refusal: 'no_project' | 'not_member' | 'viewer' } => {
  const covering = projects
    .filter((project) => project.repos.some((repo) => sameRepository(repo, cloneUrl)))
    .sort((a, b) => a.projectId.localeCompare(b.projectId));
  if (covering.length === 0) return { refusal: 'no_project' };
  const wanted = login.toLowerCase();
  let viewer = false;
  for (const project of covering) {
    const member = project.members.find((m) => m.githubLogin?.toLowerCase() === wanted);
    if (!member) continue;
    if (member.role !== 'viewer') return { project, member };
    viewer = true;
  }
  return { refusal: viewer ? 'viewer' : 'not_member' };
};

/** The reply to a call that starts nothing: why, and what would let it. */
export const refusalReply = (
  refusal: 'no_project' | 'not_member' | 'viewer',
  login: string,
  fullName: string,
  podId: string,
): string => {
  switch (refusal) {
    case 'no_project':
      return `@${login} no project includes ${fullName}, so pod \`${podId}\` was not started. An admin can add the repository to a project.`;
    case 'viewer':
      return `@${login} you can view the projects that include ${fullName}, but starting pod \`${podId}\` needs the member role. A project admin can give it to you.`;
    case 'not_member':
      return `@${login} only members of a project that includes ${fullName} can start pod \`${podId}\`, and no project member has your GitHub login. A project admin can add you, with \`githubLogin\`.`;
  }
};

/** The run's comment on the issue when it is dispatched. */
export const startedReply = (run: Pick<Run, 'runId' | 'podId'>, login: string, runUrl: string): string =>
  `@${login} started pod \`${run.podId}\`: run [${run.runId}](${runUrl}). This comment will say how it ends.`;

const pullRequestsOf = (run: Run): string[] => {
  const raised = run.artifacts.filter((a) => a.kind === 'pull_request').map((a) => a.url);
  return raised.length > 0 ? raised : run.pullRequest ? [run.pullRequest.url] : [];
};

/** What the run's comment says once the run has ended (or its pull request's fate is known). */
export const outcomeReply = (run: Run, login: string, runUrl: string): string => {
  const head = `@${login} pod \`${run.podId}\`, run [${run.runId}](${runUrl})`;
  const pullRequests = pullRequestsOf(run).join(', ');
  const cost = ` Cost ${formatRunCost(run.cost.totalUsd)}.`;
  const why = run.message ? `: ${run.message}` : '';
  switch (run.status) {
    case 'COMPLETED':
      return pullRequests
        ? `${head} opened ${pullRequests}.${cost}`
        : `${head} completed without a change to propose.${cost}`;
    case 'DONE':
      return `${head}: ${pullRequests} was merged${run.pullRequest?.mergedBy ? ` by @${run.pullRequest.mergedBy}` : ''}.${cost}`;
    case 'PR_REJECTED':
      return `${head}: ${pullRequests} was closed without merging.${cost}`;
    case 'FAILED':
    case 'DEAD_LETTER':
    case 'ABANDONED':
      return `${head} ended ${run.status}${run.exitReason ? ` (${run.exitReason})` : ''}${why}.${cost}`;
    case 'CANCELLED':
      return `${head} was cancelled${run.exitReason ? ` (${run.exitReason})` : ''}${why}.${cost}`;
    case 'STOPPED':
      return `${head} was stopped${why}.${cost}`;
    default:
      return `${head} is ${run.status}.`;
  }
};
