/**
 * A page of a list the HTTP API answers, and the paging rule every list follows: `page` is
 * 1-based, `limit` defaults to 50 and is at most 500 (out-of-range values are clamped). The API's
 * clients (CLI, tests, benchmarks) read their answers with these same types.
 */

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

export type Page<T> = Readonly<{ items: T[]; total: number; page: number; limit: number }>;

/** A page that can also be followed by key: `next_cursor` is null on the last page. */
export type CursorPage<T> = Page<T> & Readonly<{ next_cursor: string | null }>;

/** A page read by key only (no count, no page number), e.g. telemetry and the audit trail. */
export type KeysetPage<T> = Readonly<{ items: T[]; next_cursor: string | null }>;

export type PageQuery = Readonly<{ page?: number; limit?: number }>;

export function paging(q: PageQuery): { page: number; limit: number; offset: number } {
  const int = (v: number | undefined, d: number) =>
    v === undefined || !Number.isFinite(v) ? d : Math.trunc(v);
  const limit = Math.min(MAX_LIMIT, Math.max(1, int(q.limit, DEFAULT_LIMIT)));
  const page = Math.max(1, int(q.page, 1));
  return { page, limit, offset: (page - 1) * limit };
}
