import { SqliteAdapter, sql } from 'kysely';
import type { WireValue } from '../../../domain/protocol/contracts';
import type { MirrorColumn } from '../../mirror/columns';
import { quoteIdent } from '../identifiers';
import { type CursorPage, type PageQuery, paging } from '../page';
import { bindPostgresValue } from '../postgres';
import { bindSqliteValue } from '../sqlite';
import { dbToWire } from '../values';
import type { Db } from './common';

export type MirrorRowView = Readonly<{
  /** Key values by mirror column name (the approved target name). */
  key: Record<string, WireValue>;
  /** Every column of the table by mirror column name, wire-encoded ($int, $blob). */
  row: Record<string, WireValue>;
  device_id: string;
  source_commit_seq: number;
  source_journal_epoch: string;
}>;

export type MirrorColumnView = Readonly<{
  name: string;
  column: string;
  source_column: string;
  affinity: string;
  pk_ordinal: number;
  bound: boolean;
}>;

export type MirrorRowsQuery = PageQuery &
  Readonly<{
    project_id: string;
    lineage_id: string;
    /** The `next_cursor` of the previous page: rows after its last key (keyset; `page` ignored). */
    after?: string;
    /** Count the lineage's rows (`total`); without it `total` is null and nothing is counted. */
    count?: boolean;
  }>;

/** `next_cursor` is the key of the page's last row, for `after`. */
export type MirrorRowsPage = Omit<CursorPage<MirrorRowView>, 'total'> &
  Readonly<{
    /** Only when asked (`count`): counting is a scan of the lineage's rows. */
    total: number | null;
    table: string | null;
    columns: MirrorColumnView[];
  }>;

/** A cursor is the last row's key in wire form, in key order: exact for every storage class. */
const encodeKeyCursor = (key: readonly WireValue[]): string =>
  Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');

function decodeKeyCursor(
  s: string,
  affinities: readonly MirrorColumn['affinity'][],
  bind: typeof bindSqliteValue,
) {
  try {
    const key = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === affinities.length && key.every((v) => v !== null)) {
      return key.map((v, i) => bind(affinities[i]!, v as WireValue));
    }
  } catch {
    // fall through
  }
  throw new RangeError('invalid mirror-rows cursor');
}

/**
 * The lineage's current mirror rows ordered by key; `table` is null until one is provisioned.
 * Pages by key: `after` (a `next_cursor`) reads the next rows through the primary key, at any
 * depth; `page` (OFFSET) still works for a person stepping through pages. No row count unless
 * asked: a poller that reads page 1 over and over must not scan the table each time.
 */
export async function listMirrorRows(db: Db, q: MirrorRowsQuery): Promise<MirrorRowsPage> {
  const { page, limit, offset } = paging(q);
  const member = await db
    .selectFrom('edge_mirror_coalesced_members as m')
    .innerJoin('edge_mirror_coalesced_entries as e', 'e.registry_id', 'm.registry_id')
    .select(['m.table_name', 'e.columns', 'm.device_id'])
    .where('m.lineage_id', '=', q.lineage_id)
    .where('m.project_id', '=', q.project_id)
    .executeTakeFirst();
  const t =
    member ??
    (await db
      .selectFrom('edge_mirror_tables')
      .select(['table_name', 'columns'])
      .where('lineage_id', '=', q.lineage_id)
      .where('project_id', '=', q.project_id)
      .where('status', '=', 'current')
      .executeTakeFirst());
  const kind = db.getExecutor().adapter instanceof SqliteAdapter ? 'sqlite' : 'postgres';
  if (!t) {
    if (q.after !== undefined) throw new RangeError('invalid mirror-rows cursor');
    return { items: [], total: q.count ? 0 : null, page, limit, next_cursor: null, table: null, columns: [] };
  }
  const columns = JSON.parse(t.columns) as MirrorColumn[];
  const keys = columns.filter((c) => c.key > 0).sort((a, b) => a.key - b.key);
  const after =
    q.after === undefined
      ? undefined
      : decodeKeyCursor(
          q.after,
          keys.map((k) => k.affinity),
          kind === 'sqlite' ? bindSqliteValue : bindPostgresValue,
        );
  // A coalesced table holds every device of the scope: this lineage's rows are its device's.
  const device = member ? sql`"device_id" = ${member.device_id}` : undefined;
  const keyList = sql.raw(keys.map((k) => quoteIdent(k.name)).join(', '));
  const from = after ? sql`(${keyList}) > (${sql.join(after.map((v) => sql`${v}`))})` : undefined;
  const conditions = [device, from].filter((c) => c !== undefined);
  const where = conditions.length ? sql` WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
  const table = sql.raw(quoteIdent(t.table_name));
  // Aliases c0..cN: column names are device data; we never echo them as SQL aliases.
  const select = sql.raw(
    [
      ...columns.map((c, i) => `${quoteIdent(c.name)} AS "c${i}"`),
      '"device_id" AS "s_device_id"',
      '"source_commit_seq" AS "s_commit_seq"',
      '"source_journal_epoch" AS "s_epoch"',
    ].join(', '),
  );
  const skip = after ? 0 : offset;
  const [rows, count] = await Promise.all([
    // EXACT_MARKER: integers are not normalised, so an INTEGER and an integral REAL stay apart.
    sql<
      Record<string, unknown>
    >`/*sluice:exact*/ SELECT ${select} FROM ${table}${where} ORDER BY ${keyList} LIMIT ${limit} OFFSET ${skip}`.execute(
      db,
    ),
    q.count
      ? sql<{
          n: number | bigint | string;
        }>`SELECT COUNT(*) AS n FROM ${table}${device ? sql` WHERE ${device}` : sql``}`.execute(db)
      : undefined,
  ]);
  const items = rows.rows.map((r) => {
    const row: Record<string, WireValue> = {};
    columns.forEach((c, i) => {
      row[c.target] = dbToWire(kind, c.affinity, r[`c${i}`]);
    });
    const key: Record<string, WireValue> = {};
    for (const k of keys) key[k.target] = row[k.target] ?? null;
    return {
      key,
      row,
      device_id: String(r.s_device_id),
      source_commit_seq: Number(r.s_commit_seq),
      source_journal_epoch: String(r.s_epoch),
    };
  });
  const last = items[items.length - 1];
  return {
    items,
    total: count ? Number(count.rows[0]?.n ?? 0) : null,
    page,
    limit,
    next_cursor:
      last && items.length === limit ? encodeKeyCursor(keys.map((k) => last.key[k.target] ?? null)) : null,
    table: t.table_name,
    columns: columns.map((c) => ({
      name: c.target,
      column: c.name,
      source_column: c.source,
      affinity: c.affinity,
      pk_ordinal: c.key,
      bound: c.bound,
    })),
  };
}
