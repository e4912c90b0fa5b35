import { Webhooks } from '@octokit/webhooks';
import { gitHubAppKeys, pullRequestFrom } from '../shared/adapters/github-app.js';
import { signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { NotConfiguredError, UnauthorizedError, ValidationError } from '../shared/domain/errors.js';
import { header, MAX_BODY_BYTES, PayloadTooLargeError, rawBody } from '../shared/http/request.js';
import { json } from '../shared/http/responses.js';
import { routeHandler } from '../shared/http/router.js';
import { logger } from '../shared/observability.js';
import { type GitHubApp, systemClock } from '../shared/ports.js';
import {
  type IssueCommentEvent,
  type IssuesEvent,
  issueCommentEventSchema,
  issuesEventSchema,
  pullRequestEventSchema,
} from '../shared/schemas/github.js';
import { pullRequestChanged } from '../shared/usecases/github.js';
import {
  type IssueActivity,
  type IssueDeps,
  type IssueSettings,
  issueActivity,
} from '../shared/usecases/github-issues.js';
import {
  directoryRepository,
  GITHUB_APP_VARIABLES,
  gitHubApp,
  runQueue,
  runStore,
  webhookDeliveries,
} from '../shared/wiring.js';

/** GitHub sends up to 25 MB; the events handled here are a few tens of KB. */
const MAX_WEBHOOK_BYTES = 4 * MAX_BODY_BYTES;

/** What an issue's comment or label says, as the use case reads it. */
const activityOf = (
  delivery: string,
  event: IssueCommentEvent | IssuesEvent,
  said: IssueActivity['said'],
): IssueActivity => ({
  delivery,
  installationId: event.installation.id,
  repo: event.repository.clone_url,
  issue: {
    fullName: event.repository.full_name,
    number: event.issue.number,
    title: event.issue.title,
    body: event.issue.body ?? '',
    url: event.issue.html_url,
  },
  sender: { login: event.sender.login, bot: event.sender.type === 'Bot' },
  said,
});

type Outcome = { handled: false; reason: string } | ({ handled: true } & Record<string, unknown>);

/**
 * Each event the App subscribes to, from its parsed payload to what it did: a pull request closed
 * or merged settles its run; a comment calling a pod, or a `pod:<podId>` label, starts a run.
 */
const handle = async (
  deps: IssueDeps,
  settings: IssueSettings,
  name: string | undefined,
  delivery: string,
  payload: unknown,
): Promise<Outcome> => {
  switch (name) {
    case 'pull_request': {
      const event = pullRequestEventSchema.parse(payload);
      return pullRequestChanged(deps, settings, {
        installationId: event.installation.id,
        pullRequest: pullRequestFrom(event.pull_request, event.repository.clone_url),
      });
    }
    case 'issue_comment': {
      const event = issueCommentEventSchema.parse(payload);
      if (event.action !== 'created') return { handled: false, reason: `a comment ${event.action}` };
      if (event.issue.pull_request !== undefined) {
        return { handled: false, reason: "a comment on a pull request's conversation" };
      }
      return issueActivity(deps, settings, activityOf(delivery, event, { comment: event.comment.body }));
    }
    case 'issues': {
      const event = issuesEventSchema.parse(payload);
      if (event.action !== 'labeled' || !event.label)
        return { handled: false, reason: `an issue ${event.action}` };
      return issueActivity(deps, settings, activityOf(delivery, event, { label: event.label.name }));
    }
    default:
      return { handled: false, reason: `${name ?? 'no'} event: not handled` };
  }
};

/**
 * GitHub's webhooks for the App: nothing is read before `X-Hub-Signature-256` proves GitHub sent it
 * (401 otherwise). Every effect is idempotent, so a delivery that comes twice (GitHub's redelivery
 * keeps its `X-GitHub-Delivery`) changes nothing more.
 */
export const makeHandler = (
  { github, ...ports }: Omit<IssueDeps, 'github'> & { github: GitHubApp | undefined },
  settings: IssueSettings,
  verify: (body: string, signature: string) => Promise<boolean>,
) =>
  routeHandler({
    'POST /webhooks/github': async (event) => {
      if (!github)
        throw new NotConfiguredError('this deployment has no GitHub App (see "Connecting GitHub")');
      const body = rawBody(event);
      if (Buffer.byteLength(body) > MAX_WEBHOOK_BYTES) throw new PayloadTooLargeError(MAX_WEBHOOK_BYTES);
      const signature = header(event, 'x-hub-signature-256');
      if (!signature || !(await verify(body, signature).catch(() => false))) {
        throw new UnauthorizedError('the X-Hub-Signature-256 signature does not match');
      }
      const name = header(event, 'x-github-event');
      const delivery = header(event, 'x-github-delivery');
      if (!delivery) throw new ValidationError('the X-GitHub-Delivery header is missing');
      let payload: unknown;
      try {
        payload = JSON.parse(body);
      } catch {
        throw new ValidationError('the body is not valid JSON');
      }
      const outcome = await handle({ ...ports, github }, settings, name, delivery, payload);
      logger.info('GitHub delivery', { delivery, event: name, ...outcome });
      return json(200, outcome);
    },
  });

const env = readEnv('TABLE_NAME', 'QUEUE_URL', 'PUBLIC_API_URL', ...GITHUB_APP_VARIABLES);
const keys = gitHubAppKeys(signingSecret('github'));
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    queue: runQueue(env.QUEUE_URL),
    clock: systemClock,
    github: gitHubApp(env),
    deliveries: webhookDeliveries(env.TABLE_NAME),
  },
  { publicApiUrl: env.PUBLIC_API_URL },
  async (body, signature) => new Webhooks({ secret: (await keys()).webhookSecret }).verify(body, signature),
);
