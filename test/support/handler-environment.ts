/**
 * What the handlers' composition roots read from the environment at import, for the unit tests that
 * import handler modules. Imported from `vi.hoisted`, so it is set before those modules load:
 *
 *   await vi.hoisted(() => import('../support/handler-environment.js'));
 */
export const HANDLER_ENVIRONMENT = {
  AWS_REGION: 'us-east-1',
  TABLE_NAME: 't',
  QUEUE_URL: 'https://q',
  STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:1:stateMachine:s',
  CLUSTER_ARN: 'arn:aws:ecs:us-east-1:1:cluster/c',
  LOG_GROUP_NAME: '/pods',
  STEP_LOG_GROUP_NAME: '/steps',
  POD_TASK_DEFINITION_ARN: 'arn:aws:ecs:us-east-1:1:task-definition/pod:1',
  POD_TASK_FAMILY_PREFIX: 'pod-',
  PUBLIC_API_URL: 'https://api.example.com',
  WEBSOCKET_URL: 'wss://ws.example.com/live',
  WEBSOCKET_CALLBACK_URL: 'https://ws.example.com/live',
  CURSOR_SIGNING_SECRET: 'c'.repeat(32),
  APPROVAL_SENDER: 'approvals@example.com',
  APPROVAL_SIGNING_SECRET: 'a'.repeat(32),
  GITHUB_APP_SECRET: JSON.stringify({ privateKey: 'unused', webhookSecret: 'unused-webhook-secret' }),
  SCHEDULE_GROUP_NAME: 'schedules',
  SCHEDULE_TARGET_ARN: 'arn:aws:lambda:us-east-1:1:function:scheduled-dispatch',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::1:role/scheduler',
  SCHEDULE_DEAD_LETTER_QUEUE_ARN: 'arn:aws:sqs:us-east-1:1:schedules-dlq',
  LAUNCH_BACKOFF_SECONDS: '5,20',
  SWEEPER_STALE_AFTER_SECONDS: '120',
};

Object.assign(process.env, HANDLER_ENVIRONMENT);
