import { readFileSync } from 'node:fs';
import { CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.js';

// The run history reads the pods' log group and keeps oversized steps in a log group of its own.
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const { stateful, stateless } = buildApp({ ...cdkJson.context, 'aws:cdk:bundling-stacks': [] });
const statefulTemplate = Template.fromStack(stateful);
const statelessTemplate = Template.fromStack(stateless);

const logicalId = (construct: IConstruct): string => {
  const cfn = CfnResource.isCfnResource(construct) ? construct : construct.node.defaultChild;
  if (!cfn || !CfnResource.isCfnResource(cfn)) throw new Error(`${construct.node.path} has no resource`);
  return Stack.of(construct).getLogicalId(cfn);
};

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

/** Each log action granted to a function in the stateless stack, with its resources. */
const logGrants = () => {
  const roleNames = new Map(
    Object.entries(stateless.functions).map(([name, fn]) => [logicalId(fn.role), name] as const),
  );
  const grants: { action: string; fn: string; resource: string }[] = [];
  for (const policy of Object.values(statelessTemplate.findResources('AWS::IAM::Policy'))) {
    // function roles only: the pods' execution role ships their output through the awslogs driver
    const roles = (policy.Properties.Roles as { Ref: string }[]).flatMap((r) => roleNames.get(r.Ref) ?? []);
    for (const statement of policy.Properties.PolicyDocument.Statement as Statement[]) {
      const actions = [statement.Action]
        .flat()
        .filter((a) => a.startsWith('logs:') && a !== 'logs:CreateLogDelivery');
      for (const action of actions) {
        for (const fn of roles) grants.push({ action, fn, resource: JSON.stringify(statement.Resource) });
      }
    }
  }
  return grants;
};

describe('the run history in the stacks', () => {
  it('keeps oversized steps in a retained log group of their own, a year', () => {
    statefulTemplate.hasResource('AWS::Logs::LogGroup', {
      DeletionPolicy: 'Retain',
      Properties: { RetentionInDays: 365 },
    });
    expect(logicalId(stateful.stepContentLogGroup)).not.toBe(logicalId(stateful.podLogGroup));
  });

  it('tells the API both log groups, and the Agent API where step text goes', () => {
    const functions = statelessTemplate.findResources('AWS::Lambda::Function');
    const variables = (fn: (typeof stateless.functions)['api']) =>
      functions[logicalId(fn.function)]?.Properties.Environment.Variables;
    const stepGroup = { 'Fn::ImportValue': expect.stringContaining(logicalId(stateful.stepContentLogGroup)) };
    expect(variables(stateless.functions.api)).toEqual(
      expect.objectContaining({
        LOG_GROUP_NAME: { 'Fn::ImportValue': expect.stringContaining(logicalId(stateful.podLogGroup)) },
        STEP_LOG_GROUP_NAME: stepGroup,
      }),
    );
    expect(variables(stateless.functions.agentApi)).toEqual(
      expect.objectContaining({ STEP_LOG_GROUP_NAME: stepGroup }),
    );
    expect(variables(stateless.functions.agentApi)).not.toHaveProperty('LOG_GROUP_NAME');
  });

  it('lets only the Agent API write step text, only the API read it, and the API and the log followers read pod logs', () => {
    const grants = logGrants();
    const podGroup = logicalId(stateful.podLogGroup);
    const stepGroup = logicalId(stateful.stepContentLogGroup);
    const on = (action: string) => grants.filter((g) => g.action === action);
    for (const action of ['logs:CreateLogStream', 'logs:PutLogEvents']) {
      const writers = on(action).filter((g) => g.resource.includes(stepGroup));
      expect(writers.map((g) => g.fn)).toEqual(['agentApi']);
      expect(on(action).filter((g) => g.resource.includes(podGroup))).toEqual([]);
    }
    const readers = on('logs:GetLogEvents');
    expect(readers.filter((g) => g.resource.includes(stepGroup)).map((g) => g.fn)).toEqual(['api']);
    expect(
      readers
        .filter((g) => g.resource.includes(podGroup))
        .map((g) => g.fn)
        .sort(),
    ).toEqual(['api', 'runLogs', 'stream']);
  });
});
