import { CONSOLE_TOKEN_KEY as TOKEN_KEY } from '../../shared/schemas/console.js';

/** Who is signed in: the API's bearer token and the claims the console reads from it. */

export interface Session {
  token: string;
  userId: string;
  email?: string;
  accountId: string;
  accountRole: 'admin' | 'member';
  /** epoch seconds */
  expiresAt: number;
}

/**
 * The token's claims, read without checking its signature: the API checks it on every request, the
 * console only needs to know whose it is and when it expires.
 */
const claimsOf = (token: string): Record<string, unknown> | undefined => {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
  } catch {
    return undefined;
  }
};

export const sessionOf = (token: string): Session | undefined => {
  const claims = claimsOf(token);
  if (!claims || typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return undefined;
  return {
    token,
    userId: claims.sub,
    email: typeof claims.email === 'string' ? claims.email : undefined,
    accountId: String(claims['custom:accountId'] ?? ''),
    accountRole: claims['custom:accountRole'] === 'admin' ? 'admin' : 'member',
    expiresAt: claims.exp,
  };
};

/** The stored session while its token is valid. Kept in localStorage, so every tab of the console shares it. */
export const storedSession = (): Session | undefined => {
  const token = localStorage.getItem(TOKEN_KEY);
  const session = token ? sessionOf(token) : undefined;
  if (session && session.expiresAt * 1000 > Date.now()) return session;
  localStorage.removeItem(TOKEN_KEY);
  return undefined;
};

export const storeToken = (token: string): Session => {
  const session = sessionOf(token);
  if (!session) throw new Error('the sign-in returned a token the console cannot read');
  localStorage.setItem(TOKEN_KEY, token);
  return session;
};

export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);
