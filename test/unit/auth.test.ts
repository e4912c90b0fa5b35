import { describe, expect, it } from 'vitest';
import { UnauthorizedError } from '../../shared/domain/errors.js';
import { callerFromEvent } from '../../shared/http/auth.js';
import { httpEvent } from '../support/factories.js';

const names = { tenant: 'custom:accountId', accountRole: 'custom:accountRole' };
const withClaims = (claims: Record<string, string>) => httpEvent('GET /v1/account', { claims });

describe('callerFromEvent', () => {
  it('takes the tenant, the subject and the account role from the verified claims', () => {
    expect(
      callerFromEvent(
        withClaims({
          sub: 'alice',
          'custom:accountId': 'acct-1',
          'custom:accountRole': 'admin',
          email: 'a@x.io',
        }),
        names,
      ),
    ).toEqual({ accountId: 'acct-1', userId: 'alice', email: 'a@x.io', accountRole: 'admin' });
  });

  it.each([
    ['no tenant', { sub: 'alice' }],
    ['no subject', { 'custom:accountId': 'acct-1' }],
    ['a tenant too long for a key', { sub: 'alice', 'custom:accountId': 'x'.repeat(3000) }],
    ['a tenant that reaches into another key', { sub: 'alice', 'custom:accountId': 'acct-1#POD#x' }],
    ['a tenant of other characters', { sub: 'alice', 'custom:accountId': 'ünïcødé' }],
    ['a blank tenant', { sub: 'alice', 'custom:accountId': ' ' }],
  ])('refuses a token with %s as unauthorized', (_, claims) => {
    expect(() => callerFromEvent(withClaims(claims), names)).toThrow(UnauthorizedError);
  });
});
