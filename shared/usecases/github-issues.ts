import { NotFoundError } from '../domain/errors.js';
import {
  type IssueFacts,
  issueItemId,
  issuePrompt,
  labelledPod,
  mayCallPod,
  mentionedPod,
  outcomeReply,
  projectForCaller,
  refusalReply,
  runLink,
  startedReply,
} from '../domain/github-issue.js';
import type { Run } from '../domain/run.js';
import type { Caller } from '../domain/tenancy.js';
import type {
  Clock,
  DirectoryRepository,
  GitHubApp,
  RunQueue,
  RunStore,
  WebhookDeliveries,
} from '../ports.js';
import { dispatchRun } from './runs.js';

/**
 * Runs started from GitHub issues: a project member's comment that calls a pod by its handle
 * (`@<podId> <instructions>`, source `mention`) or their label `pod:<podId>` (source `react`). The run
 * answers on the issue: a comment with its link at dispatch, rewritten when it ends.
 */

export interface IssueDeps {
  runs: RunStore;
  directory: DirectoryRepository;
  queue: RunQueue;
  clock: Clock;
  github: GitHubApp;
  deliveries: WebhookDeliveries;
}

export interface IssueSettings {
  /** the API's public base URL: the run's comment links to the run there */
  publicApiUrl: string;
}

/** What GitHub said happened on an issue: a comment written, or a label added. */
export interface IssueActivity {
  /** `X-GitHub-Delivery`: the same delivery sent again starts nothing more */
  delivery: string;
  installationId: number;
  /** the repository's clone URL */
  repo: string;
  issue: IssueFacts;
  /** who wrote the comment or added the label */
  sender: { login: string; bot: boolean };
  /** the comment's text, or the label's name */
  said: { comment: string } | { label: string };
}

export type IssueOutcome =
  | { handled: false; reason: string }
  | { handled: true; outcome: 'refused'; refusal: string }
  | {
      handled: true;
      outcome: 'dispatched';
      runId: string;
      created: boolean;
      /** why the run's first comment could not be posted (the run goes on; its end posts one) */
      replyFailed?: string;
    };

const NO_POD_CALLED = 'calls no pod of the account';

/** A delivery's refusal reply is kept for as long as GitHub keeps the delivery to redeliver. */
const DELIVERY_KEPT_SECONDS = 3 * 86_400;

/**
 * The pod a comment or label calls, dispatched in the first project that includes the repository
 * and has the sender, by their GitHub login, as a member (a viewer may not dispatch); anyone else
 * gets a reply saying why, once per delivery. The run's idempotency key is the delivery, so a
 * delivery sent twice starts one run and posts one comment.
 */
export const issueActivity = async (
  deps: IssueDeps,
  settings: IssueSettings,
  activity: IssueActivity,
): Promise<IssueOutcome> => {
  // the App's own comments (and other bots') never call a pod: a reply cannot start a run
  if (activity.sender.bot) return { handled: false, reason: 'sent by a bot' };
  if (!mayCallPod(activity.said)) return { handled: false, reason: NO_POD_CALLED };
  const account = await deps.directory.accountOfInstallation(activity.installationId);
  if (!account)
    return { handled: false, reason: `installation ${activity.installationId} is linked to no account` };
  const pods = await deps.directory.listPods(account.accountId);
  const called =
    'comment' in activity.said
      ? mentionedPod(
          activity.said.comment,
          pods.map((pod) => pod.podId),
        )
      : calledByLabel(
          activity.said.label,
          pods.map((pod) => pod.podId),
        );
  if (!called) return { handled: false, reason: NO_POD_CALLED };

  const { issue, sender } = activity;
  const chosen = projectForCaller(
    await deps.directory.listProjects(account.accountId),
    activity.repo,
    sender.login,
  );
  if ('refusal' in chosen) {
    if (await deps.deliveries.firstTime(activity.delivery, DELIVERY_KEPT_SECONDS)) {
      await deps.github.comment(
        activity.installationId,
        activity.repo,
        issue.number,
        refusalReply(chosen.refusal, sender.login, issue.fullName, called.podId),
      );
    }
    return { handled: true, outcome: 'refused', refusal: chosen.refusal };
  }

  const { project, member } = chosen;
  const caller: Caller = {
    accountId: account.accountId,
    userId: member.userId,
    ...(member.email === undefined ? {} : { email: member.email }),
    accountRole: 'member',
  };
  const { run, created } = await dispatchRun(
    deps,
    caller,
    project.projectId,
    {
      itemId: issueItemId(issue.fullName, issue.number),
      podId: called.podId,
      mode: 'autopilot',
      prompt: issuePrompt(issue, called.instructions),
      source: 'comment' in activity.said ? 'mention' : 'react',
      attribution: member.userId,
      gitHubIssue: {
        repo: activity.repo,
        fullName: issue.fullName,
        number: issue.number,
        url: issue.url,
        calledBy: sender.login,
      },
    },
    `github-delivery:${activity.delivery}`,
  );
  const dispatched = { handled: true, outcome: 'dispatched', runId: run.runId, created } as const;
  if (!created || !run.gitHubIssue) return dispatched;
  try {
    const commentId = await deps.github.comment(
      activity.installationId,
      activity.repo,
      issue.number,
      startedReply(run, sender.login, runLink(settings.publicApiUrl, run.runId)),
    );
    await deps.runs.recordFacts(run.runId, { gitHubIssue: { ...run.gitHubIssue, commentId } });
    return dispatched;
  } catch (err) {
    return { ...dispatched, replyFailed: err instanceof Error ? err.message : String(err) };
  }
};

const calledByLabel = (label: string, podIds: readonly string[]) => {
  const podId = labelledPod(label, podIds);
  return podId === undefined ? undefined : { podId, instructions: '' };
};

/**
 * The run's comment on its issue says how the run ended (or what became of its pull request). A run
 * whose comment is gone, or was never posted (GitHub was down at dispatch), gets a new one.
 */
export const answerOnIssue = async (
  deps: Pick<IssueDeps, 'runs' | 'directory' | 'github'>,
  settings: IssueSettings,
  run: Run,
): Promise<'edited' | 'posted' | 'none'> => {
  const issue = run.gitHubIssue;
  if (!issue) return 'none';
  const installationId = (await deps.directory.getAccount(run.accountId))?.github?.installationId;
  if (installationId === undefined) return 'none';
  const body = outcomeReply(run, issue.calledBy, runLink(settings.publicApiUrl, run.runId));
  if (issue.commentId !== undefined) {
    try {
      await deps.github.editComment(installationId, issue.repo, issue.commentId, body);
      return 'edited';
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  const commentId = await deps.github.comment(installationId, issue.repo, issue.number, body);
  await deps.runs.recordFacts(run.runId, { gitHubIssue: { ...issue, commentId } });
  return 'posted';
};

/**
 * answerOnIssue for work that must not fail with it (ending a run, settling its pull request): what
 * failed is answered, for the caller to log. Nothing to tell without a GitHub App or an issue.
 */
export const tellIssue = async (
  deps: Pick<IssueDeps, 'runs' | 'directory'> & { github?: GitHubApp },
  settings: IssueSettings,
  run: Run,
): Promise<string | undefined> => {
  if (!deps.github || !run.gitHubIssue) return undefined;
  try {
    await answerOnIssue({ ...deps, github: deps.github }, settings, run);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
};

/** Tells a run's issue how it ended, from wherever it ended, handing what failed to `untold`. */
export type TellEnded = (run: Run) => Promise<void>;

export const tellEnded =
  (
    deps: Pick<IssueDeps, 'runs' | 'directory'> & { github?: GitHubApp },
    settings: IssueSettings,
    untold: (failed: string) => void,
  ): TellEnded =>
  async (run) => {
    const failed = await tellIssue(deps, settings, run);
    if (failed) untold(failed);
  };
