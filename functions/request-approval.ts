import { SESv2Client } from '@aws-sdk/client-sesv2';
import { SesNotifier } from '../shared/adapters/ses-notifier.js';
import { type SecretSource, signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { validatedHandler } from '../shared/lambda.js';
import { logger } from '../shared/observability.js';
import { type Notifier, systemClock } from '../shared/ports.js';
import { approvalRequestSchema } from '../shared/schemas/approvals.js';
import { type ApprovalDeps, requestApproval } from '../shared/usecases/approvals.js';
import { approvalStore, directoryRepository, runStore, taskSignals } from '../shared/wiring.js';

/**
 * State machine task (waitForTaskToken): a supervised run reached a checkpoint. Store the approval
 * with the token a decision settles, and mail each project admin a signed link.
 */
export const makeHandler = (
  deps: ApprovalDeps & { notifier: Notifier },
  settings: { secret: SecretSource; publicApiUrl: string },
) =>
  validatedHandler(approvalRequestSchema, async (input) => {
    const links = { secret: await settings.secret(), publicApiUrl: settings.publicApiUrl };
    const { approvalId, notified, failed } = await requestApproval(deps, links, input);
    for (const { email, error } of failed) {
      logger.error('approval mail not sent', {
        runId: input.runId,
        approvalId,
        to: email,
        error: error as Error,
      });
    }
    if (approvalId && notified.length === 0) {
      logger.warn('no project admin could be mailed; the checkpoint can still be decided through the API', {
        runId: input.runId,
        approvalId,
      });
    }
    return { approvalId: approvalId ?? null, notified: notified.length };
  });

const env = readEnv('TABLE_NAME', 'PUBLIC_API_URL', 'APPROVAL_SENDER');
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    approvals: approvalStore(env.TABLE_NAME),
    signals: taskSignals(),
    clock: systemClock,
    notifier: new SesNotifier(new SESv2Client({ maxAttempts: 5 }), env.APPROVAL_SENDER),
  },
  { secret: signingSecret('approval'), publicApiUrl: env.PUBLIC_API_URL },
);
