import type { SqlDialect } from '../store/dialect';
import { PROJECTION_PARTITIONS } from './partitions';
import type { Db, Tx } from './types';

export type Checkpoint = Readonly<{ version: number; position: number }>;

/**
 * A partitioned projection keeps one checkpoint per partition, `<name>#<partition>`: the
 * messages of that partition's lineages up to `position` are in the store.
 */
export function partitionCheckpoint(name: string, partition: number): string {
  return `${name}#${partition}`;
}

/** Every checkpoint row of a projection: one per partition, or its bare name. */
export function checkpointNames(p: Readonly<{ name: string; partitioned?: boolean }>): string[] {
  return p.partitioned
    ? Array.from({ length: PROJECTION_PARTITIONS }, (_, i) => partitionCheckpoint(p.name, i))
    : [p.name];
}

/** The projection a checkpoint row belongs to (`mirror`, `staged_rows#3` → `staged_rows`). */
export const projectionOfCheckpoint = (name: string): string => name.split('#')[0]!;

export async function readCheckpoint(db: Db | Tx, name: string): Promise<Checkpoint | undefined> {
  return db
    .selectFrom('projection_checkpoints')
    .select(['version', 'position'])
    .where('name', '=', name)
    .executeTakeFirst();
}

export async function readCheckpoints(
  db: Db | Tx,
  names: readonly string[],
): Promise<Map<string, Checkpoint>> {
  if (names.length === 0) return new Map();
  const rows = await db
    .selectFrom('projection_checkpoints')
    .select(['name', 'version', 'position'])
    .where('name', 'in', [...names])
    .execute();
  return new Map(rows.map((r) => [r.name, { version: r.version, position: r.position }]));
}

/**
 * Read the checkpoints inside the applying transaction, locking their rows on PostgreSQL (in name
 * order, so two projectors never deadlock): a second projector of the same projection or
 * partition waits here and then skips what the first one applied. (SQLite has a single writer,
 * so its transactions serialise anyway.)
 */
export async function lockCheckpoints(
  tx: Tx,
  dialect: SqlDialect,
  names: readonly string[],
): Promise<Map<string, Checkpoint>> {
  if (names.length === 0) return new Map();
  const rows = await tx
    .selectFrom('projection_checkpoints')
    .select(['name', 'version', 'position'])
    .where('name', 'in', [...names])
    .orderBy('name')
    .$if(dialect.rowLocks, (q) => q.forUpdate())
    .execute();
  return new Map(rows.map((r) => [r.name, { version: r.version, position: r.position }]));
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

/** Several checkpoints of one projection in one statement. */
export async function writeCheckpoints(
  tx: Tx,
  version: number,
  positions: ReadonlyMap<string, number>,
): Promise<void> {
  if (positions.size === 0) return;
  const updated_at = new Date().toISOString();
  await tx
    .insertInto('projection_checkpoints')
    .values([...positions].map(([name, position]) => ({ name, version, position, updated_at })))
    .onConflict((oc) =>
      oc.column('name').doUpdateSet((eb) => ({
        version: eb.ref('excluded.version'),
        position: eb.ref('excluded.position'),
        updated_at: eb.ref('excluded.updated_at'),
      })),
    )
    .execute();
}

/**
 * Create the partition checkpoints of a projection that has none yet. A projection that ran
 * unpartitioned before has one checkpoint under its bare name: every partition starts from it
 * (all of them were applied up to there), and it is removed in the same transaction.
 */
export async function ensurePartitionCheckpoints(
  db: Db,
  name: string,
  version: number,
  partitions: number,
): Promise<void> {
  const names = Array.from({ length: partitions }, (_, p) => partitionCheckpoint(name, p));
  if ((await readCheckpoints(db, names)).size === partitions) return;
  await db.transaction().execute(async (tx) => {
    const legacy = await readCheckpoint(tx, name);
    const from = legacy ?? { version, position: 0 };
    const updated_at = new Date().toISOString();
    await tx
      .insertInto('projection_checkpoints')
      .values(names.map((n) => ({ name: n, version: from.version, position: from.position, updated_at })))
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    if (legacy) await tx.deleteFrom('projection_checkpoints').where('name', '=', name).execute();
  });
}
