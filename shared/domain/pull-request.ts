import { RUN_ID_PATTERN } from './ids.js';
import { formatRunCost } from './money.js';
import type { Artifact, Run } from './run.js';

/**
 * A run's pull requests: the branch its pod pushes and what the pull request says. What a pull
 * request's fate does to the run is a command (commands.ts).
 */

/** The branch a run's pod pushes: one per run, so a pull request's head leads back to its run. */
export const runBranch = (podId: string, runId: string): string => `pods/${podId}/${runId}`;

/** The run a `pods/<podId>/<runId>` branch was pushed by; undefined for any other branch. */
export const runIdOfBranch = (branch: string): string | undefined => {
  const [prefix, podId, runId, ...rest] = branch.split('/');
  return prefix === 'pods' && podId && runId && rest.length === 0 && RUN_ID_PATTERN.test(runId)
    ? runId
    : undefined;
};

/** The commits a completed run pushed, one per changed repository: each gets its pull request. */
export const pushedCommits = (run: Run): (Artifact & { branch: string; repo: string })[] =>
  run.artifacts.filter(
    (a): a is Artifact & { branch: string; repo: string } =>
      a.kind === 'commit' && a.branch !== undefined && a.repo !== undefined,
  );

const TITLE_MAX_CHARS = 120;
const cut = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

export interface PullRequestContext {
  run: Run;
  /** the run's instructions, from its frozen config */
  prompt: string;
  /** where the run is read: its record, and `/steps` after it for its steps */
  runUrl: string;
}

/** Title from the item and the first line of the instructions; the body tells the run's story. */
export const pullRequestText = ({ run, prompt, runUrl }: PullRequestContext) => {
  const firstLine = prompt.trim().split('\n')[0] ?? '';
  const summary = run.result?.message?.trim();
  const sandbox = run.cost.sandboxCpuUsd + run.cost.sandboxMemoryUsd;
  const issue = run.gitHubIssue;
  const body = [
    summary || 'The pod gave no summary.',
    // merging it closes the issue the run was started from
    ...(issue ? ['', `Closes ${issue.fullName}#${issue.number}.`] : []),
    '',
    '---',
    `Run [${run.runId}](${runUrl}) of pod \`${run.podId}\` for ${run.itemId}, dispatched by ${run.attribution} (${run.mode}); its steps: ${runUrl}/steps.`,
    `Cost so far: ${formatRunCost(run.cost.totalUsd)} (model tokens ${formatRunCost(run.cost.tokenUsd)}, sandbox ${formatRunCost(sandbox)}).`,
  ].join('\n');
  return { title: cut(`${run.itemId}: ${firstLine}`, TITLE_MAX_CHARS), body };
};
