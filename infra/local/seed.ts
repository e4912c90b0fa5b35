import type { Pod } from '../../shared/domain/tenancy.js';
import type { DirectoryRepository } from '../../shared/ports.js';

const DEMO_POD_SIZE = {
  cpu: 1024,
  memoryMiB: 2048,
  enabled: true,
  maxDurationSeconds: 3600,
  approvalWindowSeconds: 86_400,
  runBudgetMicroUsd: 0,
};

/** The demo tenant `npm start` sets up: an account, a project whose admin receives approval mail, a pod. */
export const DEMO = {
  accountId: 'demo-account',
  projectId: 'demo-project',
  /** Claude Code on the local model (or the one `npm start -- --model` names) */
  podId: 'demo-pod',
  /** the scripted demo agent, which `config.demo` drives: for tests and benchmarks */
  scriptedPodId: 'scripted-pod',
  adminUserId: 'demo-admin',
  adminEmail: 'admin@example.com',
  memberUserId: 'demo-member',
  memberEmail: 'member@example.com',
  /** an admin of another account, who must see nothing of the demo account */
  outsider: { userId: 'outsider', email: 'outsider@example.com', accountId: 'other-account' },
  /** the demo repository on the local git server, seeded from infra/local/demo-repo */
  repo: 'demo/demo-app.git',
  /** on the GitHub stand-in: the organization that owns `repo`, the App's installation on it, its admin */
  github: { organization: 'demo', installationId: 1, adminLogin: 'demo-admin' },
} as const;

/** A demo repository's URL as an earlier start (another port) or an older seed wrote it. */
const isDemoRepoUrl = (url: string) => /\/demo-app(\.git)?$/.test(url);

export const seedDemo = async (directory: DirectoryRepository, demoRepoUrl: string) => {
  const now = new Date().toISOString();
  await directory.createAccount({
    accountId: DEMO.accountId,
    name: 'Demo account',
    paymentStatus: 'active',
    limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
    updatedAt: now,
  });
  await directory.createAccount({
    accountId: DEMO.outsider.accountId,
    name: 'Another account',
    paymentStatus: 'active',
    limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
    updatedAt: now,
  });
  // the demo organization's installation of the stand-in's App holds the demo repository
  await directory.setAccountGitHub(DEMO.accountId, {
    installationId: DEMO.github.installationId,
    login: DEMO.github.organization,
    linkedBy: DEMO.adminUserId,
    linkedAt: now,
  });
  const project = await directory.getProject(DEMO.accountId, DEMO.projectId);
  if (!project) {
    await directory.putProject({
      accountId: DEMO.accountId,
      projectId: DEMO.projectId,
      name: 'Demo project',
      repos: [demoRepoUrl],
      members: [
        // the admin is the stand-in's demo-admin too: their comments and labels there start runs
        {
          userId: DEMO.adminUserId,
          role: 'admin',
          email: DEMO.adminEmail,
          githubLogin: DEMO.github.adminLogin,
        },
        { userId: DEMO.memberUserId, role: 'member', email: DEMO.memberEmail },
      ],
      updatedAt: now,
    });
  } else if (project.repos.some((url) => url !== demoRepoUrl && isDemoRepoUrl(url))) {
    // A persisted project keeps its settings, but its demo repository is wherever this start serves it.
    const repos = project.repos.map((url) => (isDemoRepoUrl(url) ? demoRepoUrl : url));
    await directory.putProject({ ...project, repos: [...new Set(repos)], updatedAt: now });
  }
  const pods: Pod[] = [
    {
      ...DEMO_POD_SIZE,
      accountId: DEMO.accountId,
      podId: DEMO.podId,
      name: 'Demo pod (Claude Code)',
      agent: { kind: 'claude-code', model: 'claude-sonnet-4-5', maxTurns: 30 },
      hooks: {
        postStart: { command: 'git --version && node --version', timeoutSeconds: 60 },
        postClone: { command: 'npm test', timeoutSeconds: 300 },
      },
      checkpoints: ['plan', 'commit'],
      // npm would ask the registry for a newer npm after every command
      env: { npm_config_update_notifier: 'false' },
      secrets: {},
      updatedAt: now,
    },
    {
      ...DEMO_POD_SIZE,
      accountId: DEMO.accountId,
      podId: DEMO.scriptedPodId,
      name: 'Scripted pod (demo agent)',
      agent: { kind: 'demo' },
      hooks: {},
      checkpoints: ['plan', 'commit'],
      env: {},
      secrets: {},
      updatedAt: now,
    },
  ];
  for (const pod of pods) {
    if (!(await directory.getPod(pod.accountId, pod.podId))) await directory.putPod(pod);
  }
  return DEMO;
};
