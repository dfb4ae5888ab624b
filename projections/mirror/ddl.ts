import type { SqlDialect } from '../store/dialect';
import { quoteIdent } from '../store/identifiers';
import type { Tx } from '../runner/types';
import { keyColumns, type MirrorColumn } from './columns';

const columnDef = (dialect: SqlDialect, c: MirrorColumn): string =>
  `${quoteIdent(c.name)} ${dialect.columnType(c.affinity)}${c.key > 0 ? ' NOT NULL' : ''}`;

/**
 * Non-key columns stay nullable: a row from an older schema may lack them, and a NOT NULL that
 * the device does not enforce would turn every such row into a materialization failure.
 */
export async function createMirrorTable(
  tx: Tx,
  dialect: SqlDialect,
  table: string,
  columns: readonly MirrorColumn[],
  coalesced = false,
): Promise<void> {
  // A coalesced table holds many devices' rows: the device is part of the key.
  const key = [...(coalesced ? ['"device_id"'] : []), ...keyColumns(columns).map((c) => quoteIdent(c.name))];
  const defs = [
    ...columns.map((c) => columnDef(dialect, c)),
    `"device_id" ${dialect.columnType('TEXT')} NOT NULL`,
    `"source_commit_seq" ${dialect.columnType('INTEGER')} NOT NULL`,
    `"source_journal_epoch" ${dialect.columnType('TEXT')} NOT NULL`,
    `"source_epoch_ordinal" ${dialect.columnType('INTEGER')} NOT NULL`,
    `PRIMARY KEY (${key.join(', ')})`,
  ];
  await dialect.exec(tx, `CREATE TABLE ${quoteIdent(table)} (${defs.join(', ')})`, []);
}

export async function addMirrorColumns(
  tx: Tx,
  dialect: SqlDialect,
  table: string,
  added: readonly MirrorColumn[],
): Promise<void> {
  for (const c of added) {
    await dialect.exec(tx, `ALTER TABLE ${quoteIdent(table)} ADD COLUMN ${columnDef(dialect, c)}`, []);
  }
}

export async function dropTable(tx: Tx, dialect: SqlDialect, table: string): Promise<void> {
  await dialect.exec(tx, `DROP TABLE IF EXISTS ${quoteIdent(table)}`, []);
}

/** Run `fn` so that a failure undoes only its own writes, not the surrounding transaction. */
export async function withSavepoint<T>(
  tx: Tx,
  dialect: SqlDialect,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  const sp = quoteIdent(name);
  await dialect.exec(tx, `SAVEPOINT ${sp}`, []);
  try {
    const out = await fn();
    await dialect.exec(tx, `RELEASE SAVEPOINT ${sp}`, []);
    return out;
  } catch (err) {
    try {
      await dialect.exec(tx, `ROLLBACK TO SAVEPOINT ${sp}`, []);
      await dialect.exec(tx, `RELEASE SAVEPOINT ${sp}`, []);
    } catch {
      // The transaction itself is gone (e.g. the connection dropped): the original error says why.
    }
    throw err;
  }
}
