import type { APIGatewayProxyEventV2WithJWTAuthorizer } from 'aws-lambda';
import { readEnv } from '../shared/config.js';
import { admitAccount, callerFromEvent } from '../shared/http/auth.js';
import { parseJsonBody, pathParam } from '../shared/http/request.js';
import { json, noContent } from '../shared/http/responses.js';
import { routeHandler } from '../shared/http/router.js';
import { systemClock } from '../shared/ports.js';
import { scheduleRequestSchema } from '../shared/schemas/schedules.js';
import {
  deleteSchedule,
  getSchedule,
  listSchedules,
  putSchedule,
  type ScheduleDeps,
} from '../shared/usecases/schedules.js';
import { type AccountThrottleDeps, accountThrottle } from '../shared/usecases/throttle.js';
import { directoryRepository, requestCounter, scheduler, scheduleStore } from '../shared/wiring.js';

/** HTTP API v1: a project's schedules, each a record and its copy on EventBridge Scheduler. */
export const makeHandler = (
  deps: ScheduleDeps & AccountThrottleDeps,
  claims: { tenant: string; accountRole: string },
) => {
  type Event = APIGatewayProxyEventV2WithJWTAuthorizer;
  const caller = (event: Event) => callerFromEvent(event, claims);
  const projectId = (event: Event) => pathParam(event, 'projectId');
  const scheduleId = (event: Event) => pathParam(event, 'scheduleId');

  return routeHandler(
    {
      'GET /v1/projects/{projectId}/schedules': async (event) =>
        json(200, { items: await listSchedules(deps, caller(event), projectId(event)) }),
      'GET /v1/projects/{projectId}/schedules/{scheduleId}': async (event) =>
        json(200, await getSchedule(deps, caller(event), projectId(event), scheduleId(event))),
      'PUT /v1/projects/{projectId}/schedules/{scheduleId}': async (event) =>
        json(
          200,
          await putSchedule(
            deps,
            caller(event),
            projectId(event),
            scheduleId(event),
            parseJsonBody(event, scheduleRequestSchema),
          ),
        ),
      'DELETE /v1/projects/{projectId}/schedules/{scheduleId}': async (event) => {
        await deleteSchedule(deps, caller(event), projectId(event), scheduleId(event));
        return noContent();
      },
    },
    { admit: admitAccount(accountThrottle(deps), claims) },
  );
};

const env = readEnv(
  'TABLE_NAME',
  'TENANT_CLAIM',
  'ACCOUNT_ROLE_CLAIM',
  'SCHEDULE_GROUP_NAME',
  'SCHEDULE_TARGET_ARN',
  'SCHEDULER_ROLE_ARN',
  'SCHEDULE_DEAD_LETTER_QUEUE_ARN',
);
export const handler = makeHandler(
  {
    schedules: scheduleStore(env.TABLE_NAME),
    scheduler: scheduler({
      groupName: env.SCHEDULE_GROUP_NAME,
      targetArn: env.SCHEDULE_TARGET_ARN,
      roleArn: env.SCHEDULER_ROLE_ARN,
      deadLetterQueueArn: env.SCHEDULE_DEAD_LETTER_QUEUE_ARN,
    }),
    directory: directoryRepository(env.TABLE_NAME),
    requests: requestCounter(env.TABLE_NAME),
    clock: systemClock,
  },
  { tenant: env.TENANT_CLAIM, accountRole: env.ACCOUNT_ROLE_CLAIM },
);
