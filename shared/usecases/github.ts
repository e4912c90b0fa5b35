import { raisePullRequests, settlePullRequest } from '../domain/commands.js';
import { runLink } from '../domain/github-issue.js';
import { pullRequestText, pushedCommits, runIdOfBranch } from '../domain/pull-request.js';
import type { PullRequest } from '../domain/run.js';
import type { Clock, DirectoryRepository, GitHubApp, RunList, RunStore } from '../ports.js';
import { carryOut } from './carry-out.js';
import { tellIssue } from './github-issues.js';

/**
 * The run's pull requests on GitHub: opened by the control plane once the pod has pushed, and
 * their fate (closed unmerged, merged) brought back to the run by GitHub's webhooks.
 */

export interface PullRequestDeps {
  runs: RunStore;
  directory: DirectoryRepository;
  clock: Clock;
  /** undefined when the deployment has no GitHub App: no pull request is opened, none invented */
  github?: GitHubApp;
}

export interface PullRequestSettings {
  /** the API's public base URL: the pull request links to the run there */
  publicApiUrl: string;
}

/**
 * After the pod completed and pushed: a pull request for each repository it pushed a commit to,
 * found by its head branch when a retried step already opened it. The run moves to PR_RAISED.
 * Answers the pull requests (none for a run that changed nothing).
 */
export const openPullRequests = async (
  deps: PullRequestDeps,
  settings: PullRequestSettings,
  runId: string,
): Promise<PullRequest[]> => {
  const run = await deps.runs.get(runId);
  if (run?.status !== 'RUNNING' || !deps.github) return [];
  const commits = pushedCommits(run);
  if (commits.length === 0) return [];
  const [account, snapshot] = await Promise.all([
    deps.directory.getAccount(run.accountId),
    deps.runs.getSnapshot(runId),
  ]);
  const installationId = account?.github?.installationId;
  // the pod pushed with this installation's token: without it, nothing could have been pushed
  if (installationId === undefined) throw new Error(`account ${run.accountId} has no GitHub installation`);
  const { title, body } = pullRequestText({
    run,
    prompt: snapshot?.prompt ?? '',
    runUrl: runLink(settings.publicApiUrl, runId),
  });
  const pullRequests: PullRequest[] = [];
  for (const commit of commits) {
    pullRequests.push(
      await deps.github.openPullRequest({
        installationId,
        repo: commit.repo,
        branch: commit.branch,
        title,
        body,
        draft: snapshot?.pod.draftPullRequests === true,
      }),
    );
  }
  await carryOut(deps.runs, run, (r) => raisePullRequests(r, pullRequests, deps.clock.now()));
  return pullRequests;
};

export interface PullRequestDelivery {
  /** the installation the delivery is for: only runs of the account that linked it are touched */
  installationId: number;
  pullRequest: PullRequest;
}

export type DeliveryOutcome =
  | {
      handled: true;
      runId: string;
      status: string;
      /** why the run's comment on its issue could not be rewritten */
      answerFailed?: string;
    }
  | { handled: false; reason: string };

/**
 * A pull request changed on GitHub. Its head branch names the run (`pods/<podId>/<runId>`); the run's
 * command decides what, if anything, changes, so a delivery that comes twice, late or out of order
 * changes nothing the first did not.
 */
export const pullRequestChanged = async (
  deps: Pick<PullRequestDeps, 'runs' | 'directory' | 'clock' | 'github'>,
  settings: PullRequestSettings,
  delivery: PullRequestDelivery,
): Promise<DeliveryOutcome> => {
  const runId = delivery.pullRequest.branch && runIdOfBranch(delivery.pullRequest.branch);
  if (!runId) return { handled: false, reason: 'not the branch of a run' };
  const run = await deps.runs.get(runId);
  if (!run) return { handled: false, reason: `no run ${runId}` };
  const account = await deps.directory.getAccount(run.accountId);
  if (account?.github?.installationId !== delivery.installationId) {
    return { handled: false, reason: `run ${runId} is not of the installation's account` };
  }
  const { run: after, changed } = await carryOut(deps.runs, run, (r) =>
    settlePullRequest(r, delivery.pullRequest, deps.clock.now()),
  );
  if (!changed) return { handled: false, reason: `run ${runId} is ${after.status}: nothing to change` };
  const answerFailed = await tellIssue(deps, settings, after);
  return { handled: true, runId, status: after.status, ...(answerFailed ? { answerFailed } : {}) };
};

/** How many open pull requests one sweep reads; the next day's sweep goes on from the oldest left. */
export const SWEEP_LIMIT = 500;

/**
 * Daily: the pull requests of COMPLETED runs still open on record, read from GitHub, for the fate
 * whose webhook never came (a delivery GitHub gave up on, or one that came while the run was still
 * finishing). Each is settled by the same command a webhook uses; one that fails is left to the next.
 */
export const sweepPullRequests = async (
  deps: Pick<PullRequestDeps, 'runs' | 'directory' | 'clock' | 'github'> & { list: RunList },
  settings: PullRequestSettings,
  onError: (runId: string, err: unknown) => void,
): Promise<{ read: number; settled: number }> => {
  const { github } = deps;
  if (!github) return { read: 0, settled: 0 };
  const runs = await deps.list.listOpenPullRequests(SWEEP_LIMIT);
  let settled = 0;
  for (const run of runs) {
    try {
      const installationId = (await deps.directory.getAccount(run.accountId))?.github?.installationId;
      if (installationId === undefined || !run.pullRequest) continue;
      const now = await github.pullRequest(installationId, run.pullRequest);
      const { run: after, changed } = await carryOut(deps.runs, run, (r) =>
        settlePullRequest(r, now, deps.clock.now()),
      );
      if (!changed) continue;
      settled += 1;
      const answerFailed = await tellIssue(deps, settings, after);
      if (answerFailed) onError(run.runId, new Error(answerFailed));
    } catch (err) {
      onError(run.runId, err);
    }
  }
  return { read: runs.length, settled };
};
