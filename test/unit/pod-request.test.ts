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

const pod = (cpu: number, memoryMiB: number) => ({ name: 'P', cpu, memoryMiB, model: 'm' });

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
});
