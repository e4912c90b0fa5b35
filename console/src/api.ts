/** The HTTP API over fetch: JSON in and out, every failure an ApiError whose message can be shown as is. */

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

interface Connection {
  apiUrl: string;
  token: string;
  /** the token was refused: the console signs in again */
  onUnauthorized: () => void;
}

let connection: Connection | undefined;

export const connect = (next: Connection) => {
  connection = next;
};

export type Query = Record<string, string | number | undefined>;

const urlOf = (apiUrl: string, path: string, query: Query = {}) => {
  const url = new URL(`${apiUrl}${path}`);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') url.searchParams.set(key, String(value));
  }
  return url;
};

const errorOf = (status: number, body: unknown): ApiError => {
  const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  if (error?.message) return new ApiError(error.message, status, error.code);
  const message = (body as { message?: string } | undefined)?.message;
  if (status === 401) return new ApiError('Your sign-in has expired. Sign in again.', status);
  return new ApiError(message ? `${message} (HTTP ${status})` : `The API answered HTTP ${status}.`, status);
};

const call = async (
  method: string,
  path: string,
  options: { query?: Query; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Response> => {
  if (!connection) throw new ApiError('Not signed in.', 401);
  const { apiUrl, token, onUnauthorized } = connection;
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...options.headers };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(urlOf(apiUrl, path, options.query), {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
  } catch {
    throw new ApiError(`The API at ${apiUrl} could not be reached. Check your connection and try again.`, 0);
  }
  if (response.status === 401) onUnauthorized();
  if (!response.ok) {
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    throw errorOf(response.status, body);
  }
  return response;
};

export const api = {
  get: async <T>(path: string, query?: Query): Promise<T> => (await call('GET', path, { query })).json(),
  text: async (path: string): Promise<string> => (await call('GET', path)).text(),
  post: async <T>(path: string, body?: unknown, headers?: Record<string, string>): Promise<T> =>
    (await call('POST', path, { body, headers })).json(),
  put: async <T>(path: string, body: unknown): Promise<T> => (await call('PUT', path, { body })).json(),
};

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
