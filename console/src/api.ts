/**
 * A small typed client of the Sluice JSON API. Every call carries the session's bearer token;
 * an answer that is not 2xx becomes an ApiError with the API's own `{code, message, details}`.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
  }
}

export const isApiError = (e: unknown): e is ApiError => e instanceof ApiError;

type Query = Readonly<Record<string, string | number | undefined | null>>;

export type Client = Readonly<{
  projectId: string;
  /** GET a path under the project (`/edge/lineages`), with the query parameters that are set. */
  get<T>(path: string, query?: Query): Promise<T>;
  /** A mutation under the project; each call is one operator action with a new Idempotency-Key. */
  send<T>(method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T>;
}>;

export type Session = Readonly<{
  name: string;
  project_id: string;
  permissions: readonly string[];
  can_manage: boolean;
}>;

const API = '/core/api/v1';

function withQuery(path: string, query: Query = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function call<T>(token: string, url: string, init: RequestInit = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, {
      ...init,
      headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` },
    });
  } catch {
    throw new ApiError(0, 'unreachable', 'the API did not answer; check that Sluice is running, then retry');
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const e = (body ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> };
    throw new ApiError(
      res.status,
      e.code ?? `http_${res.status}`,
      e.message ?? (text.slice(0, 200) || res.statusText),
      e.details,
    );
  }
  return body as T;
}

export function createClient(token: string, projectId: string): Client {
  const base = `${API}/projects/${encodeURIComponent(projectId)}`;
  return {
    projectId,
    get: (path, query) => call(token, withQuery(`${base}${path}`, query)),
    send: (method, path, body) =>
      call(token, `${base}${path}`, {
        method,
        headers: {
          'idempotency-key': crypto.randomUUID(),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
  };
}

/** What a token may do: its name, project and permissions (`GET /core/api/v1/session`). */
export const fetchSession = (token: string): Promise<Session> => call(token, `${API}/session`);
