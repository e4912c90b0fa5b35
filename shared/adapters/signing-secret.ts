import type { EnvName } from '../config.js';

/**
 * The keys that sign what the API hands out and later takes back: approval links (the two approval
 * functions) and page cursors (the API function). Each is a secret of its own, so no function holds a
 * key it does not sign with. Locally a variable holds the key itself; on AWS it is a Secrets Manager
 * secret generated at deploy, named by its ARN and read through the AWS Parameters and Secrets Lambda
 * Extension (a layer that answers on localhost), once per container: the first request waits for it,
 * later ones reuse it, and a failed read is tried again by the next request.
 */
export const SIGNING_SECRETS = {
  approval: {
    what: 'the approval signing secret',
    local: 'APPROVAL_SIGNING_SECRET',
    arn: 'APPROVAL_SECRET_ARN',
  },
  cursor: { what: 'the cursor signing secret', local: 'CURSOR_SIGNING_SECRET', arn: 'CURSOR_SECRET_ARN' },
  /** the GitHub App's private key (it signs the App's JWTs) and webhook secret, as JSON */
  github: { what: 'the GitHub App secret', local: 'GITHUB_APP_SECRET', arn: 'GITHUB_APP_SECRET_ARN' },
} as const satisfies Record<string, { what: string; local: EnvName; arn: EnvName }>;
export type SigningPurpose = keyof typeof SIGNING_SECRETS;

const MIN_SECRET_LENGTH = 32;
const EXTENSION_TIMEOUT_MS = 3000;

export type SecretSource = () => Promise<string>;

const checked = (secret: string, what: string, where: string): string => {
  if (secret.length < MIN_SECRET_LENGTH)
    throw new Error(`configuration: ${what} from ${where} is shorter than ${MIN_SECRET_LENGTH}`);
  return secret;
};

const readThroughExtension = async (
  secretId: string,
  what: string,
  env: NodeJS.ProcessEnv,
): Promise<string> => {
  const port = env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT ?? '2773';
  const response = await fetch(
    `http://localhost:${port}/secretsmanager/get?secretId=${encodeURIComponent(secretId)}`,
    {
      // The extension only answers requests that carry the function's session token.
      headers: { 'X-Aws-Parameters-Secrets-Token': env.AWS_SESSION_TOKEN ?? '' },
      signal: AbortSignal.timeout(EXTENSION_TIMEOUT_MS),
    },
  );
  if (!response.ok) {
    throw new Error(`${what} could not be read: the extension answered ${response.status}`);
  }
  const body = (await response.json()) as { SecretString?: unknown };
  if (typeof body.SecretString !== 'string') throw new Error(`${what} has no string value`);
  return checked(body.SecretString, what, secretId);
};

export const signingSecret = (
  purpose: SigningPurpose,
  env: NodeJS.ProcessEnv = process.env,
): SecretSource => {
  const { what, local, arn } = SIGNING_SECRETS[purpose];
  const value = env[local];
  if (value) {
    const secret = checked(value, what, local);
    return async () => secret;
  }
  const secretId = env[arn];
  if (!secretId) throw new Error(`configuration: ${local} or ${arn} must be set`);
  let reading: Promise<string> | undefined;
  return () => {
    reading ??= readThroughExtension(secretId, what, env).catch((err: unknown) => {
      reading = undefined;
      throw err;
    });
    return reading;
  };
};
