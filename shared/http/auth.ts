import type { APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { UnauthorizedError } from '../domain/errors.js';
import type { Caller } from '../domain/tenancy.js';
import { appendAccountOf } from '../observability.js';
import { idSchema } from '../schemas/ids.js';
import type { AccountThrottle } from '../usecases/throttle.js';

export interface ClaimNames {
  tenant: string;
  accountRole: string;
}

/**
 * The caller as API Gateway's JWT authorizer verified it: the tenant and the account role come from
 * claims; project roles come from the project record. The request's lines carry its account.
 */
export const callerFromEvent = (
  event: APIGatewayProxyEventV2WithJWTAuthorizer,
  names: ClaimNames,
): Caller => {
  const claims = event.requestContext.authorizer?.jwt?.claims ?? {};
  const accountId = claims[names.tenant];
  const userId = claims.sub;
  if (typeof accountId !== 'string' || accountId === '' || typeof userId !== 'string' || userId === '') {
    throw new UnauthorizedError('the token carries no tenant or subject');
  }
  // The tenant becomes part of every key the caller reads and writes: it must look like an id.
  if (!idSchema.safeParse(accountId).success) {
    throw new UnauthorizedError('the token’s tenant claim is not an account id');
  }
  appendAccountOf({ accountId });
  const email = typeof claims.email === 'string' ? claims.email : undefined;
  return {
    accountId,
    userId,
    email,
    accountRole: claims[names.accountRole] === 'admin' ? 'admin' : 'member',
  };
};

/**
 * The account's request limit, before a JWT route's work. Email links and GitHub's deliveries carry no
 * caller: only their route's throttle holds them.
 */
export const admitAccount =
  (throttle: AccountThrottle, names: ClaimNames) =>
  async (event: APIGatewayProxyEventV2WithJWTAuthorizer): Promise<void> => {
    if (event.requestContext.authorizer?.jwt === undefined) return;
    await throttle(callerFromEvent(event, names).accountId);
  };
