/**
 * AWS list prices (us-east-1, on-demand, first tier, free tiers ignored) that the benchmark prices a
 * run's control plane with. Fargate and model tokens are left out: they are the run's work, not
 * the cost of carrying it.
 */
export const PRICES = {
  /** Step Functions Standard, per state transition ($0.025 per 1,000) */
  stateTransition: 0.025 / 1_000,
  /** Lambda, per request ($0.20 per million) */
  lambdaRequest: 0.2 / 1_000_000,
  /** Lambda on arm64, per GB-second of duration */
  lambdaGbSecond: 0.0000133334,
  /** DynamoDB on-demand, per write request unit ($0.625 per million) */
  writeUnit: 0.625 / 1_000_000,
  /** DynamoDB on-demand, per read request unit ($0.125 per million) */
  readUnit: 0.125 / 1_000_000,
  /** SQS standard queue, per request ($0.40 per million) */
  sqsRequest: 0.4 / 1_000_000,
  /** API Gateway HTTP API, per request ($1.00 per million) */
  httpApiRequest: 1 / 1_000_000,
  /** API Gateway WebSocket API, per message either way, in 32 KB increments ($1.00 per million) */
  webSocketMessage: 1 / 1_000_000,
  /** API Gateway WebSocket API, per connection-minute ($0.25 per million) */
  connectionMinute: 0.25 / 1_000_000,
  /** SES, per message ($0.10 per 1,000) */
  email: 0.1 / 1_000,
  /** CloudWatch Logs, per byte ingested ($0.50 per GB) */
  logByte: 0.5 / 1024 ** 3,
} as const;

/** How the prices read in the table. */
export const PRICE_NOTES = [
  'Step Functions Standard $0.025 per 1,000 state transitions',
  'Lambda $0.20 per million requests plus $0.0000133334 per GB-second (arm64)',
  'DynamoDB on-demand $0.625 per million write units, $0.125 per million read units',
  'SQS $0.40 per million requests',
  'API Gateway HTTP API $1.00 per million requests',
  'API Gateway WebSocket API $1.00 per million messages (in 32 KB increments) plus $0.25 per million connection-minutes',
  'SES $0.10 per 1,000 messages',
  'CloudWatch Logs $0.50 per GB ingested',
  'EventBridge: events from AWS services on the default bus are free',
];

export interface ControlPlaneUsage {
  transitions: number;
  lambdaRequests: number;
  lambdaGbSeconds: number;
  readUnits: number;
  writeUnits: number;
  sqsRequests: number;
  apiRequests: number;
  emails: number;
  logBytes: number;
  /** WebSocket messages, each counted in 32 KB increments (webSocketMessageUnits) */
  webSocketMessages?: number;
  connectionMinutes?: number;
}

/** A WebSocket message is billed per 32 KB of it. */
export const webSocketMessageUnits = (bytes: number) => Math.max(1, Math.ceil(bytes / (32 * 1024)));

export interface ControlPlaneCost {
  stepFunctions: number;
  lambda: number;
  dynamodb: number;
  sqs: number;
  apiGateway: number;
  ses: number;
  logs: number;
  total: number;
}

export const priceOf = (u: ControlPlaneUsage): ControlPlaneCost => {
  const cost = {
    stepFunctions: u.transitions * PRICES.stateTransition,
    lambda: u.lambdaRequests * PRICES.lambdaRequest + u.lambdaGbSeconds * PRICES.lambdaGbSecond,
    dynamodb: u.readUnits * PRICES.readUnit + u.writeUnits * PRICES.writeUnit,
    sqs: u.sqsRequests * PRICES.sqsRequest,
    apiGateway:
      u.apiRequests * PRICES.httpApiRequest +
      (u.webSocketMessages ?? 0) * PRICES.webSocketMessage +
      (u.connectionMinutes ?? 0) * PRICES.connectionMinute,
    ses: u.emails * PRICES.email,
    logs: u.logBytes * PRICES.logByte,
  };
  const total = Object.values(cost).reduce((a, b) => a + b, 0);
  return { ...cost, total };
};
