/**
 * The console's runtime config: `/config.json` beside its files, written at deploy by the CDK app and
 * served by the local cloud, so one build of the console runs against any deployment.
 */
export interface ConsoleConfig {
  /** the HTTP API, without a trailing slash */
  apiUrl: string;
  auth: ConsoleAuth;
}

export type ConsoleAuth =
  /** Cognito's hosted UI: authorization code with PKCE, for the app client `clientId` */
  | { kind: 'cognito'; domain: string; clientId: string; scopes: string[] }
  /**
   * the local cloud's dev sign-in: `POST signInUrl {user}` answers `{token}` for one of the local
   * issuer's people
   */
  | { kind: 'local'; signInUrl: string; users: { id: string; label: string }[] };

/** Where the console keeps the signed-in person's token (localStorage), which tools that open it set too. */
export const CONSOLE_TOKEN_KEY = 'execution-runs.token';
