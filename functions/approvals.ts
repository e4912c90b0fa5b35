import type { APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { type SecretSource, signingSecret } from '../shared/adapters/signing-secret.js';
import { readEnv } from '../shared/config.js';
import { DomainError } from '../shared/domain/errors.js';
import { renderApprovalPage, renderErrorPage } from '../shared/http/approval-page.js';
import { admitAccount, type ClaimNames, callerFromEvent } from '../shared/http/auth.js';
import { pathParam } from '../shared/http/request.js';
import { errorToResponse, type HttpResult, json } from '../shared/http/responses.js';
import { type RouteHandler, routeHandler } from '../shared/http/router.js';
import { logger } from '../shared/observability.js';
import { systemClock } from '../shared/ports.js';
import { decisionFormSchema } from '../shared/schemas/approvals.js';
import {
  type ApprovalDeps,
  decideByApi,
  decideByLink,
  viewApprovalLink,
  viewCheckpoint,
} from '../shared/usecases/approvals.js';
import { type AccountThrottleDeps, accountThrottle } from '../shared/usecases/throttle.js';
import {
  approvalStore,
  directoryRepository,
  requestCounter,
  runStore,
  taskSignals,
} from '../shared/wiring.js';
import * as z from '../shared/zod.js';

type Event = APIGatewayProxyEventV2WithJWTAuthorizer;

/** A form post is a few hundred bytes; anything much larger is not the approval page's. */
const MAX_FORM_BYTES = 8 * 1024;

const formBody = (event: Event): Record<string, string> => {
  const raw = event.body ?? '';
  const text = event.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  if (Buffer.byteLength(text) > MAX_FORM_BYTES) return {};
  return Object.fromEntries(new URLSearchParams(text));
};

/** The link's pages answer in HTML, refusals and failures too. */
const htmlPage =
  (render: (event: Event) => Promise<HttpResult>): RouteHandler =>
  async (event) => {
    try {
      return await render(event);
    } catch (err) {
      if (err instanceof DomainError || err instanceof z.ZodError) {
        return renderErrorPage(
          errorToResponse(err).statusCode,
          err instanceof DomainError ? err.message : 'The form is incomplete.',
        );
      }
      logger.error('approval page failed', { routeKey: event.routeKey, error: err as Error });
      return renderErrorPage(500, 'The request could not be completed. Try again in a moment.');
    }
  };

/**
 * Approvals: the email link's page (GET shows, never acts), its form post (the decision), and the
 * same decision through the v1 API for project admins.
 */
export const makeHandler = (
  deps: ApprovalDeps & AccountThrottleDeps,
  settings: { secret: SecretSource; claims: ClaimNames },
) => {
  const query = (event: Event) => ({
    for: event.queryStringParameters?.for,
    sig: event.queryStringParameters?.sig,
  });
  const apiDecision =
    (action: 'approve' | 'cancel'): RouteHandler =>
    async (event) =>
      json(
        200,
        await decideByApi(deps, callerFromEvent(event, settings.claims), pathParam(event, 'runId'), action),
      );

  return routeHandler(
    {
      'GET /approve/{approvalId}': htmlPage(async (event) => {
        const link = query(event);
        const view = await viewApprovalLink(
          deps,
          await settings.secret(),
          pathParam(event, 'approvalId'),
          link,
        );
        return renderApprovalPage(view, 'GET', { for: link.for ?? '', sig: link.sig ?? '' });
      }),
      'POST /approve/{approvalId}': htmlPage(async (event) => {
        const approvalId = pathParam(event, 'approvalId');
        const form = decisionFormSchema.parse(formBody(event));
        const view = await decideByLink(deps, await settings.secret(), approvalId, form, form.decision);
        return renderApprovalPage(view, 'POST', { for: form.for ?? '', sig: form.sig ?? '' });
      }),
      'GET /v1/runs/{runId}/checkpoint': async (event) =>
        json(
          200,
          await viewCheckpoint(deps, callerFromEvent(event, settings.claims), pathParam(event, 'runId')),
        ),
      'POST /v1/runs/{runId}/approve': apiDecision('approve'),
      'POST /v1/runs/{runId}/cancel': apiDecision('cancel'),
    },
    { admit: admitAccount(accountThrottle(deps), settings.claims) },
  );
};

const env = readEnv('TABLE_NAME', 'TENANT_CLAIM', 'ACCOUNT_ROLE_CLAIM');
export const handler = makeHandler(
  {
    runs: runStore(env.TABLE_NAME),
    directory: directoryRepository(env.TABLE_NAME),
    approvals: approvalStore(env.TABLE_NAME),
    signals: taskSignals(),
    requests: requestCounter(env.TABLE_NAME),
    clock: systemClock,
  },
  {
    secret: signingSecret('approval'),
    claims: { tenant: env.TENANT_CLAIM, accountRole: env.ACCOUNT_ROLE_CLAIM },
  },
);
