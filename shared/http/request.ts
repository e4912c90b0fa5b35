import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { DomainError, ValidationError } from '../domain/errors.js';
import { PATH_PARAMETERS, type PathParameter } from '../schemas/ids.js';
import type * as z from '../zod.js';

/** Largest request body a route accepts. */
export const MAX_BODY_BYTES = 256 * 1024;

export class PayloadTooLargeError extends DomainError {
  constructor(limit: number) {
    super('PayloadTooLarge', `the request body is larger than ${limit} bytes`);
  }
}

/** The body as sent: a signature is over these bytes, not over a parse of them. */
export const rawBody = (event: APIGatewayProxyEventV2): string => {
  if (!event.body) return '';
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
};

/** Parse and validate a JSON body at the edge. */
export const parseJsonBody = <T>(
  event: APIGatewayProxyEventV2,
  schema: z.ZodMiniType<T>,
  limit = MAX_BODY_BYTES,
): T => {
  const text = rawBody(event);
  if (Buffer.byteLength(text, 'utf8') > limit) throw new PayloadTooLargeError(limit);
  if (text.trim() === '') throw new ValidationError('a JSON body is required');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ValidationError('the body is not valid JSON');
  }
  return schema.parse(value);
};

/** A path parameter, checked against what it must look like (shared/schemas/ids.ts). */
export const pathParam = <N extends PathParameter>(
  event: APIGatewayProxyEventV2,
  name: N,
): z.output<(typeof PATH_PARAMETERS)[N]> => {
  const value = event.pathParameters?.[name];
  if (!value) throw new ValidationError(`missing path parameter ${name}`);
  const parsed = PATH_PARAMETERS[name].safeParse(value);
  // The message says what the id must look like; the value itself is not echoed (it may be huge).
  if (!parsed.success) {
    throw new ValidationError(
      `invalid ${name} in the path: expected ${parsed.error.issues.map((i) => i.message).join('; ')}`,
    );
  }
  return parsed.data as z.output<(typeof PATH_PARAMETERS)[N]>;
};

export const header = (event: APIGatewayProxyEventV2, name: string): string | undefined =>
  event.headers?.[name.toLowerCase()];
