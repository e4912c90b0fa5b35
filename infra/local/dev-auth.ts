import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';

/**
 * The local cloud's identity provider: it signs RS256 JWTs the way an OIDC issuer (Cognito by default)
 * does, and verifies them with the checks API Gateway's JWT authorizer makes, so the HTTP API behaves
 * the same for a token from here as it does for a real one.
 */

export interface DevIssuerOptions {
  issuer: string;
  audience: string;
  /** where the key pair is kept as JWK JSON, so tokens stay valid across restarts */
  keyPath?: string;
}

export interface DevIssuer {
  issuer: string;
  audience: string;
  /** `iss`, `aud`, `iat` and `exp` default from the issuer; claims given here win (tests forge bad tokens). */
  sign(claims: Record<string, unknown>, ttlSeconds?: number): Promise<string>;
  verify(token: string): Promise<JWTPayload>;
  jwks(): JSONWebKeySet;
}

const ALG = 'RS256';
const DEFAULT_TTL_SECONDS = 3600;
const PRIVATE_RSA_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const;

const loadOrCreatePrivateJwk = async (keyPath: string | undefined): Promise<JWK> => {
  if (keyPath) {
    const stored = await readFile(keyPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (stored) return JSON.parse(stored) as JWK;
  }
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const privateJwk: JWK = { ...jwk, alg: ALG, use: 'sig', kid: await calculateJwkThumbprint(jwk) };
  if (keyPath) {
    await mkdir(dirname(keyPath), { recursive: true });
    await writeFile(keyPath, JSON.stringify(privateJwk, null, 2), { mode: 0o600 });
  }
  return privateJwk;
};

const publicPart = (privateJwk: JWK): JWK => {
  const jwk: JWK = { ...privateJwk };
  for (const member of PRIVATE_RSA_MEMBERS) delete jwk[member];
  return jwk;
};

const claimFailure = (message: string, payload: JWTPayload, claim: string) =>
  new errors.JWTClaimValidationFailed(message, payload, claim, 'check_failed');

export const createDevIssuer = async (options: DevIssuerOptions): Promise<DevIssuer> => {
  const { issuer, audience } = options;
  const privateJwk = await loadOrCreatePrivateJwk(options.keyPath);
  const signingKey = await importJWK(privateJwk, ALG);
  const keySet: JSONWebKeySet = { keys: [publicPart(privateJwk)] };
  const localKeySet = createLocalJWKSet(keySet);

  return {
    issuer,
    audience,
    jwks: () => structuredClone(keySet),

    sign: (claims, ttlSeconds = DEFAULT_TTL_SECONDS) => {
      const now = Math.floor(Date.now() / 1000);
      // An access token (Cognito's kind) names the audience in client_id and carries no aud.
      const audienceClaim = 'client_id' in claims ? {} : { aud: audience };
      return new SignJWT({ iss: issuer, ...audienceClaim, iat: now, exp: now + ttlSeconds, ...claims })
        .setProtectedHeader({ alg: ALG, kid: privateJwk.kid, typ: 'JWT' })
        .sign(signingKey);
    },

    // API Gateway's JWT authorizer: a key from the JWKS by kid, the issuer, aud (or client_id when the
    // token has no aud) among the audiences, exp and nbf around now, iat not in the future.
    verify: async (token) => {
      const { payload } = await jwtVerify(token, localKeySet, {
        issuer,
        algorithms: [ALG],
        requiredClaims: ['exp'],
      });
      if (payload.aud !== undefined) {
        const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
        if (!audiences.includes(audience)) throw claimFailure('unexpected "aud" claim value', payload, 'aud');
      } else if (payload.client_id !== audience) {
        throw claimFailure('unexpected "client_id" claim value', payload, 'client_id');
      }
      if (payload.iat !== undefined && payload.iat > Math.floor(Date.now() / 1000)) {
        throw claimFailure('"iat" claim is in the future', payload, 'iat');
      }
      return payload;
    },
  };
};
