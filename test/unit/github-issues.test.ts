import { describe, expect, it, vi } from 'vitest';
import { NotFoundError } from '../../shared/domain/errors.js';
import {
  type IssueFacts,
  issueItemId,
  issuePrompt,
  labelledPod,
  mentionedPod,
  outcomeReply,
  podOfLabel,
  projectForCaller,
  refusalReply,
  runLink,
  startedReply,
} from '../../shared/domain/github-issue.js';
import { RUN_ID_PATTERN } from '../../shared/domain/ids.js';
import type { Run } from '../../shared/domain/run.js';
import type { Account, Pod, Project } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository, GitHubApp, RunQueue, WebhookDeliveries } from '../../shared/ports.js';
import {
  answerOnIssue,
  type IssueActivity,
  type IssueDeps,
  issueActivity,
  tellIssue,
} from '../../shared/usecases/github-issues.js';
import { podFactory, projectFactory, runFactory } from '../support/factories.js';
import { MemoryRuns } from '../support/memory-runs.js';

const NOW = new Date('2026-01-01T01:00:00.000Z');
const RUN_ID = 'run_01J0000000000000000000000A';
const REPO = 'https://github.com/demo/demo-app.git';
const settings = { publicApiUrl: 'https://api.example/' };
const ITEM_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const issue: IssueFacts = {
  fullName: 'demo/demo-app',
  number: 12,
  title: 'Add a health check',
  body: 'The service has no /health route.',
  url: 'https://github.com/demo/demo-app/issues/12',
};

const linkedAccount: Account = {
  accountId: 'acct-1',
  name: 'Demo',
  paymentStatus: 'active',
  limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
  github: { installationId: 42, login: 'demo', linkedBy: 'root', linkedAt: '2026-01-01T00:00:00.000Z' },
  updatedAt: '2026-01-01T00:00:00.000Z',
};

const demoPod = podFactory({ podId: 'demo-pod' });

/** The project that covers the issue's repository (written without `.git`), with a member, an admin and a viewer. */
const demoProject = projectFactory({
  projectId: 'proj-1',
  repos: ['https://github.com/demo/demo-app'],
  members: [
    { userId: 'u-octo', role: 'member', email: 'octo@example.com', githubLogin: 'OctoCat' },
    { userId: 'u-root', role: 'admin', githubLogin: 'root-ruth' },
    { userId: 'u-view', role: 'viewer', githubLogin: 'viewer-vic' },
    { userId: 'u-nogh', role: 'member' },
  ],
});

describe('a run’s link', () => {
  it('is the run’s record in the API, whatever slashes end the base URL', () => {
    expect(runLink('https://api.example', RUN_ID)).toBe(`https://api.example/v1/runs/${RUN_ID}`);
    expect(runLink('https://api.example//', RUN_ID)).toBe(`https://api.example/v1/runs/${RUN_ID}`);
    expect(runLink('https://api.example/prod/', RUN_ID)).toBe(`https://api.example/prod/v1/runs/${RUN_ID}`);
  });
});

describe('the pod a label calls', () => {
  it('is a pod of the account, the label read whatever its case, as GitHub treats labels', () => {
    expect(labelledPod('pod:demo-pod', ['demo-pod'])).toBe('demo-pod');
    expect(labelledPod('POD:Demo-Pod', ['demo-pod'])).toBe('demo-pod');
    expect(labelledPod('pod:other', ['demo-pod'])).toBeUndefined();
    expect(labelledPod('pod:', ['demo-pod'])).toBeUndefined();
  });

  it('is what follows `pod:`; an empty `pod:` and any other label call none', () => {
    expect(podOfLabel('pod:demo-pod')).toBe('demo-pod');
    expect(podOfLabel('pod:')).toBeUndefined();
    expect(podOfLabel('bug')).toBeUndefined();
    expect(podOfLabel('demo-pod')).toBeUndefined();
    expect(podOfLabel('x-pod:demo-pod')).toBeUndefined();
  });
});

describe('the pod a comment mentions', () => {
  const pods = ['demo-pod', 'Docs-Pod'];

  it('is the handle’s pod, asked what follows the handle', () => {
    expect(mentionedPod('@demo-pod add a health check', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'add a health check',
    });
    expect(mentionedPod('Could @demo-pod add a health check?', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'add a health check?',
    });
    expect(mentionedPod('Thanks!\n\n@demo-pod  add a health check\n', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'add a health check',
    });
  });

  it('matches the handle whatever its case, answering the pod’s own id', () => {
    expect(mentionedPod('@DEMO-POD fix it', pods)).toEqual({ podId: 'demo-pod', instructions: 'fix it' });
    expect(mentionedPod('@docs-pod write the README', pods)).toEqual({
      podId: 'Docs-Pod',
      instructions: 'write the README',
    });
  });

  it.each([
    ['ask @demo-pod.', 'ask'],
    ['ask @demo-pod...', 'ask'],
    ['Hey @demo-pod. Please fix it', 'Please fix it'],
    ['@demo-pod.. go', 'go'],
    ['@demo-pod: go', 'go'],
    [' @demo-pod!', ''],
  ])('takes a handle %j that punctuation closes without the punctuation', (comment, instructions) => {
    expect(mentionedPod(comment, pods)).toEqual({ podId: 'demo-pod', instructions });
  });

  it('keeps the code and quotes of the instructions as written: only the handle is looked for outside them', () => {
    expect(mentionedPod('@demo-pod rename `foo` to `bar`', pods)?.instructions).toBe('rename `foo` to `bar`');
    expect(mentionedPod('@demo-pod fix:\n```\nTypeError: x\n```\n', pods)?.instructions).toBe(
      'fix:\n```\nTypeError: x\n```',
    );
    expect(mentionedPod('@demo-pod as said:\n> make it fast', pods)?.instructions).toBe(
      'as said:\n> make it fast',
    );
  });

  it('cuts the handle where it was called, not where its text first appears', () => {
    expect(mentionedPod('Mail ops@demo-pod.com about it, @demo-pod', pods)?.instructions).toBe(
      'Mail ops@demo-pod.com about it,',
    );
  });

  it('answers the first pod it knows, past handles of people and other pods it does not', () => {
    expect(mentionedPod('@octocat thinks @demo-pod should fix it', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'should fix it',
    });
    expect(mentionedPod('@docs-pod and @demo-pod both', pods)?.podId).toBe('Docs-Pod');
    expect(mentionedPod('@demo-pod-two fix it', pods)).toBeUndefined();
  });

  it('takes no e-mail address, path or doubled @ for a mention', () => {
    expect(mentionedPod('write to me@demo-pod.com', pods)).toBeUndefined();
    expect(mentionedPod('write to me@demo-pod', pods)).toBeUndefined();
    expect(mentionedPod('see src/@demo-pod/index.ts', pods)).toBeUndefined();
    expect(mentionedPod('see ./@demo-pod', pods)).toBeUndefined();
    expect(mentionedPod('see x-@demo-pod', pods)).toBeUndefined();
    expect(mentionedPod('@@demo-pod fix it', pods)).toBeUndefined();
  });

  it('ignores quoted lines, fenced code blocks and inline code', () => {
    expect(mentionedPod('> @demo-pod add a health check\n\nI agree', pods)).toBeUndefined();
    expect(mentionedPod('   > @demo-pod add a health check', pods)).toBeUndefined();
    expect(mentionedPod('Try:\n```\n@demo-pod build\n```\nok', pods)).toBeUndefined();
    expect(mentionedPod('Try:\n~~~sh\n@demo-pod build\n~~~\nok', pods)).toBeUndefined();
    expect(mentionedPod('run `@demo-pod fix` to call it', pods)).toBeUndefined();
    // a fence left open is code to the end, and fences inside list items are code too
    expect(mentionedPod('```\n@demo-pod inside\n', pods)).toBeUndefined();
    expect(mentionedPod('- step\n  ```\n  @demo-pod x\n  ```\n', pods)).toBeUndefined();
    // a reply that quotes an earlier call and calls the pod anew
    expect(mentionedPod('> @demo-pod add a health check\n\n@demo-pod add a readiness check', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'add a readiness check',
    });
    expect(mentionedPod('```js\n@demo-pod old\n```\n@demo-pod new ask', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'new ask',
    });
  });

  it('is undefined for a comment that mentions no pod, or an account without pods', () => {
    expect(mentionedPod('LGTM, ship it', pods)).toBeUndefined();
    expect(mentionedPod('@octocat please review', pods)).toBeUndefined();
    expect(mentionedPod('@demo-pod add a health check', [])).toBeUndefined();
  });

  it('asks what the rest of the comment says when nothing follows the handle', () => {
    expect(mentionedPod('Please add a health check, @demo-pod', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'Please add a health check,',
    });
    expect(mentionedPod('Please add a health check\n@demo-pod\n', pods)).toEqual({
      podId: 'demo-pod',
      instructions: 'Please add a health check',
    });
    expect(mentionedPod('@demo-pod', pods)).toEqual({ podId: 'demo-pod', instructions: '' });
  });
});

describe('the item of a run started from an issue', () => {
  it('is `<owner>.<repo>.<number>`', () => {
    expect(issueItemId('demo/demo-app', 12)).toBe('demo.demo-app.12');
    expect(issueItemId('Demo_Org/demo.app', 7)).toBe('Demo_Org.demo.app.7');
  });

  it('replaces each character outside the item id’s alphabet with -, and drops what may not begin one', () => {
    expect(issueItemId('my org/app+plus', 3)).toBe('my-org.app-plus.3');
    expect(issueItemId('démo/app', 3)).toBe('d-mo.app.3');
    expect(issueItemId('_demo/app', 3)).toBe('demo.app.3');
  });

  it('cuts a very long name so the id is at most 128 characters and still ends with the number', () => {
    const id = issueItemId(`${'a'.repeat(100)}/${'b'.repeat(100)}`, 12);
    expect(id).toHaveLength(128);
    expect(id).toBe(`${'a'.repeat(100)}.${'b'.repeat(24)}.12`);
    expect(issueItemId('o/'.padEnd(300, 'r'), 123456)).toHaveLength(128);
    expect(issueItemId('o/'.padEnd(300, 'r'), 123456).endsWith('.123456')).toBe(true);
  });

  it('always is a valid item id', () => {
    for (const [fullName, number] of [
      ['demo/demo-app', 12],
      ['my org/app+plus', 3],
      ['-dash/.github', 1],
      ['ünï/cødé', 99999],
      [`${'x'.repeat(127)}/y`, 1],
      [`${'x'.repeat(300)}/${'y'.repeat(300)}`, 2_147_483_647],
    ] as const) {
      expect(issueItemId(fullName, number)).toMatch(ITEM_ID_PATTERN);
    }
  });
});

describe('the prompt of a run started from an issue', () => {
  it('asks what the comment says first, then gives the issue: reference, title, URL and body', () => {
    expect(issuePrompt(issue, '  add a health check ')).toBe(
      'add a health check\n\n' +
        'GitHub issue demo/demo-app#12: Add a health check\n' +
        'https://github.com/demo/demo-app/issues/12\n\n' +
        'The service has no /health route.',
    );
  });

  it('asks to resolve the issue when there are no instructions (a label, or a bare mention)', () => {
    const expected =
      'Resolve GitHub issue demo/demo-app#12.\n\n' +
      'GitHub issue demo/demo-app#12: Add a health check\n' +
      'https://github.com/demo/demo-app/issues/12\n\n' +
      'The service has no /health route.';
    expect(issuePrompt(issue)).toBe(expected);
    expect(issuePrompt(issue, '')).toBe(expected);
    expect(issuePrompt(issue, ' \n ')).toBe(expected);
  });

  it('is at most 200,000 characters, the issue’s body cut to fit', () => {
    const prompt = issuePrompt({ ...issue, body: 'x'.repeat(300_000) }, 'add a health check');
    expect(prompt).toHaveLength(200_000);
    expect(
      prompt.startsWith('add a health check\n\nGitHub issue demo/demo-app#12: Add a health check\n'),
    ).toBe(true);
    expect(prompt.endsWith('xxxx')).toBe(true);
  });
});

describe('the project the caller dispatches in', () => {
  const other = projectFactory({
    projectId: 'proj-0',
    repos: ['https://github.com/demo/other'],
    members: [{ userId: 'u-octo', role: 'admin', githubLogin: 'octocat' }],
  });

  it('is none when no project includes the repository', () => {
    expect(projectForCaller([], REPO, 'octocat')).toEqual({ refusal: 'no_project' });
    expect(projectForCaller([other], REPO, 'octocat')).toEqual({ refusal: 'no_project' });
  });

  it('refuses a login no member of a covering project has, even one a member of another project has', () => {
    expect(projectForCaller([other, demoProject], REPO, 'stranger')).toEqual({ refusal: 'not_member' });
    const withoutOcto = { ...demoProject, members: demoProject.members.filter((m) => m.userId !== 'u-octo') };
    expect(projectForCaller([other, withoutOcto], REPO, 'octocat')).toEqual({ refusal: 'not_member' });
  });

  it('refuses a viewer', () => {
    expect(projectForCaller([demoProject], REPO, 'viewer-vic')).toEqual({ refusal: 'viewer' });
  });

  it('is the project, with the member, for a member or an admin, the login compared whatever its case', () => {
    expect(projectForCaller([demoProject], REPO, 'octocat')).toEqual({
      project: demoProject,
      member: demoProject.members[0],
    });
    expect(projectForCaller([demoProject], REPO, 'ROOT-Ruth')).toEqual({
      project: demoProject,
      member: demoProject.members[1],
    });
  });

  it('compares repositories without `.git`, a trailing slash or case', () => {
    for (const cloneUrl of [
      'https://github.com/demo/demo-app',
      'https://github.com/Demo/Demo-App.git',
      'https://github.com/demo/demo-app/',
    ]) {
      expect(projectForCaller([demoProject], cloneUrl, 'octocat')).toMatchObject({
        project: { projectId: 'proj-1' },
      });
    }
    expect(projectForCaller([demoProject], 'https://github.com/demo/demo-app2.git', 'octocat')).toEqual({
      refusal: 'no_project',
    });
  });

  it('is the first covering project by id where the person is at least a member, leaving the list as given', () => {
    const member = { userId: 'u-octo', role: 'member' as const, githubLogin: 'octocat' };
    const b = projectFactory({ projectId: 'proj-b', repos: [REPO], members: [member] });
    const a = projectFactory({ projectId: 'proj-a', repos: [REPO], members: [member] });
    const c = projectFactory({ projectId: 'proj-c', repos: [REPO], members: [{ ...member, role: 'admin' }] });
    const given = [c, b, a];
    expect(projectForCaller(given, REPO, 'octocat')).toEqual({ project: a, member });
    expect(given.map((p) => p.projectId)).toEqual(['proj-c', 'proj-b', 'proj-a']);

    // a viewer in the first covering project, a member in the next: the next
    const viewerInA = { ...a, members: [{ ...member, role: 'viewer' as const }] };
    expect(projectForCaller([c, b, viewerInA], REPO, 'octocat')).toEqual({ project: b, member });
  });
});

describe('the replies on the issue', () => {
  it('says why a call started nothing, naming the person, the repository and the pod', () => {
    expect(refusalReply('no_project', 'octocat', 'demo/demo-app', 'demo-pod')).toBe(
      '@octocat no project includes demo/demo-app, so pod `demo-pod` was not started. ' +
        'An admin can add the repository to a project.',
    );
    expect(refusalReply('viewer', 'octocat', 'demo/demo-app', 'demo-pod')).toBe(
      '@octocat you can view the projects that include demo/demo-app, but starting pod `demo-pod` ' +
        'needs the member role. A project admin can give it to you.',
    );
    expect(refusalReply('not_member', 'octocat', 'demo/demo-app', 'demo-pod')).toBe(
      '@octocat only members of a project that includes demo/demo-app can start pod `demo-pod`, and no ' +
        'project member has your GitHub login. A project admin can add you, with `githubLogin`.',
    );
  });

  it('links the run it started', () => {
    expect(startedReply({ runId: RUN_ID, podId: 'demo-pod' }, 'octocat', 'https://api.example/r')).toBe(
      `@octocat started pod \`demo-pod\`: run [${RUN_ID}](https://api.example/r). This comment will say how it ends.`,
    );
  });

  describe('once the run has ended', () => {
    const link = `https://api.example/v1/runs/${RUN_ID}`;
    const head = `@octocat pod \`demo-pod\`, run [${RUN_ID}](${link})`;
    const PR = 'https://github.com/demo/demo-app/pull/7';
    const ended = (over: Partial<Run>) =>
      runFactory({
        runId: RUN_ID,
        podId: 'demo-pod',
        cost: { ...runFactory().cost, totalUsd: 0.1234 },
        ...over,
      });
    const reply = (over: Partial<Run>) => outcomeReply(ended(over), 'octocat', link);

    it('names the pull requests a completed run opened, with its cost', () => {
      expect(
        reply({
          status: 'COMPLETED',
          artifacts: [
            { kind: 'commit', url: `${REPO}/commit/abc`, sha: 'abc', at: 't' },
            { kind: 'pull_request', url: PR, at: 't' },
            { kind: 'pull_request', url: 'https://github.com/demo/lib/pull/3', at: 't' },
          ],
        }),
      ).toBe(`${head} opened ${PR}, https://github.com/demo/lib/pull/3. Cost $0.1234.`);
      // a run recorded before its pull requests were artifacts
      expect(reply({ status: 'COMPLETED', pullRequest: { url: PR, state: 'open' } })).toBe(
        `${head} opened ${PR}. Cost $0.1234.`,
      );
    });

    it('says a completed run proposed no change when it opened no pull request', () => {
      expect(
        reply({ status: 'COMPLETED', artifacts: [{ kind: 'commit', url: `${REPO}/commit/abc`, at: 't' }] }),
      ).toBe(`${head} completed without a change to propose. Cost $0.1234.`);
    });

    it('says who merged the pull request, or that it was closed without merging', () => {
      const artifacts = [{ kind: 'pull_request' as const, url: PR, at: 't' }];
      expect(
        reply({ status: 'DONE', artifacts, pullRequest: { url: PR, state: 'merged', mergedBy: 'octocat' } }),
      ).toBe(`${head}: ${PR} was merged by @octocat. Cost $0.1234.`);
      expect(reply({ status: 'DONE', artifacts, pullRequest: { url: PR, state: 'merged' } })).toBe(
        `${head}: ${PR} was merged. Cost $0.1234.`,
      );
      expect(reply({ status: 'PR_REJECTED', artifacts, pullRequest: { url: PR, state: 'closed' } })).toBe(
        `${head}: ${PR} was closed without merging. Cost $0.1234.`,
      );
    });

    it('says how a failed, cancelled or stopped run ended, and why', () => {
      expect(reply({ status: 'FAILED', exitReason: 'tool_call_failed', message: 'npm test failed' })).toBe(
        `${head} ended FAILED (tool_call_failed): npm test failed. Cost $0.1234.`,
      );
      expect(reply({ status: 'FAILED' })).toBe(`${head} ended FAILED. Cost $0.1234.`);
      expect(reply({ status: 'DEAD_LETTER', exitReason: 'dead_letter' })).toBe(
        `${head} ended DEAD_LETTER (dead_letter). Cost $0.1234.`,
      );
      expect(reply({ status: 'ABANDONED', message: 'the sandbox was lost' })).toBe(
        `${head} ended ABANDONED: the sandbox was lost. Cost $0.1234.`,
      );
      expect(reply({ status: 'CANCELLED', exitReason: 'budget_hit', message: 'the cap was reached' })).toBe(
        `${head} was cancelled (budget_hit): the cap was reached. Cost $0.1234.`,
      );
      expect(reply({ status: 'CANCELLED' })).toBe(`${head} was cancelled. Cost $0.1234.`);
      expect(reply({ status: 'STOPPED', message: 'stopped by alice' })).toBe(
        `${head} was stopped: stopped by alice. Cost $0.1234.`,
      );
      expect(reply({ status: 'STOPPED' })).toBe(`${head} was stopped. Cost $0.1234.`);
    });

    it('says where a run that has not ended stands, without a cost', () => {
      expect(reply({ status: 'RUNNING' })).toBe(`${head} is RUNNING.`);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// The use cases, with hand-written fakes of their ports.

const notExpected = async (): Promise<never> => {
  throw new Error('not expected in these tests');
};

/** The directory in memory: accounts (found by their installation), projects and pods. */
const fakeDirectory = (
  state: { accounts?: Account[]; projects?: Project[]; pods?: Pod[] } = {},
): DirectoryRepository => {
  const accounts = state.accounts ?? [linkedAccount];
  const projects = state.projects ?? [demoProject];
  const pods = state.pods ?? [demoPod, podFactory({ podId: 'docs-pod' })];
  return {
    getAccount: vi.fn(async (accountId: string) => accounts.find((a) => a.accountId === accountId)),
    accountOfInstallation: vi.fn(async (installationId: number) =>
      accounts.find((a) => a.github?.installationId === installationId),
    ),
    getProject: vi.fn(async (accountId: string, projectId: string) =>
      projects.find((p) => p.accountId === accountId && p.projectId === projectId),
    ),
    listProjects: vi.fn(async (accountId: string) => projects.filter((p) => p.accountId === accountId)),
    getPod: vi.fn(async (accountId: string, podId: string) =>
      pods.find((p) => p.accountId === accountId && p.podId === podId),
    ),
    listPods: vi.fn(async (accountId: string) => pods.filter((p) => p.accountId === accountId)),
    createAccount: vi.fn(notExpected),
    setAccountLimits: vi.fn(notExpected),
    setAccountGitHub: vi.fn(notExpected),
    putProject: vi.fn(notExpected),
    putPod: vi.fn(notExpected),
  };
};

/** A GitHub App whose comments are numbered from 901. */
const fakeGitHub = (): GitHubApp => {
  let comments = 900;
  return {
    installation: vi.fn(notExpected),
    openPullRequest: vi.fn(notExpected),
    pullRequest: vi.fn(notExpected),
    comment: vi.fn(async () => {
      comments += 1;
      return comments;
    }),
    editComment: vi.fn(async () => undefined),
  };
};

/** Deliveries remembered in memory: the first sight of an id is the only first time. */
const fakeDeliveries = (): WebhookDeliveries => {
  const seen = new Set<string>();
  return {
    firstTime: vi.fn(async (deliveryId: string) => {
      if (seen.has(deliveryId)) return false;
      seen.add(deliveryId);
      return true;
    }),
  };
};

const fakeDeps = (directory = fakeDirectory()) => {
  const runs = new MemoryRuns();
  vi.spyOn(runs, 'create');
  vi.spyOn(runs, 'recordFacts');
  const queue: RunQueue = { enqueue: vi.fn(async () => undefined) };
  const deps = {
    runs,
    directory,
    queue,
    clock: { now: () => NOW },
    github: fakeGitHub(),
    deliveries: fakeDeliveries(),
  } satisfies IssueDeps;
  return deps;
};

const commented = (login: string, comment: string, delivery = 'd-1'): IssueActivity => ({
  delivery,
  installationId: 42,
  repo: REPO,
  issue,
  sender: { login, bot: false },
  said: { comment },
});

const labelled = (login: string, label: string, delivery = 'd-1'): IssueActivity => ({
  ...commented(login, '', delivery),
  said: { label },
});

describe('a comment or label on an issue', () => {
  it('from a bot starts nothing and reads nothing', async () => {
    const deps = fakeDeps();
    const activity = { ...commented('demo-app[bot]', '@demo-pod fix it'), sender: { login: 'x', bot: true } };
    expect(await issueActivity(deps, settings, activity)).toEqual({
      handled: false,
      reason: 'sent by a bot',
    });
    expect(deps.directory.accountOfInstallation).not.toHaveBeenCalled();
    expect(deps.github.comment).not.toHaveBeenCalled();
  });

  it('on an installation no account links starts nothing', async () => {
    const deps = fakeDeps();
    const activity = { ...commented('octocat', '@demo-pod fix it'), installationId: 99 };
    expect(await issueActivity(deps, settings, activity)).toEqual({
      handled: false,
      reason: 'installation 99 is linked to no account',
    });
    expect(deps.directory.listPods).not.toHaveBeenCalled();
    expect(deps.github.comment).not.toHaveBeenCalled();
  });

  it('that calls no pod of the account starts nothing and gets no reply', async () => {
    const deps = fakeDeps();
    for (const activity of [
      commented('stranger', 'LGTM'),
      commented('stranger', '@other-pod fix it'),
      commented('stranger', '> @demo-pod fix it'),
      labelled('stranger', 'bug'),
      labelled('stranger', 'pod:other-pod'),
      labelled('stranger', 'pod:'),
    ]) {
      expect(await issueActivity(deps, settings, activity)).toEqual({
        handled: false,
        reason: 'calls no pod of the account',
      });
    }
    expect(deps.directory.listProjects).not.toHaveBeenCalled();
    expect(deps.deliveries.firstTime).not.toHaveBeenCalled();
    expect(deps.github.comment).not.toHaveBeenCalled();
    expect(deps.runs.create).not.toHaveBeenCalled();
  });

  it('from a stranger is refused with one reply per delivery, and starts nothing', async () => {
    const deps = fakeDeps();
    const activity = commented('stranger', '@demo-pod fix it', 'd-7');

    expect(await issueActivity(deps, settings, activity)).toEqual({
      handled: true,
      outcome: 'refused',
      refusal: 'not_member',
    });
    expect(deps.deliveries.firstTime).toHaveBeenCalledWith('d-7', 3 * 86_400);
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(
      42,
      REPO,
      12,
      refusalReply('not_member', 'stranger', 'demo/demo-app', 'demo-pod'),
    );

    // the same delivery sent again: refused again, without a second reply
    expect(await issueActivity(deps, settings, activity)).toEqual({
      handled: true,
      outcome: 'refused',
      refusal: 'not_member',
    });
    expect(deps.deliveries.firstTime).toHaveBeenCalledTimes(2);
    expect(deps.github.comment).toHaveBeenCalledTimes(1);
    expect(deps.runs.create).not.toHaveBeenCalled();
    expect(deps.queue.enqueue).not.toHaveBeenCalled();
  });

  it('from a viewer is refused as a viewer, naming the pod the label called', async () => {
    const deps = fakeDeps();
    expect(await issueActivity(deps, settings, labelled('viewer-vic', 'pod:demo-pod'))).toEqual({
      handled: true,
      outcome: 'refused',
      refusal: 'viewer',
    });
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(
      42,
      REPO,
      12,
      refusalReply('viewer', 'viewer-vic', 'demo/demo-app', 'demo-pod'),
    );
    expect(deps.runs.create).not.toHaveBeenCalled();
  });

  it('on a repository no project includes is refused as such', async () => {
    const deps = fakeDeps();
    const activity = {
      ...commented('octocat', '@demo-pod fix it'),
      repo: 'https://github.com/demo/other.git',
    };
    expect(await issueActivity(deps, settings, activity)).toEqual({
      handled: true,
      outcome: 'refused',
      refusal: 'no_project',
    });
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(
      42,
      'https://github.com/demo/other.git',
      12,
      refusalReply('no_project', 'octocat', 'demo/demo-app', 'demo-pod'),
    );
  });

  it('from a member dispatches the pod as them, as a mention, and links the run in a comment it records', async () => {
    const deps = fakeDeps();

    const outcome = await issueActivity(deps, settings, commented('octocat', '@demo-pod add a health check'));

    expect(outcome).toStrictEqual({
      handled: true,
      outcome: 'dispatched',
      runId: expect.stringMatching(RUN_ID_PATTERN),
      created: true,
    });
    if (!('runId' in outcome)) throw new Error('not dispatched');
    const { runId } = outcome;
    const gitHubIssue = {
      repo: REPO,
      fullName: 'demo/demo-app',
      number: 12,
      url: 'https://github.com/demo/demo-app/issues/12',
      calledBy: 'octocat',
    };
    expect(deps.runs.create).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({
        runId,
        accountId: 'acct-1',
        projectId: 'proj-1',
        itemId: 'demo.demo-app.12',
        podId: 'demo-pod',
        mode: 'autopilot',
        status: 'QUEUED',
        source: 'mention',
        attribution: 'u-octo',
        repos: ['https://github.com/demo/demo-app'],
        gitHubIssue,
        createdAt: NOW.toISOString(),
      }),
      expect.objectContaining({
        prompt: issuePrompt(issue, 'add a health check'),
        repos: ['https://github.com/demo/demo-app'],
        pod: demoPod,
        dispatcher: { userId: 'u-octo', email: 'octo@example.com' },
        request: { itemId: 'demo.demo-app.12', podId: 'demo-pod', mode: 'autopilot', source: 'mention' },
      }),
      'github-delivery:d-1',
    );
    expect(deps.directory.getProject).toHaveBeenCalledWith('acct-1', 'proj-1');
    expect(deps.directory.getPod).toHaveBeenCalledWith('acct-1', 'demo-pod');
    expect(deps.queue.enqueue).toHaveBeenCalledExactlyOnceWith(runId);
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(
      42,
      REPO,
      12,
      `@octocat started pod \`demo-pod\`: run [${runId}](https://api.example/v1/runs/${runId}). ` +
        'This comment will say how it ends.',
    );
    expect(deps.runs.recordFacts).toHaveBeenCalledExactlyOnceWith(runId, {
      gitHubIssue: { ...gitHubIssue, commentId: 901 },
    });
    expect(deps.runs.stored(runId).gitHubIssue).toEqual({ ...gitHubIssue, commentId: 901 });
    // a member is never refused: no delivery is spent on a refusal
    expect(deps.deliveries.firstTime).not.toHaveBeenCalled();
  });

  it('from an admin of the project dispatches as them too, without an e-mail they do not have', async () => {
    const deps = fakeDeps();
    const outcome = await issueActivity(
      deps,
      settings,
      commented('root-ruth', 'Hey @demo-pod bump the deps'),
    );
    expect(outcome).toMatchObject({ handled: true, outcome: 'dispatched', created: true });
    expect(deps.runs.create).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({
        attribution: 'u-root',
        gitHubIssue: expect.objectContaining({ calledBy: 'root-ruth' }),
      }),
      expect.objectContaining({
        prompt: issuePrompt(issue, 'bump the deps'),
        dispatcher: { userId: 'u-root' },
      }),
      'github-delivery:d-1',
    );
  });

  it('a member’s label `pod:<podId>` dispatches the pod as a reaction, asked to resolve the issue', async () => {
    const deps = fakeDeps();
    const outcome = await issueActivity(deps, settings, labelled('octocat', 'pod:demo-pod', 'd-2'));
    expect(outcome).toMatchObject({ handled: true, outcome: 'dispatched', created: true });
    expect(deps.runs.create).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({ source: 'react', attribution: 'u-octo', podId: 'demo-pod' }),
      expect.objectContaining({
        prompt: issuePrompt(issue),
        request: { itemId: 'demo.demo-app.12', podId: 'demo-pod', mode: 'autopilot', source: 'react' },
      }),
      'github-delivery:d-2',
    );
    expect(deps.github.comment).toHaveBeenCalledTimes(1);
  });

  it('sent again as the same delivery starts no second run and posts no second comment', async () => {
    const deps = fakeDeps();
    const activity = commented('octocat', '@demo-pod add a health check', 'd-3');

    const first = await issueActivity(deps, settings, activity);
    const again = await issueActivity(deps, settings, activity);

    expect(first).toMatchObject({ outcome: 'dispatched', created: true });
    expect(again).toStrictEqual({
      handled: true,
      outcome: 'dispatched',
      runId: (first as { runId: string }).runId,
      created: false,
    });
    expect(deps.runs.runs.size).toBe(1);
    expect(deps.github.comment).toHaveBeenCalledTimes(1);
    expect(deps.runs.recordFacts).toHaveBeenCalledTimes(1);
  });

  it('dispatches all the same when its comment cannot be posted, telling why', async () => {
    const deps = fakeDeps();
    vi.mocked(deps.github.comment).mockRejectedValueOnce(new Error('GitHub is down'));

    const outcome = await issueActivity(deps, settings, commented('octocat', '@demo-pod add a health check'));

    expect(outcome).toStrictEqual({
      handled: true,
      outcome: 'dispatched',
      runId: expect.stringMatching(RUN_ID_PATTERN),
      created: true,
      replyFailed: 'GitHub is down',
    });
    const { runId } = outcome as { runId: string };
    expect(deps.queue.enqueue).toHaveBeenCalledExactlyOnceWith(runId);
    expect(deps.runs.recordFacts).not.toHaveBeenCalled();
    expect(deps.runs.stored(runId).gitHubIssue?.commentId).toBeUndefined();
  });

  it('tells what was thrown when the comment fails with something that is not an Error', async () => {
    const deps = fakeDeps();
    vi.mocked(deps.github.comment).mockRejectedValueOnce('rate limited');
    expect(
      await issueActivity(deps, settings, commented('octocat', '@demo-pod add a health check')),
    ).toMatchObject({ outcome: 'dispatched', replyFailed: 'rate limited' });
  });

  it('is dispatched in the first project by id that includes the repository and has the caller as a member', async () => {
    const first = projectFactory({
      projectId: 'proj-0',
      repos: [REPO],
      members: [{ userId: 'u-octo-0', role: 'viewer', githubLogin: 'octocat' }],
    });
    const second = projectFactory({
      projectId: 'proj-2',
      repos: [REPO],
      members: [{ userId: 'u-octo-2', role: 'member', githubLogin: 'octocat' }],
    });
    const deps = fakeDeps(fakeDirectory({ projects: [second, demoProject, first] }));
    await issueActivity(deps, settings, commented('octocat', '@demo-pod fix it'));
    expect(deps.runs.create).toHaveBeenCalledExactlyOnceWith(
      expect.objectContaining({ projectId: 'proj-1', attribution: 'u-octo' }),
      expect.anything(),
      'github-delivery:d-1',
    );
  });
});

describe('the run’s answer on its issue', () => {
  const gitHubIssue = {
    repo: REPO,
    fullName: 'demo/demo-app',
    number: 12,
    url: 'https://github.com/demo/demo-app/issues/12',
    calledBy: 'octocat',
  };
  const ended = (over: Partial<Run> = {}) =>
    runFactory({
      runId: RUN_ID,
      podId: 'demo-pod',
      status: 'FAILED',
      exitReason: 'tool_call_failed',
      message: 'npm test failed',
      gitHubIssue: { ...gitHubIssue, commentId: 777 },
      ...over,
    });
  const body = (run: Run) => outcomeReply(run, 'octocat', `https://api.example/v1/runs/${RUN_ID}`);
  const setUp = (run: Run, directory = fakeDirectory()) => {
    const runs = new MemoryRuns().put(run);
    vi.spyOn(runs, 'recordFacts');
    return { runs, directory, github: fakeGitHub() };
  };

  it('rewrites the run’s comment with how the run ended', async () => {
    const run = ended();
    const deps = setUp(run);
    expect(await answerOnIssue(deps, settings, run)).toBe('edited');
    expect(deps.directory.getAccount).toHaveBeenCalledWith('acct-1');
    expect(deps.github.editComment).toHaveBeenCalledExactlyOnceWith(
      42,
      REPO,
      777,
      `@octocat pod \`demo-pod\`, run [${RUN_ID}](https://api.example/v1/runs/${RUN_ID}) ended FAILED ` +
        '(tool_call_failed): npm test failed. Cost $0.0000.',
    );
    expect(deps.github.comment).not.toHaveBeenCalled();
    expect(deps.runs.recordFacts).not.toHaveBeenCalled();
  });

  it('answers nothing for a run started from no issue, reading nothing', async () => {
    const run = ended({ gitHubIssue: undefined });
    const deps = setUp(run);
    expect(await answerOnIssue(deps, settings, run)).toBe('none');
    expect(deps.directory.getAccount).not.toHaveBeenCalled();
    expect(deps.github.editComment).not.toHaveBeenCalled();
    expect(deps.github.comment).not.toHaveBeenCalled();
  });

  it('answers nothing when the account links no GitHub installation, or is gone', async () => {
    const run = ended();
    const { github: _unlinked, ...unlinked } = linkedAccount;
    for (const accounts of [[unlinked], []]) {
      const deps = setUp(run, fakeDirectory({ accounts }));
      expect(await answerOnIssue(deps, settings, run)).toBe('none');
      expect(deps.github.editComment).not.toHaveBeenCalled();
      expect(deps.github.comment).not.toHaveBeenCalled();
    }
  });

  it('posts a new comment, and records it, when the run’s comment was deleted', async () => {
    const run = ended();
    const deps = setUp(run);
    vi.mocked(deps.github.editComment).mockRejectedValueOnce(new NotFoundError('comment', '777'));

    expect(await answerOnIssue(deps, settings, run)).toBe('posted');

    expect(deps.github.editComment).toHaveBeenCalledExactlyOnceWith(42, REPO, 777, body(run));
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(42, REPO, 12, body(run));
    expect(deps.runs.recordFacts).toHaveBeenCalledExactlyOnceWith(RUN_ID, {
      gitHubIssue: { ...gitHubIssue, commentId: 901 },
    });
    expect(deps.runs.stored(RUN_ID).gitHubIssue?.commentId).toBe(901);
  });

  it('posts a comment, and records it, when the run’s first comment was never posted', async () => {
    const run = ended({ status: 'COMPLETED', exitReason: undefined, message: undefined, gitHubIssue });
    const deps = setUp(run);

    expect(await answerOnIssue(deps, settings, run)).toBe('posted');

    expect(deps.github.editComment).not.toHaveBeenCalled();
    expect(deps.github.comment).toHaveBeenCalledExactlyOnceWith(
      42,
      REPO,
      12,
      `@octocat pod \`demo-pod\`, run [${RUN_ID}](https://api.example/v1/runs/${RUN_ID}) completed without ` +
        'a change to propose. Cost $0.0000.',
    );
    expect(deps.runs.recordFacts).toHaveBeenCalledExactlyOnceWith(RUN_ID, {
      gitHubIssue: { ...gitHubIssue, commentId: 901 },
    });
    expect(deps.runs.stored(RUN_ID).gitHubIssue).toEqual({ ...gitHubIssue, commentId: 901 });
  });

  it('lets any other failure to rewrite the comment through, posting nothing', async () => {
    const run = ended();
    const deps = setUp(run);
    vi.mocked(deps.github.editComment).mockRejectedValueOnce(new Error('GitHub answered 502'));
    await expect(answerOnIssue(deps, settings, run)).rejects.toThrow('GitHub answered 502');
    expect(deps.github.comment).not.toHaveBeenCalled();
    expect(deps.runs.recordFacts).not.toHaveBeenCalled();
  });

  it('lets a failure to post the comment through', async () => {
    const run = ended({ gitHubIssue });
    const deps = setUp(run);
    vi.mocked(deps.github.comment).mockRejectedValueOnce(new Error('GitHub is down'));
    await expect(answerOnIssue(deps, settings, run)).rejects.toThrow('GitHub is down');
    expect(deps.runs.recordFacts).not.toHaveBeenCalled();
  });

  describe('told by work that must not fail with it', () => {
    it('tells nothing without a GitHub App or an issue, calling nothing', async () => {
      const run = ended();
      const { runs, directory } = setUp(run);
      expect(await tellIssue({ runs, directory }, settings, run)).toBeUndefined();
      expect(directory.getAccount).not.toHaveBeenCalled();

      const github = fakeGitHub();
      const noIssue = ended({ gitHubIssue: undefined });
      expect(await tellIssue({ runs, directory, github }, settings, noIssue)).toBeUndefined();
      expect(directory.getAccount).not.toHaveBeenCalled();
      expect(github.editComment).not.toHaveBeenCalled();
      expect(github.comment).not.toHaveBeenCalled();
    });

    it('answers on the issue and returns nothing when that worked', async () => {
      const run = ended();
      const deps = setUp(run);
      expect(await tellIssue(deps, settings, run)).toBeUndefined();
      expect(deps.github.editComment).toHaveBeenCalledExactlyOnceWith(42, REPO, 777, body(run));
    });

    it('returns what failed instead of throwing it', async () => {
      const run = ended();
      const deps = setUp(run);
      vi.mocked(deps.github.editComment).mockRejectedValueOnce(new Error('GitHub answered 502'));
      expect(await tellIssue(deps, settings, run)).toBe('GitHub answered 502');

      vi.mocked(deps.github.editComment).mockRejectedValueOnce('socket hang up');
      expect(await tellIssue(deps, settings, run)).toBe('socket hang up');
    });
  });
});
