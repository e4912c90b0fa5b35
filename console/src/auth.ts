import type { ConsoleAuth } from '../../shared/schemas/console.js';
import { forgetToken, type Session, storeToken } from './session.js';

/**
 * Sign-in. On AWS: Cognito's hosted UI with the authorization code flow and PKCE (a public client,
 * no secret in the browser); the ID token is the API's bearer token, as it carries the account
 * claims. Locally: the local cloud's dev sign-in, which hands out the local issuer's tokens.
 */

type CognitoAuth = Extract<ConsoleAuth, { kind: 'cognito' }>;

const PKCE_KEY = 'execution-runs.pkce';
export const CALLBACK_PATH = '/auth/callback';

const base64Url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

const randomText = () => base64Url(crypto.getRandomValues(new Uint8Array(32)));

const redirectUri = () => `${location.origin}${CALLBACK_PATH}`;

/** To the hosted UI; it comes back to CALLBACK_PATH with a code, and `next` is where the console goes then. */
export const startCognitoSignIn = async (auth: CognitoAuth, next: string): Promise<void> => {
  const verifier = randomText();
  const state = randomText();
  const challenge = base64Url(
    new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))),
  );
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, next }));
  const url = new URL('/oauth2/authorize', auth.domain);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: auth.clientId,
    redirect_uri: redirectUri(),
    scope: auth.scopes.join(' '),
    state,
    code_challenge_method: 'S256',
    code_challenge: challenge,
  }).toString();
  location.assign(url.href);
};

/** The hosted UI's answer: the code exchanged for tokens. Returns the session and where to go next. */
export const completeCognitoSignIn = async (
  auth: CognitoAuth,
  params: URLSearchParams,
): Promise<{ session: Session; next: string }> => {
  const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) ?? 'null') as {
    verifier: string;
    state: string;
    next: string;
  } | null;
  sessionStorage.removeItem(PKCE_KEY);
  const error = params.get('error_description') ?? params.get('error');
  if (error) throw new Error(`The sign-in was refused: ${error}`);
  const code = params.get('code');
  if (!pending || !code || params.get('state') !== pending.state) {
    throw new Error('This sign-in link is not the one this browser started. Sign in again.');
  }
  const response = await fetch(new URL('/oauth2/token', auth.domain), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: auth.clientId,
      code,
      redirect_uri: redirectUri(),
      code_verifier: pending.verifier,
    }),
  });
  const body = (await response.json().catch(() => ({}))) as { id_token?: string; error?: string };
  if (!response.ok || !body.id_token) {
    throw new Error(
      `The sign-in could not be completed (${body.error ?? `HTTP ${response.status}`}). Sign in again.`,
    );
  }
  return { session: storeToken(body.id_token), next: pending.next };
};

/** The local cloud's dev sign-in, as one of its people. */
export const signInLocally = async (
  auth: Extract<ConsoleAuth, { kind: 'local' }>,
  user: string,
): Promise<Session> => {
  const response = await fetch(auth.signInUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  const body = (await response.json().catch(() => ({}))) as { token?: string };
  if (!response.ok || !body.token) throw new Error(`The local sign-in failed (HTTP ${response.status}).`);
  return storeToken(body.token);
};

export const signOut = (auth: ConsoleAuth) => {
  forgetToken();
  if (auth.kind === 'cognito') {
    const url = new URL('/logout', auth.domain);
    url.search = new URLSearchParams({ client_id: auth.clientId, logout_uri: location.origin }).toString();
    location.assign(url.href);
  }
};
