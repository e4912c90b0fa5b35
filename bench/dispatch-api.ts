import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { PurgeQueueCommand, SetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { BenchCloud } from './support/cloud.js';
import { processCpuMs } from './support/process-cpu.js';

/**
 * (4) The dispatch route under a fixed 200 requests per second, from autocannon in its own process.
 * Every request is a real dispatch (the run and its snapshot in one DynamoDB transaction, the message
 * on SQS). The queue's consumer is held off meanwhile (the queue delays new messages): in AWS it runs
 * on its own compute, while here it would share the two cores with the route being measured. The runs
 * dispatched here stay QUEUED; this is the benchmark's last step.
 */

export const RATE = 200;
const SECONDS = 15;
const WARM_UP_SECONDS = 3;
const CONNECTIONS = 20;
const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js');
const run = promisify(execFile);

export interface DispatchApiResult {
  targetRate: number;
  seconds: number;
  /** 2xx answers per second */
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  /**
   * CPU time of this process (the local cloud: API gateway, Lambda runtime, SQS, ...) per request;
   * times the rate, it says how much of a core the route needs here
   */
  cpuMsPerRequest: number;
  /** CPU time of DynamoDB Local (its own JVM) per request; absent where it cannot be read */
  dynamoDbCpuMsPerRequest?: number;
}

interface AutocannonResult {
  latency: { p50: number; p99: number };
  requests: { total: number };
  duration: number;
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

const fire = async (bench: BenchCloud, seconds: number): Promise<AutocannonResult> => {
  const { apiUrl, projectId, scriptedPodId: podId, token } = bench.cloud.endpoints;
  const body = JSON.stringify({
    itemId: 'BENCH-API',
    podId,
    mode: 'autopilot',
    prompt: 'Add a health check endpoint',
    config: { demo: { steps: 0, stepDelayMs: 0, edit: false } },
  });
  const { stdout } = await run(
    process.execPath,
    [
      AUTOCANNON,
      ...['--connections', String(CONNECTIONS), '--duration', String(seconds), '--overallRate', String(RATE)],
      ...[
        '--method',
        'POST',
        '--headers',
        `authorization=Bearer ${token}`,
        '--headers',
        'content-type=application/json',
      ],
      ...['--body', body, '--json'],
      `${apiUrl}/v1/projects/${projectId}/runs`,
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(stdout) as AutocannonResult;
};

export const measureDispatchApi = async (bench: BenchCloud): Promise<DispatchApiResult> => {
  const { endpoints } = bench.cloud;
  const sqs = new SQSClient({
    region: endpoints.region,
    endpoint: endpoints.services.sqs,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  try {
    await sqs.send(
      new SetQueueAttributesCommand({ QueueUrl: endpoints.queueUrl, Attributes: { DelaySeconds: '900' } }),
    );
    await fire(bench, WARM_UP_SECONDS);
    const cpu = process.cpuUsage();
    const dynamoDbBefore = await processCpuMs(bench.cloud.dynamoDbPid);
    const result = await fire(bench, SECONDS);
    const { user, system } = process.cpuUsage(cpu);
    const dynamoDbAfter = await processCpuMs(bench.cloud.dynamoDbPid);
    // requests autocannon gave up waiting for are still being answered
    await bench.settle();
    return {
      targetRate: RATE,
      seconds: result.duration,
      throughput: result['2xx'] / result.duration,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      requests: result.requests.total,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      cpuMsPerRequest: (user + system) / 1000 / result.requests.total,
      ...(dynamoDbBefore !== undefined &&
        dynamoDbAfter !== undefined && {
          dynamoDbCpuMsPerRequest: (dynamoDbAfter - dynamoDbBefore) / result.requests.total,
        }),
    };
  } finally {
    await sqs.send(new PurgeQueueCommand({ QueueUrl: endpoints.queueUrl }));
    sqs.destroy();
  }
};
