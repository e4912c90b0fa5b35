/**
 * The key that signs approval links. Locally it is `APPROVAL_SIGNING_SECRET`. On AWS it is a Secrets
 * Manager secret generated at deploy (`APPROVAL_SECRET_ARN`), read through the AWS Parameters and
 * Secrets Lambda Extension (a layer that answers on localhost), once per container: the first request
 * waits for it, later ones reuse it, and a failed read is tried again by the next request.
 */

const MIN_SECRET_LENGTH = 32;
const EXTENSION_TIMEOUT_MS = 3000;

export type SecretSource = () => Promise<string>;

const checked = (secret: string, where: string): string => {
  if (secret.length < MIN_SECRET_LENGTH)
    throw new Error(
      `configuration: the approval signing secret from ${where} is shorter than ${MIN_SECRET_LENGTH}`,
    );
  return secret;
};

const readThroughExtension = async (secretId: string, env: NodeJS.ProcessEnv): Promise<string> => {
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
    throw new Error(
      `the approval signing secret could not be read: the extension answered ${response.status}`,
    );
  }
  const body = (await response.json()) as { SecretString?: unknown };
  if (typeof body.SecretString !== 'string')
    throw new Error('the approval signing secret has no string value');
  return checked(body.SecretString, secretId);
};

export const approvalSigningSecret = (env: NodeJS.ProcessEnv = process.env): SecretSource => {
  const local = env.APPROVAL_SIGNING_SECRET;
  if (local) {
    const secret = checked(local, 'APPROVAL_SIGNING_SECRET');
    return async () => secret;
  }
  const secretId = env.APPROVAL_SECRET_ARN;
  if (!secretId) throw new Error('configuration: APPROVAL_SIGNING_SECRET or APPROVAL_SECRET_ARN must be set');
  let reading: Promise<string> | undefined;
  return () => {
    reading ??= readThroughExtension(secretId, env).catch((err: unknown) => {
      reading = undefined;
      throw err;
    });
    return reading;
  };
};
