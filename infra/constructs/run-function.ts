import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { EnvName } from '../../shared/config.js';
import { FUNCTION_DEFAULT_ENVIRONMENT, type FunctionDefinition } from '../../shared/manifest.js';
import { LAMBDA_BUNDLE } from '../bundling/lambda.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface RunFunctionProps {
  definition: FunctionDefinition;
  /** the declared variables' values (environmentFor) */
  environment: Record<string, string>;
  /** @default one month */
  logRetention?: logs.RetentionDays;
}

/**
 * One Lambda handler from functions/<entry>.ts with the project's defaults: ARM, Node 22, the project's
 * bundle (infra/bundling/lambda.ts), its own log group with a
 * retention, and a role that starts with nothing but the right to write to that log group.
 */
export class RunFunction extends Construct {
  public readonly function: NodejsFunction;
  public readonly role: iam.Role;
  public readonly logGroup: logs.LogGroup;
  private readonly definition: FunctionDefinition;

  constructor(scope: Construct, id: string, props: RunFunctionProps) {
    super(scope, id);
    const { definition } = props;
    this.definition = definition;
    for (const name of Object.keys(props.environment)) this.assertDeclared(name);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // An own role instead of the AWSLambdaBasicExecutionRole managed policy, whose logs:* grant covers
    // every log group in the account.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `${definition.entry}: ${definition.description}`,
    });
    this.logGroup.grantWrite(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: path.join(repoRoot, 'functions', `${definition.entry}.ts`),
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: path.join(repoRoot, 'package-lock.json'),
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      timeout: Duration.seconds(definition.timeoutSeconds),
      memorySize: definition.memoryMiB,
      description: definition.description,
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      // X-Ray: each invocation a trace (Powertools Tracer adds the AWS calls and the run id to it)
      tracing: lambda.Tracing.ACTIVE,
      environment: { ...FUNCTION_DEFAULT_ENVIRONMENT, ...props.environment },
      bundling: {
        format: OutputFormat.ESM,
        target: LAMBDA_BUNDLE.target,
        mainFields: [...LAMBDA_BUNDLE.mainFields],
        minify: LAMBDA_BUNDLE.minify,
        sourceMap: LAMBDA_BUNDLE.sourceMap,
        sourcesContent: LAMBDA_BUNDLE.sourcesContent,
        banner: LAMBDA_BUNDLE.banner,
        esbuildArgs: {
          '--alias': Object.entries(LAMBDA_BUNDLE.alias).map(([from, to]) => `${from}=${to}`),
        },
        // Nothing external: the AWS SDK is bundled too.
        externalModules: [],
      },
    });
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level permissions.',
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Node.js 22 is chosen on purpose: the handlers are bundled for and tested against Node 22; moving to a newer runtime is a deliberate upgrade.',
    });
  }

  /** Sets one of the function's declared variables, once its value exists (a resource made later). */
  setVariable(name: EnvName, value: string): void {
    this.assertDeclared(name);
    this.function.addEnvironment(name, value);
  }

  private assertDeclared(name: string): void {
    if (!(this.definition.environment as readonly string[]).includes(name)) {
      throw new Error(`${this.definition.entry} does not declare the variable ${name} (shared/manifest.ts)`);
    }
  }
}
