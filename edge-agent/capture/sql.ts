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

export const JOURNAL = '__sluice_journal';
export const SEQ = '__sluice_seq';
export const SCHEMA = '__sluice_schema';
export const APPLYING = '__sluice_applying';

/**
 * The agent's objects in the application database.
 * - `__sluice_seq`: one row per captured table: its id (tid), name, commit_seq counter and
 *   journal_epoch. The counter lives here, not in the journal, so deleting confirmed journal rows
 *   never lets a commit_seq be reused.
 * - `__sluice_schema`: every schema version (sv) a trigger was installed for, so a journal row
 *   written before a DDL change is still read with the columns it was written with.
 * - `__sluice_journal`: the captured changes, keyed (tid, seq). `data` is a JSON array of the row's
 *   values in column order (the key values only, for a delete).
 * - `__sluice_applying`: the triggers skip capture while it is non-empty, for writes of the agent
 *   that must not be journaled. A cloud state_write is not one of them: it is journaled on
 *   purpose, as the device's confirmation (control/state-write.ts).
 */
export const INFRA_DDL = [
  `CREATE TABLE IF NOT EXISTS ${SEQ} (tid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL DEFAULT 0, epoch TEXT NOT NULL, sv INTEGER)`,
  `CREATE TABLE IF NOT EXISTS ${SCHEMA} (sv INTEGER PRIMARY KEY, tid INTEGER NOT NULL, hash TEXT NOT NULL, info TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS ${JOURNAL} (tid INTEGER NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, sv INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (tid, seq)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS ${APPLYING} (flag INTEGER)`,
];

export type TriggerKind = 'ins' | 'upd' | 'key' | 'del';
export const TRIGGER_KINDS: readonly TriggerKind[] = ['ins', 'upd', 'key', 'del'];

export function triggerName(tid: number, kind: TriggerKind): string {
  return `__sluice_t${tid}_${kind}`;
}

/** BLOBs cannot go into json_array(); they are journaled as {"$h": HEX} and become base64 later. */
function valueExpr(ref: string, column: string): string {
  const c = `${ref}.${quoteIdent(column)}`;
  return `iif(typeof(${c})='blob',json_object('$h',hex(${c})),${c})`;
}

export function rowArrayExpr(ref: string, columns: readonly string[]): string {
  return `json_array(${columns.map((c) => valueExpr(ref, c)).join(',')})`;
}

const NOT_APPLYING = `NOT EXISTS (SELECT 1 FROM ${APPLYING})`;

function append(tid: number, sv: number, op: 'I' | 'U' | 'D', data: string): string {
  // The counter bump and the journal row run inside the application's own statement, so a
  // change and its commit_seq commit (or roll back) together.
  return (
    `UPDATE ${SEQ} SET seq = seq + 1 WHERE tid = ${tid}; ` +
    `INSERT INTO ${JOURNAL} (tid, seq, op, sv, data) SELECT ${tid}, seq, '${op}', ${sv}, ${data} FROM ${SEQ} WHERE tid = ${tid};`
  );
}

/**
 * The four capture triggers of a table. An UPDATE that changes the key is journaled as a delete
 * of the old key and an insert of the new row, so the cloud's mirror never keeps the old key.
 */
export function triggerSql(tid: number, sv: number, table: TableSchema): Record<TriggerKind, string> {
  const t = quoteIdent(table.name);
  const newRow = rowArrayExpr('NEW', table.columns);
  const oldKey = rowArrayExpr('OLD', table.pk);
  const keySame = table.pk.map((c) => `OLD.${quoteIdent(c)} IS NEW.${quoteIdent(c)}`).join(' AND ');
  const create = (kind: TriggerKind, event: string, when: string, body: string) =>
    `CREATE TRIGGER ${triggerName(tid, kind)} AFTER ${event} ON ${t} WHEN ${when} BEGIN ${body} END`;
  return {
    ins: create('ins', 'INSERT', NOT_APPLYING, append(tid, sv, 'I', newRow)),
    upd: create('upd', 'UPDATE', `(${keySame}) AND ${NOT_APPLYING}`, append(tid, sv, 'U', newRow)),
    key: create(
      'key',
      'UPDATE',
      `NOT (${keySame}) AND ${NOT_APPLYING}`,
      append(tid, sv, 'D', oldKey) + ' ' + append(tid, sv, 'I', newRow),
    ),
    del: create('del', 'DELETE', NOT_APPLYING, append(tid, sv, 'D', oldKey)),
  };
}

/** Journal every row already in the table as an insert (snapshot_on_first_run), in key order. */
export function snapshotSql(tid: number, sv: number, table: TableSchema): string {
  const order = table.pk.map((c) => `__s.${quoteIdent(c)}`).join(', ');
  return (
    `INSERT INTO ${JOURNAL} (tid, seq, op, sv, data) ` +
    `SELECT ${tid}, (SELECT seq FROM ${SEQ} WHERE tid = ${tid}) + row_number() OVER (ORDER BY ${order}), 'I', ${sv}, ` +
    `${rowArrayExpr('__s', table.columns)} FROM ${quoteIdent(table.name)} AS __s`
  );
}
