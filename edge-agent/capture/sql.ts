import type { TableSchema } from './schema';

/**
 * SQL text for capture. Every identifier that comes from the application's schema goes through
 * quoteIdent (double quotes doubled), so a table or column name with quotes, semicolons, spaces
 * or any unicode can never end the identifier early. Agent-owned names are fixed ASCII.
 */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export const SEQ = '__sluice_seq';
export const SCHEMA = '__sluice_schema';
/** The JSON journal of agents before per-table change logs; converted and dropped at start. */
export const OLD_JOURNAL = '__sluice_journal';
export const OLD_APPLYING = '__sluice_applying';

/** The change log of one captured table. */
export function logTable(tid: number): string {
  return `__sluice_log_${tid}`;
}

/** Key columns of a change log: k0 … k(n-1), in PRIMARY KEY order, without a declared type. */
export function keyColumns(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `k${i}`);
}

/**
 * Change log ops. I/U/D are the application's changes; the agent adds:
 * - `S`: the sweep that ends a resync (k0 holds its JSON: resync_id, since_commit_seq, buckets);
 * - `X`: a placeholder that only holds a commit_seq (never sent): it keeps the counter when a
 *   journal is converted from the old format with nothing pending.
 */
export type LogOp = 'I' | 'U' | 'D' | 'S' | 'X';

/**
 * The agent's objects in the application database.
 * - `__sluice_seq`: one row per captured table: its id (tid), name, journal_epoch, the current
 *   schema version (sv) and the key columns its change log holds (`keys`, JSON array). (`seq` is
 *   left from the old journal format and no longer moves.)
 * - `__sluice_schema`: every schema version (sv) seen for a table, so a DDL made while the
 *   agent was stopped is still compared with what was captured before it.
 * - `__sluice_log_<tid>`: the table's change log (see logDdl).
 */
export const INFRA_DDL = [
  `CREATE TABLE IF NOT EXISTS ${SEQ} (tid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL DEFAULT 0, epoch TEXT NOT NULL, sv INTEGER, keys TEXT)`,
  `CREATE TABLE IF NOT EXISTS ${SCHEMA} (sv INTEGER PRIMARY KEY, tid INTEGER NOT NULL, hash TEXT NOT NULL, info TEXT NOT NULL)`,
];

/**
 * A change log: `seq` is the commit_seq, allocated by SQLite as max(seq)+1 because it is the
 * INTEGER PRIMARY KEY (the cheapest allocation measured: no counter row to update per change).
 * That allocation would reuse a number once the log is empty, so the agent never deletes the
 * row holding the largest seq (Journal.deleteThrough); a commit_seq is never reused in an epoch.
 * The key columns have no declared type, so SQLite stores each key value exactly as the table
 * holds it (no affinity conversion).
 */
export function logDdl(tid: number, nk: number): string {
  const ks = keyColumns(nk).join(', ');
  return `CREATE TABLE IF NOT EXISTS ${logTable(tid)} (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, ${ks})`;
}

export type TriggerKind = 'ins' | 'upd' | 'key' | 'del';
export const TRIGGER_KINDS: readonly TriggerKind[] = ['ins', 'upd', 'key', 'del'];

export function triggerName(tid: number, kind: TriggerKind): string {
  return `__sluice_t${tid}_${kind}`;
}

function append(tid: number, op: 'I' | 'U' | 'D', ref: 'NEW' | 'OLD', pk: readonly string[]): string {
  // The log row is written inside the application's own statement, so a change and its
  // commit_seq commit (or roll back) together. Only key values: SQLite never formats a value.
  const ks = keyColumns(pk.length).join(', ');
  const vals = pk.map((c) => `${ref}.${quoteIdent(c)}`).join(', ');
  return `INSERT INTO ${logTable(tid)} (op, ${ks}) VALUES ('${op}', ${vals});`;
}

/**
 * The four capture triggers of a table. They reference key columns only, so ADD, DROP and
 * RENAME of other columns never touch them. An UPDATE that changes the key is journaled as a
 * delete of the old key and an insert of the new one, so the cloud's mirror never keeps the old key.
 */
export function triggerSql(tid: number, table: TableSchema): Record<TriggerKind, string> {
  const t = quoteIdent(table.name);
  const keySame = table.pk.map((c) => `OLD.${quoteIdent(c)} IS NEW.${quoteIdent(c)}`).join(' AND ');
  const create = (kind: TriggerKind, event: string, when: string | null, body: string) =>
    `CREATE TRIGGER ${triggerName(tid, kind)} AFTER ${event} ON ${t}${when ? ` WHEN ${when}` : ''} BEGIN ${body} END`;
  return {
    ins: create('ins', 'INSERT', null, append(tid, 'I', 'NEW', table.pk)),
    upd: create('upd', 'UPDATE', keySame, append(tid, 'U', 'NEW', table.pk)),
    key: create(
      'key',
      'UPDATE',
      `NOT (${keySame})`,
      append(tid, 'D', 'OLD', table.pk) + ' ' + append(tid, 'I', 'NEW', table.pk),
    ),
    del: create('del', 'DELETE', null, append(tid, 'D', 'OLD', table.pk)),
  };
}

/** Journal every row of the table as an insert, in key order (snapshot and resync). */
export function snapshotSql(tid: number, table: TableSchema): string {
  const ks = keyColumns(table.pk.length).join(', ');
  const cols = table.pk.map((c) => `__s.${quoteIdent(c)}`).join(', ');
  return (
    `INSERT INTO ${logTable(tid)} (op, ${ks}) ` +
    `SELECT 'I', ${cols} FROM ${quoteIdent(table.name)} AS __s ORDER BY ${cols}`
  );
}
