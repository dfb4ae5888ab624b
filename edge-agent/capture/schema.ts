import type Database from 'better-sqlite3';
import { affinityOf, schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';

/** One table as capture sees it: columns in declaration order, key columns by key ordinal. */
export type TableSchema = Readonly<{
  name: string;
  /** Column names in declaration (cid) order: the order of values in a journal row. */
  columns: readonly string[];
  /** Key column names ordered by their position in the PRIMARY KEY. */
  pk: readonly string[];
  withoutRowid: boolean;
  /** Each column's DEFAULT expression as written (null: none), in column order. */
  defaults: readonly (string | null)[];
  fingerprint: SchemaColumns;
  hash: string;
  /** The row predicate of the table's edge filter (capture/filter.ts): only matching rows are sent. */
  where?: string;
}>;

type ColumnInfo = {
  cid: number;
  name: string;
  type: string;
  notnull: number;
  pk: number;
  dflt_value: string | null;
};
type TableListRow = { schema: string; name: string; type: string; wr: number };

/** Names the agent never captures: SQLite's own tables and the agent's `__sluice_*` objects. */
export function isReservedTable(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.startsWith('sqlite_') || lower.startsWith('__sluice_');
}

/** Ordinary tables of the main schema (no views, virtual or shadow tables), reserved names left out. */
export function listUserTables(db: Database.Database): { name: string; withoutRowid: boolean }[] {
  const rows = db.prepare('PRAGMA main.table_list').all() as TableListRow[];
  return rows
    .filter((r) => r.schema === 'main' && r.type === 'table' && !isReservedTable(r.name))
    .map((r) => ({ name: r.name, withoutRowid: r.wr === 1 }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function readTableSchema(
  db: Database.Database,
  name: string,
  withoutRowid?: boolean,
): TableSchema | undefined {
  if (withoutRowid === undefined) {
    const wr = db
      .prepare('SELECT wr FROM pragma_table_list WHERE schema = ? AND name = ?')
      .get('main', name) as { wr: number } | undefined;
    withoutRowid = wr?.wr === 1;
  }
  const cols = db.prepare('SELECT * FROM pragma_table_info(?)').all(name) as ColumnInfo[];
  if (cols.length === 0) return undefined;
  cols.sort((a, b) => a.cid - b.cid);
  const fingerprint: SchemaColumns = {
    table_name: name,
    columns: cols.map((c) => ({
      name: c.name,
      decl_type_affinity: affinityOf(c.type),
      pk_ordinal: c.pk,
      not_null: c.notnull === 1,
    })),
  };
  return {
    name,
    columns: cols.map((c) => c.name),
    pk: cols
      .filter((c) => c.pk > 0)
      .sort((a, b) => a.pk - b.pk)
      .map((c) => c.name),
    withoutRowid,
    defaults: cols.map((c) => c.dflt_value),
    fingerprint,
    hash: schemaHash(fingerprint),
  };
}
