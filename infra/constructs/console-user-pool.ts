import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import { Construct } from 'constructs';

export interface ConsoleUserPoolProps {
  /** the console's address: the app client's sign-in callback and sign-out URLs are under it */
  consoleUrl: string;
  /** the hosted sign-in page's prefix, `<prefix>.auth.<region>.amazoncognito.com` (unique in the region) */
  domainPrefix: string;
  /** the claims the API reads the caller's account and role from (`custom:<name>`) */
  tenantClaim: string;
  accountRoleClaim: string;
}

/** `custom:accountId` → `accountId`: the attribute's name as the pool declares it. */
const attributeOf = (claim: string): string => {
  if (!claim.startsWith('custom:'))
    throw new Error(`a claim of the stack's user pool is custom:<name>, not ${claim}`);
  return claim.slice('custom:'.length);
};

/**
 * The stack's own sign-in, where no identity provider is named: a Cognito user pool whose people an
 * operator adds (no self sign-up), each with the account and role the API reads from the ID token,
 * which only an administrator can set; its hosted sign-in page; and the console's app client, public
 * (a browser keeps no secret) with the authorization code grant and PKCE.
 */
export class ConsoleUserPool extends Construct {
  public readonly userPool: cognito.UserPool;
  public readonly client: cognito.UserPoolClient;
  /** the JWT authorizer's issuer */
  public readonly issuer: string;
  /** the hosted sign-in page's base URL */
  public readonly domainUrl: string;

  constructor(scope: Construct, id: string, props: ConsoleUserPoolProps) {
    super(scope, id);
    const account = attributeOf(props.tenantClaim);
    const role = attributeOf(props.accountRoleClaim);
    this.userPool = new cognito.UserPool(this, 'Pool', {
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      standardAttributes: { email: { required: true, mutable: true } },
      customAttributes: {
        [account]: new cognito.StringAttribute({ minLen: 1, maxLen: 128, mutable: true }),
        [role]: new cognito.StringAttribute({ minLen: 1, maxLen: 16, mutable: true }),
      },
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(3),
      },
      mfa: cognito.Mfa.OPTIONAL,
      mfaSecondFactor: { otp: true, sms: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      featurePlan: cognito.FeaturePlan.ESSENTIALS,
      deletionProtection: true,
      // the people and their accounts outlive a stack that is deleted and made again
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.userPool).acknowledge(
      {
        id: 'AwsSolutions-COG2',
        reason:
          'MFA is offered (TOTP) and each person may turn it on; requiring it is the operator’s choice (set the pool’s MFA to required).',
      },
      {
        id: 'AwsSolutions-COG8',
        reason:
          'The Plus feature plan (threat protection) is priced per monthly active user; a deployment that wants it changes the pool’s feature plan.',
      },
    );
    const domain = this.userPool.addDomain('SignIn', { cognitoDomain: { domainPrefix: props.domainPrefix } });
    const email = { email: true, emailVerified: true };
    this.client = this.userPool.addClient('Console', {
      generateSecret: false,
      authFlows: { userSrp: true },
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
        callbackUrls: [`${props.consoleUrl}/auth/callback`],
        logoutUrls: [props.consoleUrl],
      },
      // the ID token carries the account and role; a person may not write them, an administrator sets them
      readAttributes: new cognito.ClientAttributes()
        .withStandardAttributes(email)
        .withCustomAttributes(account, role),
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true }),
      idTokenValidity: Duration.hours(1),
      preventUserExistenceErrors: true,
    });
    this.issuer = this.userPool.userPoolProviderUrl;
    this.domainUrl = domain.baseUrl();
  }
}
