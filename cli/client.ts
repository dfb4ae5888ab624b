import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
/**
 * The operator CLI's HTTP client, and the exit codes scripts can trust:
 *   0 ok · 1 unexpected error · 2 usage or validation · 3 not found · 4 conflict · 5 auth
 */
export const EXIT = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  auth: 5,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that reaches the operator: what happened, what to do, and the exit code. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
    /** The API's error body, printed as is with --json. */
    readonly body?: ApiErrorBody & { status?: number },
  ) {
    super(message);
  }
  withHint(hint: string): CliError {
    return new CliError(this.exitCode, this.message, hint, this.body);
  }
  get code(): string | undefined {
    return this.body?.code;
  }
}
export const isCliError = (e: unknown): e is CliError => e instanceof CliError;

export type ApiErrorBody = { code: string; message: string; details?: Record<string, unknown> };

/** HTTP status → exit code. */
export function exitCodeFor(status: number, code?: string): ExitCode {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404 || status === 410) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 400 || status === 413 || status === 422) return EXIT.usage;
  if (code === 'not_found') return EXIT.notFound;
  return EXIT.unexpected;
}

/** What to do next, by the API's stable error code. Commands add more specific hints. */
const HINTS: Record<string, string> = {
  unauthenticated:
    'pass a valid token with --token or SLUICE_TOKEN (`make run` prints a dev token; servers read them from SLUICE_API_TOKENS)',
  forbidden: 'this token can only read; use a token with PROJECT_CAN_MANAGE_DEVICES',
  not_found:
    'check the id, and the project (--project or SLUICE_PROJECT_ID): ids of another project read as not found',
  lineage_deleted:
    'the lineage has ended; a later batch of its table starts a new one (`sluice lineages ls`)',
  stale_action_version:
    'someone changed the review since it was read; look again (`sluice reviews show ID`) and retry',
  illegal_transition: 'the review is not in a state that allows this; see `sluice reviews show ID`',
  invalid_column_actions: 'check the columns and actions against `sluice reviews show ID`',
  idempotency_key_reused:
    'this Idempotency-Key was used for another request; drop --idempotency-key or pick a new one',
  idempotency_in_progress: 'a request with this Idempotency-Key is still running; retry in a moment',
  internal: 'nothing was changed by this request; retry it, and check the server log if it keeps failing',
  invalid_request: 'see `sluice help <command>` for the accepted options',
  not_cloud_authoritative:
    'make the lineage cloud_authoritative first: `sluice lineages authority ID cloud_authoritative`',
  schema_not_approved: 'approve the lineage’s schema review first (`sluice reviews ls --lineage ID`)',
  invalid_rows:
    'check the pk and column names against `sluice lineages show ID` (columns of the approved schema)',
  reason_required: 'give the reason with --reason; it stays with the review for whoever reopens it',
  schema_columns_missing:
    'the device re-announces its schema with its next batch (the cloud asked it with a resync control); `sluice reviews show ID` lists the columns once they arrived',
  batch_id_conflict:
    'the device reused a batch_id for other content; nothing of it was taken in. Check the device’s state.db and journal',
  verify_unavailable:
    'only an active row lineage with an approved schema can be verified (`sluice lineages show ID`)',
  resync_unavailable: 'only a row lineage can resync (`sluice lineages show ID`)',
  unknown_verify_id:
    'that verify was not requested for this lineage; start one with `sluice lineages verify ID`',
  write_back_backlog:
    'the device has not acknowledged earlier writes; see `sluice controls ls --lineage ID` and retry when it is back',
};

/** Where a path is rooted: the project's `/edge` API (most routes) or the project itself. */
export type ApiScope = 'edge' | 'project';

export type ApiTarget = Readonly<{ api: string; token?: string; project: string; timeoutMs?: number }>;

export class ApiClient {
  readonly base: string;
  readonly projectBase: string;
  constructor(private readonly target: ApiTarget) {
    this.projectBase = `${target.api.replace(/\/+$/, '')}/core/api/v1/projects/${encodeURIComponent(target.project)}`;
    this.base = `${this.projectBase}/edge`;
  }

  get<T>(
    path: string,
    query: Record<string, string | number | boolean | undefined> = {},
    scope: ApiScope = 'edge',
  ): Promise<T> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.set(k, String(v));
    const q = qs.toString();
    return this.request<T>('GET', `${path}${q ? `?${q}` : ''}`, undefined, undefined, scope);
  }

  /** A mutation: always with an Idempotency-Key, so a retried request has no second effect. */
  mutate<T>(
    method: 'POST' | 'DELETE' | 'PATCH' | 'PUT',
    path: string,
    body: unknown,
    idempotencyKey: string,
    scope: ApiScope = 'edge',
  ): Promise<T> {
    return this.request<T>(method, path, body, idempotencyKey, scope);
  }

  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    key?: string,
    scope: ApiScope = 'edge',
  ): Promise<T> {
    if (!this.target.token)
      throw new CliError(
        EXIT.auth,
        'no API token',
        'pass --token or set SLUICE_TOKEN (`make run` prints a dev token)',
        { code: 'no_token', message: 'no API token' },
      );
    const url = `${scope === 'edge' ? this.base : this.projectBase}${path}`;
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (key !== undefined) headers['idempotency-key'] = key;
    let res: { status: number; statusText: string; text: string };
    try {
      res = await send(url, method, headers, body === undefined ? undefined : JSON.stringify(body), {
        timeoutMs: this.target.timeoutMs ?? 30_000,
      });
    } catch (err) {
      const cause = (err as { code?: string }).code ?? (err as Error).name;
      const message = `cannot reach the Sluice API at ${this.target.api} (${cause})`;
      throw new CliError(
        EXIT.unexpected,
        message,
        key !== undefined
          ? 'is `sluice api` (or `make run`) running? Set --api or SLUICE_API_URL. If the request did go through, re-running with the same --idempotency-key has no second effect'
          : 'is `sluice api` (or `make run`) running? Set --api or SLUICE_API_URL',
        { code: 'api_unreachable', message },
      );
    }
    const { text } = res;
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: reported below
    }
    if (res.status >= 200 && res.status < 300) {
      if (parsed === undefined && text)
        throw new CliError(EXIT.unexpected, `the API answered ${method} ${path} with non-JSON`);
      return parsed as T;
    }
    const err = isErrorBody(parsed)
      ? parsed
      : { code: `http_${res.status}`, message: text.slice(0, 200) || res.statusText };
    throw new CliError(exitCodeFor(res.status, err.code), err.message, HINTS[err.code], {
      ...err,
      status: res.status,
    });
  }
}

/**
 * One HTTP(S) request with node:http, which is loaded already when a command starts; `fetch`
 * would load and compile its own HTTP stack first, doubling the start time of a one-request
 * command. A CA for a private API certificate comes in through NODE_EXTRA_CA_CERTS.
 */
function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  o: { timeoutMs: number },
): Promise<{ status: number; statusText: string; text: string }> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
        timeout: o.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TimeoutError' })));
    req.on('error', reject);
    req.end(body);
  });
}

function isErrorBody(v: unknown): v is ApiErrorBody {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as ApiErrorBody).code === 'string' &&
    typeof (v as ApiErrorBody).message === 'string'
  );
}
