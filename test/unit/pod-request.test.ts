import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { podRequestSchema } from '../../shared/schemas/api.js';

/** AWS's table of the task sizes Fargate runs (Linux), CPU units → memory MiB. */
const range = (from: number, to: number) =>
  Array.from({ length: (to - from) / 1024 + 1 }, (_, i) => from + i * 1024);
const FARGATE: Record<number, number[]> = {
  256: [512, 1024, 2048],
  512: range(1024, 4096),
  1024: range(2048, 8192),
  2048: range(4096, 16_384),
  4096: range(8192, 30_720),
};

const pod = (cpu: number, memoryMiB: number) => ({ name: 'P', cpu, memoryMiB, agent: { kind: 'demo' } });

describe('PUT /v1/pods/{podId} body', () => {
  it('takes every CPU and memory pair Fargate runs', () => {
    for (const [cpu, memories] of Object.entries(FARGATE)) {
      for (const memoryMiB of memories)
        expect(podRequestSchema.safeParse(pod(Number(cpu), memoryMiB)).success).toBe(true);
    }
  });

  it('refuses every other pair', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(256, 512, 1024, 2048, 4096),
        fc.integer({ min: 0, max: 40_000 }),
        (cpu, memoryMiB) => {
          const accepted = podRequestSchema.safeParse(pod(cpu, memoryMiB)).success;
          expect(accepted).toBe(FARGATE[cpu]?.includes(memoryMiB));
        },
      ),
    );
  });

  it.each([
    [256, 4096, /cpu 256 runs with 512, 1024 or 2048 MiB/],
    [512, 512, /cpu 512 runs with 1024 to 4096 MiB in steps of 1024/],
    [1024, 2500, /cpu 1024 runs with 2048 to 8192 MiB in steps of 1024/],
    [4096, 4096, /cpu 4096 runs with 8192 to 30720 MiB in steps of 1024/],
  ])('says which memory values cpu %i allows when given %i', (cpu, memoryMiB, message) => {
    const parsed = podRequestSchema.safeParse(pod(cpu, memoryMiB));
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues).toEqual([
      expect.objectContaining({ path: ['memoryMiB'], message: expect.stringMatching(message) }),
    ]);
  });

  it('refuses a CPU Fargate does not offer', () => {
    expect(podRequestSchema.safeParse(pod(768, 2048)).error?.issues).toEqual([
      expect.objectContaining({
        path: ['cpu'],
        message: expect.stringMatching(/^256, 512, 1024, 2048 or 4096/),
      }),
    ]);
  });

  const withAgent = (over: Record<string, unknown>) => ({ ...pod(1024, 2048), ...over });
  const issuesOf = (body: unknown) => podRequestSchema.safeParse(body).error?.issues ?? [];

  it('takes each agent kind, and gives a pod both checkpoints, no hooks and no variables by default', () => {
    const claude = podRequestSchema.parse(
      withAgent({
        agent: { kind: 'claude-code', model: 'claude-sonnet-4-5', maxTurns: 30, allowedTools: ['Bash'] },
      }),
    );
    expect(claude).toMatchObject({ hooks: {}, checkpoints: ['plan', 'commit'], env: {}, secrets: {} });
    expect(claude.image).toBeUndefined();
    const command = podRequestSchema.parse(
      withAgent({ agent: { kind: 'command', command: ['my-agent', '--json'] } }),
    );
    expect(command.agent).toEqual({ kind: 'command', command: ['my-agent', '--json'] });
  });

  it.each([
    ['no agent', { agent: undefined }, ['agent']],
    ['an unknown agent kind', { agent: { kind: 'gpt' } }, ['agent', 'kind']],
    ['a claude-code agent without its model', { agent: { kind: 'claude-code' } }, ['agent', 'model']],
    ['an empty command', { agent: { kind: 'command', command: [] } }, ['agent', 'command']],
    ['the old top-level model', { model: 'm' }, []],
    [
      'a hook without a command',
      { hooks: { postClone: { timeoutSeconds: 5 } } },
      ['hooks', 'postClone', 'command'],
    ],
    [
      'a hook that may run for days',
      { hooks: { postStart: { command: 'x', timeoutSeconds: 86_400 } } },
      ['hooks', 'postStart', 'timeoutSeconds'],
    ],
    ['an unknown hook', { hooks: { preCommit: { command: 'x' } } }, ['hooks']],
    ['an unknown checkpoint', { checkpoints: ['push'] }, ['checkpoints', 0]],
    ['a checkpoint twice', { checkpoints: ['plan', 'plan'] }, ['checkpoints']],
    ['a variable the runtime sets', { env: { AGENT_API_URL: 'x' } }, ['env', 'AGENT_API_URL']],
    ['an AWS variable', { env: { AWS_REGION: 'x' } }, ['env', 'AWS_REGION']],
    ['a variable name with a dash', { env: { 'MY-VAR': 'x' } }, ['env', 'MY-VAR']],
    ['a secret outside the pods prefix', { secrets: { TOKEN: 'prod/db-password' } }, ['secrets', 'TOKEN']],
    [
      'a variable both plain and secret',
      { env: { TOKEN: 'a' }, secrets: { TOKEN: 'execution-runs/pods/t' } },
      ['secrets', 'TOKEN'],
    ],
    ['an image with a space', { image: 'my image' }, ['image']],
    [
      'an image reference longer than ECS takes',
      { image: `registry.example/${'a'.repeat(240)}:1` },
      ['image'],
    ],
    ['an image with a character ECS refuses', { image: 'registry.example/pod:1!' }, ['image']],
  ])('refuses %s, naming the field', (_, over, path) => {
    const issues = issuesOf(withAgent(over));
    expect(issues.length).toBeGreaterThan(0);
    expect(issues.map((i) => i.path)).toContainEqual(path);
  });

  it('takes a secret under the pods prefix and an image reference', () => {
    const parsed = podRequestSchema.parse(
      withAgent({
        image: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/agents@sha256:0123abcd',
        secrets: { ANTHROPIC_API_KEY: 'execution-runs/pods/anthropic' },
      }),
    );
    expect(parsed.secrets).toEqual({ ANTHROPIC_API_KEY: 'execution-runs/pods/anthropic' });
  });
});
