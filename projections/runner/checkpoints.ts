import type { SqlDialect } from '../store/dialect';
import type { Db, Tx } from './types';

export type Checkpoint = Readonly<{ version: number; position: number }>;

export async function readCheckpoint(db: Db | Tx, name: string): Promise<Checkpoint | undefined> {
  return db
    .selectFrom('projection_checkpoints')
    .select(['version', 'position'])
    .where('name', '=', name)
    .executeTakeFirst();
}

/**
 * Read the checkpoint inside the applying transaction, locking its row on PostgreSQL: a second
 * projector of the same projection waits here and then skips what the first one applied.
 * (SQLite has a single writer, so its transactions serialise anyway.)
 */
export async function lockCheckpoint(
  tx: Tx,
  dialect: SqlDialect,
  name: string,
): Promise<Checkpoint | undefined> {
  return tx
    .selectFrom('projection_checkpoints')
    .select(['version', 'position'])
    .where('name', '=', name)
    .$if(dialect.rowLocks, (q) => q.forUpdate())
    .executeTakeFirst();
}

export async function writeCheckpoint(
  db: Db | Tx,
  name: string,
  version: number,
  position: number,
): Promise<void> {
  const updated_at = new Date().toISOString();
  await db
    .insertInto('projection_checkpoints')
    .values({ name, version, position, updated_at })
    .onConflict((oc) => oc.column('name').doUpdateSet({ version, position, updated_at }))
    .execute();
}
