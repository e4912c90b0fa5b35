import { Webhooks } from '@octokit/webhooks';
import { gitHubAppKeys, pullRequestFrom } from '../shared/adapters/github-app.js';
import { signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { UnauthorizedError, ValidationError } from '../shared/domain/errors.js';
import { header, MAX_BODY_BYTES, PayloadTooLargeError, rawBody } from '../shared/http/request.js';
import { json } from '../shared/http/responses.js';
import { routeHandler } from '../shared/http/router.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { pullRequestEventSchema } from '../shared/schemas/github.js';
import { type PullRequestDeps, pullRequestChanged } from '../shared/usecases/github.js';
import { directoryRepository, runStore } from '../shared/wiring.js';

/** GitHub sends up to 25 MB; a pull request event is a few tens of KB. */
const MAX_WEBHOOK_BYTES = 4 * MAX_BODY_BYTES;

/**
 * GitHub's webhooks for the App: nothing is read before `X-Hub-Signature-256` proves GitHub sent it
 * (401 otherwise). A pull request closed or merged settles its run. Every effect is idempotent, so a
 * delivery that comes twice (GitHub's redelivery keeps its `X-GitHub-Delivery`) changes nothing more.
 */
export const makeHandler = (
  deps: Pick<PullRequestDeps, 'runs' | 'directory' | 'clock'>,
  verify: (body: string, signature: string) => Promise<boolean>,
) =>
  routeHandler({
    'POST /webhooks/github': async (event) => {
      const body = rawBody(event);
      if (Buffer.byteLength(body) > MAX_WEBHOOK_BYTES) throw new PayloadTooLargeError(MAX_WEBHOOK_BYTES);
      const signature = header(event, 'x-hub-signature-256');
      if (!signature || !(await verify(body, signature).catch(() => false))) {
        throw new UnauthorizedError('the X-Hub-Signature-256 signature does not match');
      }
      const name = header(event, 'x-github-event');
      const delivery = header(event, 'x-github-delivery');
      if (name !== 'pull_request')
        return json(200, { handled: false, reason: `${name ?? 'no'} event: not handled` });
      let payload: unknown;
      try {
        payload = JSON.parse(body);
      } catch {
        throw new ValidationError('the body is not valid JSON');
      }
      const parsed = pullRequestEventSchema.parse(payload);
      const outcome = await pullRequestChanged(deps, {
        installationId: parsed.installation.id,
        pullRequest: pullRequestFrom(parsed.pull_request, parsed.repository.clone_url),
      });
      logger.info('pull request delivery', { delivery, action: parsed.action, ...outcome });
      return json(200, outcome);
    },
  });

const env = readEnv('TABLE_NAME');
const keys = gitHubAppKeys(signingSecret('github'));
export const handler = makeHandler(
  { runs: runStore(env.TABLE_NAME), directory: directoryRepository(env.TABLE_NAME), clock: systemClock },
  async (body, signature) => new Webhooks({ secret: (await keys()).webhookSecret }).verify(body, signature),
);
