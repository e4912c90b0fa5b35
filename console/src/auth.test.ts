import { afterEach, beforeEach, describe, expect, it, type Mock, vi } from 'vitest';
import { CONSOLE_TOKEN_KEY, type ConsoleAuth } from '../../shared/schemas/console.js';
import { completeCognitoSignIn, startCognitoSignIn } from './auth.js';

const auth: Extract<ConsoleAuth, { kind: 'cognito' }> = {
  kind: 'cognito',
  domain: 'https://runs.auth.us-east-1.amazoncognito.com',
  clientId: 'client-1',
  scopes: ['openid', 'email'],
};
const ORIGIN = 'https://console.example.com';

class MemoryStorage {
  private readonly items = new Map<string, string>();
  getItem = (key: string) => this.items.get(key) ?? null;
  setItem = (key: string, value: string) => void this.items.set(key, value);
  removeItem = (key: string) => void this.items.delete(key);
}

const base64Url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

/** An ID token as Cognito's would read (the console does not check its signature: the API does). */
const idToken = (claims: Record<string, unknown>) =>
  ['{"alg":"RS256"}', JSON.stringify(claims)]
    .map((part) => base64Url(new TextEncoder().encode(part)))
    .concat('signature')
    .join('.');

let assign: Mock<(url: string) => void>;

beforeEach(() => {
  assign = vi.fn();
  vi.stubGlobal('sessionStorage', new MemoryStorage());
  vi.stubGlobal('localStorage', new MemoryStorage());
  vi.stubGlobal('location', { origin: ORIGIN, assign });
});

afterEach(() => {
  vi.unstubAllGlobals();
});

/** Starts a sign-in and answers the hosted UI's redirect parameters, with the verifier kept for it. */
const started = async (next = '/runs?status=QUEUED') => {
  await startCognitoSignIn(auth, next);
  return new URL(assign.mock.calls[0]?.[0] as string);
};

describe('signing in through the Cognito hosted UI', () => {
  it('sends the browser to the hosted UI with an S256 challenge of a verifier it keeps, and a state', async () => {
    const url = await started();
    const kept = JSON.parse(sessionStorage.getItem('execution-runs.pkce') as string);

    expect(`${url.origin}${url.pathname}`).toBe(`${auth.domain}/oauth2/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code',
      client_id: 'client-1',
      redirect_uri: `${ORIGIN}/auth/callback`,
      scope: 'openid email',
      state: kept.state,
      code_challenge_method: 'S256',
      code_challenge: base64Url(
        new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(kept.verifier))),
      ),
    });
    expect(kept.verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('exchanges the code with the verifier for the ID token, which becomes the session', async () => {
    const url = await started();
    const { verifier } = JSON.parse(sessionStorage.getItem('execution-runs.pkce') as string);
    const token = idToken({
      sub: 'alice',
      email: 'alice@example.com',
      exp: Math.floor(Date.now() / 1000) + 3600,
      'custom:accountId': 'acct-1',
      'custom:accountRole': 'admin',
    });
    const exchange = vi.fn(async (_url: URL, _init: RequestInit) =>
      Response.json({ id_token: token, access_token: 'access', token_type: 'Bearer' }),
    );
    vi.stubGlobal('fetch', exchange);

    const { session, next } = await completeCognitoSignIn(
      auth,
      new URLSearchParams({ code: 'code-1', state: url.searchParams.get('state') as string }),
    );

    const [tokenUrl, init] = exchange.mock.calls[0] ?? [];
    expect(String(tokenUrl)).toBe(`${auth.domain}/oauth2/token`);
    expect(Object.fromEntries(init?.body as URLSearchParams)).toEqual({
      grant_type: 'authorization_code',
      client_id: 'client-1',
      code: 'code-1',
      redirect_uri: `${ORIGIN}/auth/callback`,
      code_verifier: verifier,
    });
    expect(next).toBe('/runs?status=QUEUED');
    expect(session).toMatchObject({ userId: 'alice', accountId: 'acct-1', accountRole: 'admin', token });
    expect(localStorage.getItem(CONSOLE_TOKEN_KEY)).toBe(token);
    // the verifier is spent
    expect(sessionStorage.getItem('execution-runs.pkce')).toBeNull();
  });

  it('refuses an answer whose state is not the one this browser started, and says why when Cognito refused', async () => {
    const url = await started();
    const exchange = vi.fn();
    vi.stubGlobal('fetch', exchange);

    await expect(
      completeCognitoSignIn(auth, new URLSearchParams({ code: 'code-1', state: 'forged' })),
    ).rejects.toThrow('not the one this browser started');
    await started();
    await expect(
      completeCognitoSignIn(
        auth,
        new URLSearchParams({ error: 'access_denied', state: url.searchParams.get('state') as string }),
      ),
    ).rejects.toThrow('The sign-in was refused: access_denied');
    expect(exchange).not.toHaveBeenCalled();
    expect(localStorage.getItem(CONSOLE_TOKEN_KEY)).toBeNull();
  });
});
