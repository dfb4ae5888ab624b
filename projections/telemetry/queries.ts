/**
 * Telemetry reads (docs/telemetry.md): rows of a time range, or time buckets with min, max, avg,
 * count and last per field, from a lineage's table or a coalesced table. Pages are keyset pages
 * behind an opaque cursor (no COUNT). Buckets are computed in SQL on `event_ms` (integers), so
 * SQLite and PostgreSQL give the same answer.
 */
import type { WireValue } from '../../domain/protocol/contracts';
import type { MirrorColumn } from '../mirror/columns';
import type { ReadStore } from '../store/open';
import { quoteIdent } from '../store/identifiers';
import type { KeysetPage } from '../store/page';

export class TelemetryQueryError extends Error {
  constructor(
    readonly code: 'unknown_field' | 'field_not_numeric' | 'invalid_cursor' | 'invalid_range',
    message: string,
  ) {
    super(message);
    this.name = 'TelemetryQueryError';
  }
}
export const isTelemetryQueryError = (e: unknown): e is TelemetryQueryError =>
  e instanceof TelemetryQueryError;

/** Where a read goes: a table, its columns by field name, and the device it is limited to. */
export type TelemetrySource = Readonly<{
  table: string;
  coalesced: boolean;
  /** One column per field name (the approved target name); the newest type wins a clash. */
  fields: ReadonlyMap<string, MirrorColumn>;
  device_id: string | null;
}>;

function fieldsOf(columns: readonly MirrorColumn[]): Map<string, MirrorColumn> {
  const out = new Map<string, MirrorColumn>();
  for (const c of columns) {
    const had = out.get(c.target);
    if (!had || (c.bound && !had.bound) || c.bound === had.bound) out.set(c.target, c);
  }
  return out;
}

/** The lineage's telemetry: its device's rows in its table (coalesced or not); null: no table yet. */
export async function lineageTelemetrySource(
  store: ReadStore,
  projectId: string,
  lineageId: string,
): Promise<TelemetrySource | null | undefined> {
  const l = await store.db
    .selectFrom('edge_ts_lineages')
    .selectAll()
    .where('lineage_id', '=', lineageId)
    .where('project_id', '=', projectId)
    .executeTakeFirst();
  if (!l) return undefined;
  if (l.table_name === null) return null;
  const shared = await store.db
    .selectFrom('edge_ts_coalesced_tables')
    .select('table_name')
    .where('table_name', '=', l.table_name)
    .executeTakeFirst();
  return {
    table: l.table_name,
    coalesced: shared !== undefined,
    fields: fieldsOf(JSON.parse(l.columns) as MirrorColumn[]),
    device_id: l.device_id,
  };
}

export type CoalescedTelemetryTable = Readonly<{
  table_name: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  fields: readonly { name: string; affinity: string }[];
}>;

/** The coalesced telemetry tables of a project (optionally of one scope). */
export async function listCoalescedTelemetry(
  store: ReadStore,
  projectId: string,
  filter: Readonly<{ scope?: 'project' | 'fleet'; scope_id?: string; source_table?: string }> = {},
): Promise<CoalescedTelemetryTable[]> {
  const rows = await store.db
    .selectFrom('edge_ts_coalesced_tables')
    .selectAll()
    .where('project_id', '=', projectId)
    .$if(filter.scope !== undefined, (q) => q.where('scope', '=', filter.scope!))
    .$if(filter.scope_id !== undefined, (q) => q.where('scope_id', '=', filter.scope_id!))
    .$if(filter.source_table !== undefined, (q) => q.where('source_table', '=', filter.source_table!))
    .orderBy('table_name')
    .execute();
  return rows.map((r) => ({
    table_name: r.table_name,
    scope: r.scope,
    scope_id: r.scope_id,
    source_table: r.source_table,
    fields: [...fieldsOf(JSON.parse(r.columns) as MirrorColumn[]).values()].map((c) => ({
      name: c.target,
      affinity: c.affinity,
    })),
  }));
}

/** The coalesced table of (scope, source table), limited to one device when given. */
export async function coalescedTelemetrySource(
  store: ReadStore,
  projectId: string,
  scope: 'project' | 'fleet',
  scopeId: string,
  sourceTable: string,
  deviceId: string | null,
): Promise<TelemetrySource | undefined> {
  const r = await store.db
    .selectFrom('edge_ts_coalesced_tables')
    .selectAll()
    .where('project_id', '=', projectId)
    .where('scope', '=', scope)
    .where('scope_id', '=', scopeId)
    .where('source_table', '=', sourceTable)
    .executeTakeFirst();
  if (!r) return undefined;
  return {
    table: r.table_name,
    coalesced: true,
    fields: fieldsOf(JSON.parse(r.columns) as MirrorColumn[]),
    device_id: deviceId,
  };
}

export type TimeRange = Readonly<{ from_ms?: number; to_ms?: number }>;
type Picked = readonly (readonly [string, MirrorColumn])[];

/** The chosen fields (all when none are named), each checked against the source's columns. */
export function pickFields(source: TelemetrySource, names: readonly string[] | undefined): Picked {
  if (!names || names.length === 0) return [...source.fields.entries()];
  return names.map((n) => {
    const c = source.fields.get(n);
    if (!c) {
      const known = [...source.fields.keys()].map((k) => JSON.stringify(k)).join(', ') || 'none';
      throw new TelemetryQueryError(
        'unknown_field',
        `field ${JSON.stringify(n)} is not a column of this telemetry (fields: ${known})`,
      );
    }
    return [n, c] as const;
  });
}

const encode = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function decode(cursor: string): unknown {
  try {
    return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new TelemetryQueryError(
      'invalid_cursor',
      'cursor is not one this API handed out; start again without it',
    );
  }
}

function where(store: ReadStore, source: TelemetrySource, range: TimeRange, params: unknown[]): string[] {
  const p = () => store.dialect.placeholder(params.length);
  const out: string[] = [];
  if (range.from_ms !== undefined) {
    params.push(range.from_ms);
    out.push(`"event_ms" >= ${p()}`);
  }
  if (range.to_ms !== undefined) {
    params.push(range.to_ms);
    out.push(`"event_ms" < ${p()}`);
  }
  if (source.device_id !== null) {
    params.push(source.device_id);
    out.push(`"device_id" = ${p()}`);
  }
  return out;
}

export type TelemetryRowView = Readonly<{
  device_id: string;
  ts: string;
  time: string;
  row_id: string | null;
  values: Record<string, WireValue>;
}>;

type RowCursor = Readonly<{ k: 'r'; t: number; d: string; s: number; r: number }>;

/** Rows in time order (then device and batch position), one keyset page. */
export async function readTelemetryRows(
  store: ReadStore,
  source: TelemetrySource,
  q: TimeRange & Readonly<{ fields?: readonly string[]; limit: number; cursor?: string }>,
): Promise<KeysetPage<TelemetryRowView>> {
  const picked = pickFields(source, q.fields);
  const params: unknown[] = [];
  const conds = where(store, source, q, params);
  if (q.cursor !== undefined) {
    const c = decode(q.cursor) as Partial<RowCursor>;
    if (
      c.k !== 'r' ||
      typeof c.t !== 'number' ||
      typeof c.d !== 'string' ||
      typeof c.s !== 'number' ||
      typeof c.r !== 'number'
    ) {
      throw new TelemetryQueryError(
        'invalid_cursor',
        'cursor belongs to another kind of read; start again without it',
      );
    }
    params.push(c.t, c.d, c.s, c.r);
    const n = params.length;
    const ph = [n - 3, n - 2, n - 1, n].map((i) => store.dialect.placeholder(i)).join(', ');
    conds.push(`("event_ms", "device_id", "batch_seq", "batch_row") > (${ph})`);
  }
  params.push(q.limit + 1);
  // Aliases f0..fN: column names are device data; they never become SQL aliases.
  const select = [
    '"device_id"',
    '"event_ts"',
    '"event_ms"',
    '"row_id"',
    '"batch_seq"',
    '"batch_row"',
    ...picked.map(([, c], i) => `${quoteIdent(c.name)} AS "f${i}"`),
  ].join(', ');
  const text =
    `SELECT ${select} FROM ${quoteIdent(source.table)}` +
    (conds.length ? ` WHERE ${conds.join(' AND ')}` : '') +
    ` ORDER BY "event_ms", "device_id", "batch_seq", "batch_row" LIMIT ${store.dialect.placeholder(params.length)}`;
  const rows = await store.dialect.execExact(store.db, text, params);
  const page = rows.slice(0, q.limit);
  const items = page.map((r) => {
    const values: Record<string, WireValue> = {};
    picked.forEach(([name, c], i) => {
      values[name] = store.dialect.toWire(c.affinity, r[`f${i}`]);
    });
    return {
      device_id: String(r.device_id),
      ts: String(r.event_ts),
      time: new Date(Number(r.event_ms)).toISOString(),
      row_id: r.row_id === null ? null : String(r.row_id),
      values,
    };
  });
  const last = page[page.length - 1];
  const next_cursor =
    rows.length > q.limit && last
      ? encode({
          k: 'r',
          t: Number(last.event_ms),
          d: String(last.device_id),
          s: Number(last.batch_seq),
          r: Number(last.batch_row),
        } satisfies RowCursor)
      : null;
  return { items, next_cursor };
}

export type Aggregates = Readonly<{
  min: number | null;
  max: number | null;
  avg: number | null;
  count: number;
  last: number | null;
}>;
export type TelemetryBucketView = Readonly<{
  start: string;
  start_ms: number;
  rows: number;
  fields: Record<string, Aggregates>;
}>;

const NUMERIC = new Set(['INTEGER', 'REAL']);
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/**
 * Buckets of `bucket_ms` aligned to the epoch (a bucket holds `start <= event_ms < start +
 * bucket_ms`), in time order, with the aggregates of each chosen numeric field. `last` is the
 * field's value in the bucket's latest row (ties: the higher device id, then batch position).
 */
export async function readTelemetryBuckets(
  store: ReadStore,
  source: TelemetrySource,
  q: TimeRange & Readonly<{ fields?: readonly string[]; bucket_ms: number; limit: number; cursor?: string }>,
): Promise<KeysetPage<TelemetryBucketView>> {
  const B = q.bucket_ms;
  if (!Number.isSafeInteger(B) || B <= 0)
    throw new TelemetryQueryError('invalid_range', 'bucket must be a positive whole number of milliseconds');
  const picked = pickFields(
    source,
    q.fields ?? [...source.fields.entries()].filter(([, c]) => NUMERIC.has(c.affinity)).map(([n]) => n),
  );
  for (const [name, c] of picked) {
    if (!NUMERIC.has(c.affinity)) {
      throw new TelemetryQueryError(
        'field_not_numeric',
        `field ${JSON.stringify(name)} holds ${c.affinity} values; buckets aggregate INTEGER and REAL fields only (read rows without bucket)`,
      );
    }
  }
  let from = q.from_ms;
  if (q.cursor !== undefined) {
    const c = decode(q.cursor) as { k?: unknown; b?: unknown; w?: unknown };
    if (c.k !== 'b' || typeof c.b !== 'number' || c.w !== B) {
      throw new TelemetryQueryError(
        'invalid_cursor',
        'cursor belongs to another read (kind or bucket size); start again without it',
      );
    }
    from = Math.max(from ?? Number.MIN_SAFE_INTEGER, c.b + B);
  }
  const params: unknown[] = [];
  const conds = where(store, source, { ...q, ...(from !== undefined ? { from_ms: from } : {}) }, params);
  const real = store.dialect.kind === 'postgres' ? 'double precision' : 'REAL';
  const inner = [
    `("event_ms" - ((("event_ms" % ${B}) + ${B}) % ${B})) AS "b"`,
    '"event_ms"',
    '"device_id"',
    '"batch_seq"',
    '"batch_row"',
    ...picked.map(([, c], i) => `${quoteIdent(c.name)} AS "f${i}"`),
  ].join(', ');
  const aggs = picked
    .map(
      (_, i) =>
        `MIN("f${i}") AS "min${i}", MAX("f${i}") AS "max${i}", ` +
        `SUM(CAST("f${i}" AS ${real})) / NULLIF(COUNT("f${i}"), 0) AS "avg${i}", ` +
        `COUNT("f${i}") AS "cnt${i}", MAX(CASE WHEN "rn" = 1 THEN "f${i}" END) AS "last${i}"`,
    )
    .join(', ');
  params.push(q.limit + 1);
  const text =
    `WITH "src" AS (SELECT ${inner} FROM ${quoteIdent(source.table)}` +
    (conds.length ? ` WHERE ${conds.join(' AND ')}` : '') +
    '), "ranked" AS (SELECT "src".*, ROW_NUMBER() OVER (PARTITION BY "b" ORDER BY "event_ms" DESC, ' +
    '"device_id" DESC, "batch_seq" DESC, "batch_row" DESC) AS "rn" FROM "src") ' +
    `SELECT "b", COUNT(*) AS "n"${aggs ? `, ${aggs}` : ''} FROM "ranked" GROUP BY "b" ORDER BY "b" ` +
    `LIMIT ${store.dialect.placeholder(params.length)}`;
  const rows = await store.dialect.exec(store.db, text, params);
  const page = rows.slice(0, q.limit);
  const items = page.map((r) => {
    const fields: Record<string, Aggregates> = {};
    picked.forEach(([name], i) => {
      fields[name] = {
        min: num(r[`min${i}`]),
        max: num(r[`max${i}`]),
        avg: num(r[`avg${i}`]),
        count: Number(r[`cnt${i}`]),
        last: num(r[`last${i}`]),
      };
    });
    const start = Number(r.b);
    return { start: new Date(start).toISOString(), start_ms: start, rows: Number(r.n), fields };
  });
  const last = page[page.length - 1];
  const next_cursor = rows.length > q.limit && last ? encode({ k: 'b', b: Number(last.b), w: B }) : null;
  return { items, next_cursor };
}
