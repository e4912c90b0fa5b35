import { formatUsd } from './money.js';

/** Accounts, projects and pods: the configuration a run is checked against and frozen from. */

export const PROJECT_ROLES = ['viewer', 'member', 'admin'] as const;
export type ProjectRole = (typeof PROJECT_ROLES)[number];

export const ACCOUNT_ROLES = ['member', 'admin'] as const;
export type AccountRole = (typeof ACCOUNT_ROLES)[number];

export interface Caller {
  accountId: string;
  userId: string;
  email?: string;
  accountRole: AccountRole;
}

export interface ProjectMember {
  userId: string;
  role: ProjectRole;
  email?: string;
  /** their GitHub login: a comment or label of theirs on the project's repositories starts runs as them */
  githubLogin?: string;
}

export interface Project {
  accountId: string;
  projectId: string;
  name: string;
  repos: string[];
  members: ProjectMember[];
  updatedAt: string;
}

/** The checkpoints a supervised run pauses at: once the agent has planned, and before its commit is pushed. */
export const CHECKPOINTS = ['plan', 'commit'] as const;
export type Checkpoint = (typeof CHECKPOINTS)[number];

/**
 * The coding agent a pod runs. Whatever the kind, one runtime drives it over one protocol and
 * reports the run's phases itself.
 */
export type PodAgent =
  | { kind: 'claude-code'; model: string; maxTurns?: number; allowedTools?: string[] }
  /** any executable in the image that speaks the JSON-lines agent protocol on stdout */
  | { kind: 'command'; command: string[] }
  /** the scripted agent, driven by a dispatch's `config.demo` */
  | { kind: 'demo' };

/** A shell command the runtime runs at a point of the run's life; failing or overrunning ends the run. */
export interface Hook {
  command: string;
  timeoutSeconds: number;
}

export interface PodHooks {
  /** once the sandbox is up, before anything is cloned */
  postStart?: Hook;
  /** in each clone */
  postClone?: Hook;
}

export interface Pod {
  accountId: string;
  podId: string;
  name: string;
  /** the container image; absent: the stack's own pod image */
  image?: string;
  cpu: number;
  memoryMiB: number;
  agent: PodAgent;
  hooks: PodHooks;
  checkpoints: Checkpoint[];
  /** the pull requests its runs' changes get are opened as drafts */
  draftPullRequests?: boolean;
  /** plain variables for the agent and the hooks */
  env: Record<string, string>;
  /** variable name → name of the Secrets Manager secret whose value it holds in the container */
  secrets: Record<string, string>;
  /** the task definition registered for the pod's own image or secrets; absent: the stack's */
  taskDefinitionArn?: string;
  enabled: boolean;
  maxDurationSeconds: number;
  approvalWindowSeconds: number;
  /** micro-USD; 0 = no per-run budget */
  runBudgetMicroUsd: number;
  updatedAt: string;
}

/**
 * A pod that brings its own image or names secrets cannot run on the stack's task definition: the
 * image and the secrets (ECS fills them in from Secrets Manager as the task starts) are fixed in a
 * task definition, never in the launch's overrides.
 */
export const needsOwnTaskDefinition = (pod: Pick<Pod, 'image' | 'secrets'>): boolean =>
  pod.image !== undefined || Object.keys(pod.secrets).length > 0;

/** A pod as stored before its agent was configurable: one model, which it ran Claude Code with. */
type StoredPod = Omit<Pod, 'agent' | 'hooks' | 'checkpoints' | 'env' | 'secrets'> &
  Partial<Pod> & { model?: string };

/**
 * A pod read back from storage (the directory, or a run's frozen snapshot): one saved before agents
 * were configurable runs Claude Code with its model and the defaults every new pod gets.
 */
export const podFromStorage = ({ model, ...stored }: StoredPod): Pod => ({
  ...stored,
  agent: stored.agent ?? { kind: 'claude-code', model: model ?? 'unknown' },
  hooks: stored.hooks ?? {},
  checkpoints: stored.checkpoints ?? [...CHECKPOINTS],
  env: stored.env ?? {},
  secrets: stored.secrets ?? {},
});

export interface AccountLimits {
  /** micro-USD; 0 = no cap */
  dailyCapMicroUsd: number;
  monthlyCapMicroUsd: number;
  /** runs launched and not yet ended at once (0 = no limit); absent: DEFAULT_MAX_ACTIVE_RUNS */
  maxActiveRuns?: number;
  /** public API requests a second, averaged over a window (API_REQUEST_WINDOW_SECONDS); absent: the default */
  apiRequestsPerSecond?: number;
}

/**
 * The active runs an account has unless it sets its own limit. Each active run may spend past a cap
 * before its next check stops it, so the limit also bounds how far the account's caps can be overshot.
 */
export const DEFAULT_MAX_ACTIVE_RUNS = 20;
/** The highest limit an account may set: its active runs are one item, well under DynamoDB's 400 KB. */
export const MAX_ACTIVE_RUNS_LIMIT = 1000;

export const activeRunLimit = (limits: AccountLimits): number =>
  limits.maxActiveRuns ?? DEFAULT_MAX_ACTIVE_RUNS;

/** The public API's requests a second per account unless it sets its own: a busy console and CLI with room. */
export const DEFAULT_API_REQUESTS_PER_SECOND = 50;
/**
 * The highest an account may set. Each request is one write to the account's counter item, and one
 * item takes at most 1,000 writes a second; the refused ones write too, until the instance remembers.
 */
export const MAX_API_REQUESTS_PER_SECOND = 500;

export const apiRequestRate = (limits: AccountLimits | undefined): number =>
  limits?.apiRequestsPerSecond ?? DEFAULT_API_REQUESTS_PER_SECOND;

/** Why a run waits in the queue while its account has no active-run slot free. */
export const waitingForSlot = (limit: number): string =>
  `waiting for a slot: the account has ${limit} active run${limit === 1 ? '' : 's'}, its limit; the run starts when one ends`;

/** The account's installation of the deployment's GitHub App: where its runs' repositories live. */
export interface GitHubLink {
  installationId: number;
  /** the GitHub account (organization or user) the App is installed on */
  login: string;
  linkedBy: string;
  linkedAt: string;
}

export interface Account {
  accountId: string;
  name: string;
  paymentStatus: 'active' | 'payment_required';
  limits: AccountLimits;
  github?: GitHubLink;
  updatedAt: string;
}

const RANK: Record<ProjectRole, number> = { viewer: 0, member: 1, admin: 2 };

/** The caller's role in a project; account admins act as project admins everywhere in their account. */
export const projectRoleOf = (project: Project, caller: Caller): ProjectRole | undefined => {
  if (caller.accountRole === 'admin') return 'admin';
  return project.members.find((m) => m.userId === caller.userId)?.role;
};

export const hasProjectRole = (project: Project, caller: Caller, needed: ProjectRole): boolean => {
  const role = projectRoleOf(project, caller);
  // Stryker disable next-line ConditionalExpression: equivalent, without it RANK[undefined] >= any rank is false too
  if (role === undefined) return false;
  return RANK[role] >= RANK[needed];
};

/**
 * Whether the caller may read the project, its runs and everything of theirs (steps, logs, the live
 * stream): at least the viewer role; account admins read every project.
 */
export const canView = (project: Project, caller: Caller): boolean =>
  hasProjectRole(project, caller, 'viewer');

/** The project as the caller sees it: its members' addresses are for its admins only. */
export const projectAsSeenBy = (project: Project, caller: Caller): Project =>
  hasProjectRole(project, caller, 'admin')
    ? project
    : { ...project, members: project.members.map(({ email: _email, ...member }) => member) };

/** What the pre-flight checks decide before anything is launched. */
export type CheckOutcome =
  | { ok: true }
  | { ok: false; exitReason: 'cancelled' | 'payment_required' | 'budget_hit'; message: string };

/** The account's spend over its trailing windows, in micro-USD. */
export interface TrailingSpend {
  last24hMicroUsd: number;
  last30dMicroUsd: number;
}

/** Why the account may spend no more, or undefined while it is under its caps. A cap of 0 is no cap. */
export const capReached = (limits: AccountLimits, spend: TrailingSpend): string | undefined => {
  const { dailyCapMicroUsd: daily, monthlyCapMicroUsd: monthly } = limits;
  if (daily > 0 && spend.last24hMicroUsd >= daily)
    return `the account spent ${formatUsd(spend.last24hMicroUsd)} in the last 24 hours; its cap is ${formatUsd(daily)}`;
  if (monthly > 0 && spend.last30dMicroUsd >= monthly)
    return `the account spent ${formatUsd(spend.last30dMicroUsd)} in the last 30 days; its cap is ${formatUsd(monthly)}`;
  return undefined;
};

export const hasSpendCaps = (limits: AccountLimits): boolean =>
  limits.dailyCapMicroUsd > 0 || limits.monthlyCapMicroUsd > 0;

export const preflight = (
  pod: Pod | undefined,
  account: Account | undefined,
  spend?: TrailingSpend,
): CheckOutcome => {
  if (!account) return { ok: false, exitReason: 'cancelled', message: 'the account no longer exists' };
  if (account.paymentStatus !== 'active')
    return { ok: false, exitReason: 'payment_required', message: 'the account has no valid payment method' };
  if (!pod) return { ok: false, exitReason: 'cancelled', message: 'the pod no longer exists' };
  if (!pod.enabled) return { ok: false, exitReason: 'cancelled', message: `pod ${pod.podId} is disabled` };
  const capMessage = spend && capReached(account.limits, spend);
  if (capMessage) return { ok: false, exitReason: 'budget_hit', message: capMessage };
  return { ok: true };
};

/** A repository's identity whichever way its clone URL is written (GitHub's are case-insensitive, `.git` optional). */
const repoKey = (cloneUrl: string): string =>
  cloneUrl
    .trim()
    .replace(/\/+$/, '')
    .replace(/\.git$/, '')
    .toLowerCase();

export const sameRepository = (a: string, b: string): boolean => repoKey(a) === repoKey(b);

/** The run's repositories that the installation (its clone URLs) does not cover. */
export const uncoveredRepos = (repos: readonly string[], covered: readonly string[]): string[] => {
  const keys = new Set(covered.map(repoKey));
  return repos.filter((repo) => !keys.has(repoKey(repo)));
};
