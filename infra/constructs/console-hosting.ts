import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AssetHashType,
  DefaultStackSynthesizer,
  DockerImage,
  Duration,
  Stack,
  Validations,
} from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import { Construct } from 'constructs';
import { contentSecurityPolicy } from '../../console/security.js';
import type { ConsoleConfig } from '../../shared/schemas/console.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const consoleBuildScript = path.join(repoRoot, 'console', 'build.ts');

/**
 * The web console as a product serves it: a private S3 bucket read only by CloudFront (origin access
 * control), HTTPS only, security headers with a strict CSP on every answer, and every unknown path
 * answered with index.html (the single-page app's routes). `deploy` uploads the build with the
 * deployment's `config.json`, once the API it names exists.
 */
export class ConsoleHosting extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly distribution: cloudfront.Distribution;
  /** https://<distribution domain>, the console's origin: the API's CORS allows it */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: { connectTo: string[] }) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Files', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
    });
    const headers = new cloudfront.ResponseHeadersPolicy(this, 'SecurityHeaders', {
      comment: 'Execution runs console: security headers and a strict CSP',
      securityHeadersBehavior: {
        contentSecurityPolicy: {
          contentSecurityPolicy: contentSecurityPolicy(props.connectTo),
          override: true,
        },
        strictTransportSecurity: {
          accessControlMaxAge: Duration.days(730),
          includeSubdomains: true,
          override: true,
        },
        contentTypeOptions: { override: true },
        frameOptions: { frameOption: cloudfront.HeadersFrameOption.DENY, override: true },
        referrerPolicy: {
          referrerPolicy: cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN,
          override: true,
        },
      },
    });
    // the SPA's routes are not files: S3 answers 403 for a key it does not have (no ListBucket)
    const spaFallback = [403, 404].map((httpStatus) => ({
      httpStatus,
      responseHttpStatus: 200,
      responsePagePath: '/index.html',
      ttl: Duration.seconds(0),
    }));
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'Execution runs console',
      defaultRootObject: 'index.html',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(this.bucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
        responseHeadersPolicy: headers,
        compress: true,
      },
      errorResponses: spaFallback,
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
    });
    this.url = `https://${this.distribution.distributionDomainName}`;

    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'The bucket holds the console build only, which CloudFront alone reads; every request reaches it through the distribution.',
    });
    Validations.of(this.distribution).acknowledge(
      {
        id: 'AwsSolutions-CFR1',
        reason:
          'The console is for the deployment’s users wherever they are; the API behind it checks every request.',
      },
      {
        id: 'AwsSolutions-CFR2',
        reason:
          'The distribution serves static files only; what could be abused (the API) is throttled and authorized on its own.',
      },
      {
        id: 'AwsSolutions-CFR3',
        reason:
          'Static files of a public build: their access logs would record nothing the API’s access logs do not.',
      },
      {
        id: 'AwsSolutions-CFR4',
        reason:
          'The console is served on the default cloudfront.net certificate, whose security policy CloudFront fixes; a custom domain with its own certificate would set TLSv1.2_2021.',
      },
    );
  }

  /** Uploads the console's build and its runtime config. */
  deploy(config: ConsoleConfig): s3deploy.BucketDeployment {
    const deployment = new s3deploy.BucketDeployment(this, 'Deployment', {
      destinationBucket: this.bucket,
      sources: [
        s3deploy.Source.asset(path.join(repoRoot, 'console'), {
          // the build's own hash: a change to the shared code the console imports deploys too
          assetHashType: AssetHashType.OUTPUT,
          // built on the deploying machine, which has Node and the repository's packages (as for the
          // Lambda bundles); CDK requires an image, which a local build never uses
          bundling: {
            image: DockerImage.fromRegistry('node:22-slim'),
            local: {
              tryBundle: (outputDir) => {
                execFileSync(process.execPath, ['--import', 'tsx', consoleBuildScript, outputDir], {
                  cwd: repoRoot,
                  stdio: 'inherit',
                });
                return true;
              },
            },
          },
        }),
        s3deploy.Source.jsonData('config.json', config),
      ],
      // index.html and config.json must be read afresh after a deploy; with no-cache CloudFront keeps
      // them only for its minimum TTL, so no invalidation (and no grant on every distribution) is needed
      cacheControl: [s3deploy.CacheControl.noCache()],
      memoryLimit: 512,
    });
    // CDK's own function behind every BucketDeployment of the stack, which runs only while deploying
    const copier = Stack.of(this).node.children.find((child) =>
      child.node.id.startsWith('Custom::CDKBucketDeployment'),
    );
    if (copier) {
      const stack = Stack.of(this);
      const qualifier = stack.synthesizer.bootstrapQualifier ?? DefaultStackSynthesizer.DEFAULT_QUALIFIER;
      const bucketId = stack.resolve(stack.getLogicalId(this.bucket.node.defaultChild as s3.CfnBucket));
      const wildcards = {
        'Action::s3:GetObject*': 'reads the build from the asset',
        'Action::s3:GetBucket*': 'reads the buckets it copies between',
        'Action::s3:List*': 'lists the files it replaces',
        'Action::s3:DeleteObject*': 'removes the files of an earlier build',
        'Action::s3:Abort*': 'abandons an upload that failed',
        [`Resource::arn:<AWS::Partition>:s3:::cdk-${qualifier}-assets-<AWS::AccountId>-<AWS::Region>/*`]:
          'reads the console build among the deployment assets',
        [`Resource::<${bucketId}.Arn>/*`]: 'writes the console bucket by object key',
      };
      Validations.of(copier).acknowledge(
        {
          id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
          reason:
            'CDK’s BucketDeployment function logs through AWSLambdaBasicExecutionRole; it runs only while deploying.',
        },
        {
          id: 'AwsSolutions-L1',
          reason:
            'The runtime of CDK’s BucketDeployment function is CDK’s to choose; it runs only while deploying.',
        },
        ...Object.entries(wildcards).map(([finding, what]) => ({
          id: `AwsSolutions-IAM5[${finding}]`,
          reason: `CDK’s BucketDeployment function ${what}; it runs only while deploying, and its grants are CDK’s.`,
        })),
      );
    }
    return deployment;
  }
}
