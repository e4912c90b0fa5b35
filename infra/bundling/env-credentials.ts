import { fromEnv } from '@aws-sdk/credential-provider-env';

/**
 * Stands in for `@aws-sdk/credential-provider-node` in Lambda bundles (see lambda.ts). Lambda hands a
 * function its role's credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN), which is the first place the SDK's default chain looks; the rest of that chain
 * (ini files, SSO, process, web identity, container and instance metadata, with their own STS and SSO
 * clients) is never reached there, yet costs every bundle about 130 KB to load.
 */
export const defaultProvider = (init?: Parameters<typeof fromEnv>[0]): ReturnType<typeof fromEnv> =>
  fromEnv(init);
