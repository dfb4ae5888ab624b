import { realText } from '../../domain/protocol/wire-values';
import type { ReadStore } from '../store/open';
import { quoteIdent } from '../store/identifiers';

const IGNORED = new Set(['kysely_migration', 'kysely_migration_lock', 'projection_checkpoints']);

const encode = (_k: string, v: unknown): unknown => {
  if (typeof v === 'bigint') return `bigint:${v}`;
  // JSON would print -0 as 0 and ±Infinity as null: keep them apart.
  if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) return `real:${realText(v)}`;
  if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') {
    return `bytes:${Buffer.from((v as { data: number[] }).data).toString('hex')}`;
  }
  return v;
};

/** Every table (static and dynamic) with its rows serialised and sorted: equal dumps = equal stores. */
export async function dumpStore(
  store: ReadStore,
  only?: (table: string) => boolean,
): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of await store.dialect.listTables(store.db)) {
    if (IGNORED.has(t) || (only && !only(t))) continue;
    // Exact: on SQLite an INTEGER (bigint) and an integral REAL (number) stay apart.
    const rows = await store.dialect.execExact(store.db, `SELECT * FROM ${quoteIdent(t)}`, []);
    out[t] = rows.map((r) => JSON.stringify(r, encode)).sort();
  }
  return out;
}
