import middy from '@middy/core';
import type { APIGatewayProxyEventV2WithJWTAuthorizer, Context } from 'aws-lambda';
import { DomainError } from '../domain/errors.js';
import { logger, observed } from '../observability.js';
import * as z from '../zod.js';
import { errorBody, errorToResponse, type HttpResult, json } from './responses.js';

export type RouteHandler = (event: APIGatewayProxyEventV2WithJWTAuthorizer) => Promise<HttpResult>;

export interface RouteOptions {
  /** Runs before every route, its refusal answered as the route's errors are (a request limit, say). */
  admit?: (event: APIGatewayProxyEventV2WithJWTAuthorizer) => Promise<void>;
}

/**
 * One Lambda serves a family of routes; API Gateway has already matched the route, so dispatch is a
 * lookup on its routeKey. Errors become answers in one place.
 */
export const routeHandler = (routes: Record<string, RouteHandler>, options: RouteOptions = {}) =>
  middy<APIGatewayProxyEventV2WithJWTAuthorizer, HttpResult, Error, Context>()
    .use(observed())
    .handler(async (event) => {
      const route = routes[event.routeKey];
      if (!route) return json(404, errorBody('NotFound', `no route ${event.routeKey}`));
      try {
        await options.admit?.(event);
        return await route(event);
      } catch (err) {
        // Client errors are answers, not incidents; only the unexpected is logged as an error.
        if (!(err instanceof DomainError || err instanceof z.ZodError)) {
          logger.error('request failed', { routeKey: event.routeKey, error: err as Error });
        }
        return errorToResponse(err);
      }
    });
