import {
  ClientException,
  DescribeTaskDefinitionCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { EcsPodTaskDefinitions, podTaskFamily } from '../../shared/adapters/ecs-task-definitions.js';
import { podFactory } from '../support/factories.js';

const BASE_ARN = 'arn:aws:ecs:eu-west-1:123456789012:task-definition/StackPodTask:7';
const PREFIX = 'StackPodTask-pod-';
const meta = { $metadata: {} };

/** The stack's task definition as DescribeTaskDefinition answers it. */
const BASE: TaskDefinition = {
  taskDefinitionArn: BASE_ARN,
  family: 'StackPodTask',
  revision: 7,
  taskRoleArn: 'arn:aws:iam::123456789012:role/PodTaskRole',
  executionRoleArn: 'arn:aws:iam::123456789012:role/PodExecutionRole',
  networkMode: 'awsvpc',
  requiresCompatibilities: ['FARGATE'],
  compatibilities: ['EC2', 'FARGATE'],
  cpu: '1024',
  memory: '2048',
  runtimePlatform: { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
  status: 'ACTIVE',
  registeredAt: new Date('2026-01-01T00:00:00Z'),
  containerDefinitions: [
    {
      name: 'pod',
      image: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/cdk-assets:abc123',
      essential: true,
      logConfiguration: {
        logDriver: 'awslogs',
        options: { 'awslogs-group': '/pods', 'awslogs-stream-prefix': 'pod', 'awslogs-region': 'eu-west-1' },
      },
      portMappings: [],
      environment: [],
      mountPoints: [],
      volumesFrom: [],
    },
  ],
};

describe('EcsPodTaskDefinitions', () => {
  const ecs = mockClient(ECSClient);
  const adapter = () =>
    new EcsPodTaskDefinitions(new ECSClient({}), { baseTaskDefinitionArn: BASE_ARN, familyPrefix: PREFIX });
  const registeredArn = (revision: number) =>
    `arn:aws:ecs:eu-west-1:123456789012:task-definition/${podTaskFamily(PREFIX, 'acct-1', 'pod-1')}:${revision}`;

  beforeEach(() => {
    ecs.reset();
    ecs.on(DescribeTaskDefinitionCommand).resolves({ taskDefinition: BASE });
    ecs
      .on(RegisterTaskDefinitionCommand)
      .resolves({ taskDefinition: { taskDefinitionArn: registeredArn(1) } });
  });

  it('registers nothing for a pod the stack’s task definition serves', async () => {
    expect(await adapter().register(podFactory())).toBeUndefined();
    expect(ecs.calls()).toHaveLength(0);
  });

  it('copies the stack’s task definition with the pod’s image and its secrets as partial ARNs', async () => {
    const pod = podFactory({
      image: 'ghcr.io/acme/pod-with-tools:2',
      secrets: {
        NPM_TOKEN: 'execution-runs/pods/acct-1/npm',
        GITHUB_TOKEN: 'execution-runs/pods/acct-1/github',
      },
    });

    const arn = await adapter().register(pod);

    expect(arn).toBe(registeredArn(1));
    expect(ecs).toHaveReceivedCommandWith(DescribeTaskDefinitionCommand, { taskDefinition: BASE_ARN });
    const [register] = ecs.commandCalls(RegisterTaskDefinitionCommand);
    expect(register?.args[0].input).toEqual({
      family: podTaskFamily(PREFIX, 'acct-1', 'pod-1'),
      taskRoleArn: BASE.taskRoleArn,
      executionRoleArn: BASE.executionRoleArn,
      networkMode: 'awsvpc',
      requiresCompatibilities: ['FARGATE'],
      cpu: '1024',
      memory: '2048',
      runtimePlatform: { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
      ephemeralStorage: undefined,
      containerDefinitions: [
        {
          ...BASE.containerDefinitions?.[0],
          image: 'ghcr.io/acme/pod-with-tools:2',
          secrets: [
            {
              name: 'GITHUB_TOKEN',
              valueFrom:
                'arn:aws:secretsmanager:eu-west-1:123456789012:secret:execution-runs/pods/acct-1/github',
            },
            {
              name: 'NPM_TOKEN',
              valueFrom:
                'arn:aws:secretsmanager:eu-west-1:123456789012:secret:execution-runs/pods/acct-1/npm',
            },
          ],
        },
      ],
    });
  });

  it('keeps the stack’s image for a pod that only names secrets, and adds none for one that only has an image', async () => {
    const withSecret = podFactory({ secrets: { TOKEN: 'execution-runs/pods/acct-1/t' } });
    const withImage = podFactory({ image: 'registry.example/pod:1' });

    await adapter().register(withSecret);
    await adapter().register(withImage);

    const [first, second] = ecs.commandCalls(RegisterTaskDefinitionCommand).map((call) => call.args[0].input);
    expect(first?.containerDefinitions?.[0]).toMatchObject({
      image: BASE.containerDefinitions?.[0]?.image,
      secrets: [{ name: 'TOKEN' }],
    });
    expect(second?.containerDefinitions?.[0]).toMatchObject({ image: 'registry.example/pod:1', secrets: [] });
  });

  it('reads the stack’s task definition once, and again after a failed read', async () => {
    const pods = adapter();
    const pod = podFactory({ image: 'registry.example/pod:1' });
    ecs
      .on(DescribeTaskDefinitionCommand)
      .rejectsOnce(new ClientException({ message: 'Rate exceeded', ...meta }))
      .resolves({ taskDefinition: BASE });

    await expect(pods.register(pod)).rejects.toThrow('Rate exceeded');
    await pods.register(pod);
    await pods.register(pod);

    expect(ecs.commandCalls(DescribeTaskDefinitionCommand)).toHaveLength(2);
    expect(ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(2);
  });

  it('lets a refused registration through to its caller', async () => {
    ecs.on(RegisterTaskDefinitionCommand).rejects(new ClientException({ message: 'Too many', ...meta }));
    await expect(adapter().register(podFactory({ image: 'registry.example/pod:1' }))).rejects.toThrow(
      'Too many',
    );
  });

  it('refuses a stack task definition without the pod container', async () => {
    ecs.on(DescribeTaskDefinitionCommand).resolves({
      taskDefinition: { ...BASE, containerDefinitions: [{ name: 'sidecar', image: 'x' }] },
    });
    await expect(adapter().register(podFactory({ image: 'registry.example/pod:1' }))).rejects.toThrow(
      'has no pod container',
    );
    expect(ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(0);
  });

  it.each([
    ['an empty prefix', { baseTaskDefinitionArn: BASE_ARN, familyPrefix: '' }],
    ['a prefix ECS refuses', { baseTaskDefinitionArn: BASE_ARN, familyPrefix: 'pods/' }],
    ['a base that is no task definition ARN', { baseTaskDefinitionArn: 'pod:1', familyPrefix: PREFIX }],
  ])('refuses %s at construction', (_, settings) => {
    expect(() => new EcsPodTaskDefinitions(new ECSClient({}), settings)).toThrow();
  });
});

describe('podTaskFamily', () => {
  it('is the same for the same pod, under the prefix, in the characters ECS takes', () => {
    const family = podTaskFamily(PREFIX, 'acct.1', 'pod.one');
    expect(family).toBe(podTaskFamily(PREFIX, 'acct.1', 'pod.one'));
    expect(family).toMatch(/^StackPodTask-pod-acct_1-pod_one-[0-9a-f]{16}$/);
  });

  it('keeps pods apart whose ids read alike once cut or replaced', () => {
    const families = [
      podTaskFamily(PREFIX, 'a.b', 'c'),
      podTaskFamily(PREFIX, 'a_b', 'c'),
      podTaskFamily(PREFIX, 'a-b', 'c'),
      podTaskFamily(PREFIX, 'a', 'b-c'),
      podTaskFamily(PREFIX, 'acct-1', 'pod-1'),
      podTaskFamily(PREFIX, 'acct-2', 'pod-1'),
    ];
    expect(new Set(families).size).toBe(families.length);
  });

  it('stays within 255 characters for the longest ids', () => {
    const long = podTaskFamily('p'.repeat(128), 'a'.repeat(128), 'b'.repeat(128));
    expect(long).toHaveLength(255);
    expect(long).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(long).not.toBe(podTaskFamily('p'.repeat(128), 'a'.repeat(128), `${'b'.repeat(127)}c`));
  });
});
