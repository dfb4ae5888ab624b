/**
 * Bulk materialization of row changes into one mirror table.
 *
 * Invariant: a mirror row only ever moves forward in (epoch ordinal, commit_seq). commit_seq is
 * monotonic within a journal epoch; epochs are numbered in the order they first appeared in the
 * lineage's events (as the decider orders them), not by their UUIDv7 text, so a device whose
 * clock went backwards across a journal reset still moves forward. Upserts carry the comparison
 * in their ON CONFLICT … WHERE; deletes compare before deleting and leave a tombstone, so a late
 * insert with a lower position cannot resurrect a deleted row.
 */
import type { WireValue } from '../../domain/protocol/contracts';
import { bucketOf } from '../../domain/protocol/wire-values';
import { pkHash } from '../../domain/shared/canonical';
import type { Tx } from '../runner/types';
import type { SqlDialect } from '../store/dialect';
import { quoteIdent } from '../store/identifiers';
import { type DbValue, MaterializationError } from '../store/values';
import { keyColumns, type MirrorColumn, SYSTEM_COLUMNS } from './columns';
import { withSavepoint } from './ddl';

export type MirrorOp = Readonly<{
  journal_epoch: string;
  epoch_ordinal: number;
  commit_seq: number;
  op: 'insert' | 'update' | 'delete' | 'sweep';
  pk: Readonly<Record<string, WireValue>>;
  row: Readonly<Record<string, WireValue>> | null;
  pk_hash: string;
  /** op sweep: the end of a resync (docs/exact-replication.md). */
  sweep?: SweepSpec;
}>;

export type SweepSpec = Readonly<{
  resync_id: string;
  since_commit_seq: number;
  /** null: every bucket. */
  buckets: readonly number[] | null;
}>;

export type MirrorTarget = Readonly<{
  lineage_id: string;
  device_id: string;
  table: string;
  columns: readonly MirrorColumn[];
  /** A coalesced table (many devices): its key is (device_id, source key). */
  coalesced?: boolean;
}>;

export type RowFailure = Readonly<{ op: MirrorOp; err: unknown }>;
export type WriteResult = Readonly<{ applied: number; failures: readonly RowFailure[] }>;

type Position = Readonly<{ epoch_ordinal: number; commit_seq: number }>;
const isAfter = (a: Position, b: Position): boolean =>
  a.epoch_ordinal > b.epoch_ordinal || (a.epoch_ordinal === b.epoch_ordinal && a.commit_seq > b.commit_seq);

type Prepared = Readonly<{ op: MirrorOp; params: readonly DbValue[] }>;

// Chunk sizes are fixed so that full chunks share one SQL text (SQLite reuses the statement).
const MAX_UPSERT_ROWS = 1_000;
const MAX_DELETE_ROWS = 200;
const LOOKUP_CHUNK = 500;

/** The latest change per key: a batch may touch a key several times; ON CONFLICT may not. */
export function latestPerKey(ops: readonly MirrorOp[]): MirrorOp[] {
  const byKey = new Map<string, MirrorOp>();
  for (const op of ops) {
    const seen = byKey.get(op.pk_hash);
    if (!seen || isAfter(op, seen)) byKey.set(op.pk_hash, op);
  }
  return [...byKey.values()];
}

function keyValue(c: MirrorColumn, op: MirrorOp): WireValue {
  const v = op.pk[c.source] ?? op.row?.[c.source] ?? null;
  if (v === null) throw new MaterializationError('missing_key', `key column ${c.source} has no value`);
  return v;
}

function prepare(dialect: SqlDialect, target: MirrorTarget, op: MirrorOp): Prepared {
  const bound = target.columns.filter((c) => c.bound);
  if (op.op === 'delete') {
    const keys = keyColumns(bound).map((c) => dialect.bindValue(c.affinity, keyValue(c, op)));
    const device = target.coalesced ? [target.device_id] : [];
    return { op, params: [...device, ...keys, op.epoch_ordinal, op.epoch_ordinal, op.commit_seq] };
  }
  const values = bound.map((c) =>
    dialect.bindValue(c.affinity, c.key > 0 ? keyValue(c, op) : (op.row?.[c.source] ?? null)),
  );
  return { op, params: [...values, target.device_id, op.commit_seq, op.journal_epoch, op.epoch_ordinal] };
}

async function loadTombstones(
  tx: Tx,
  lineageId: string,
  hashes: readonly string[],
): Promise<Map<string, Position & { pk_hash: string }>> {
  const out = new Map<string, Position & { pk_hash: string }>();
  for (let i = 0; i < hashes.length; i += LOOKUP_CHUNK) {
    const rows = await tx
      .selectFrom('edge_mirror_tombstones')
      .select(['pk_hash', 'epoch_ordinal', 'commit_seq'])
      .where('lineage_id', '=', lineageId)
      .where('pk_hash', 'in', hashes.slice(i, i + LOOKUP_CHUNK))
      .execute();
    for (const r of rows) out.set(r.pk_hash, r);
  }
  return out;
}

/** `INSERT INTO t (columns)` and its `ON CONFLICT … DO UPDATE … WHERE` (position moves forward). */
function upsertParts(target: MirrorTarget): { insert: string; conflict: string } {
  const bound = target.columns.filter((c) => c.bound);
  const t = quoteIdent(target.table);
  const cols = [...bound.map((c) => c.name), ...SYSTEM_COLUMNS].map(quoteIdent);
  const keys = [
    ...(target.coalesced ? ['"device_id"'] : []),
    ...keyColumns(bound).map((c) => quoteIdent(c.name)),
  ];
  const keySet = new Set(keys);
  const set = cols.filter((c) => !keySet.has(c)).map((c) => `${c} = excluded.${c}`);
  return {
    insert: `INSERT INTO ${t} (${cols.join(', ')})`,
    conflict:
      `ON CONFLICT (${keys.join(', ')}) DO UPDATE SET ${set.join(', ')} ` +
      `WHERE ${t}."source_epoch_ordinal" < excluded."source_epoch_ordinal" OR ` +
      `(${t}."source_epoch_ordinal" = excluded."source_epoch_ordinal" AND ${t}."source_commit_seq" < excluded."source_commit_seq")`,
  };
}

function upsertSql(dialect: SqlDialect, target: MirrorTarget, rows: number): string {
  const width = target.columns.filter((c) => c.bound).length + SYSTEM_COLUMNS.length;
  let p = 0;
  const tuple = () => `(${Array.from({ length: width }, () => dialect.placeholder(++p)).join(', ')})`;
  const values = Array.from({ length: rows }, tuple).join(', ');
  const { insert, conflict } = upsertParts(target);
  return `${insert} VALUES ${values} ${conflict}`;
}

function deleteSql(dialect: SqlDialect, target: MirrorTarget, rows: number): string {
  const keys = [
    ...(target.coalesced ? ['"device_id"'] : []),
    ...keyColumns(target.columns.filter((c) => c.bound)).map((c) => quoteIdent(c.name)),
  ];
  let p = 0;
  const one = () => {
    const k = keys.map((c) => `${c} = ${dialect.placeholder(++p)}`).join(' AND ');
    const e1 = dialect.placeholder(++p);
    const e2 = dialect.placeholder(++p);
    const s = dialect.placeholder(++p);
    return `(${k} AND ("source_epoch_ordinal" < ${e1} OR ("source_epoch_ordinal" = ${e2} AND "source_commit_seq" < ${s})))`;
  };
  return `DELETE FROM ${quoteIdent(target.table)} WHERE ${Array.from({ length: rows }, one).join(' OR ')}`;
}

const SYSTEM_AFFINITY = {
  device_id: 'TEXT',
  source_commit_seq: 'INTEGER',
  source_journal_epoch: 'TEXT',
  source_epoch_ordinal: 'INTEGER',
} as const;

/**
 * PostgreSQL: `INSERT … SELECT * FROM unnest($1::bigint[], …)`, one array parameter per column,
 * the same text for any number of rows (the parameters of `prepare`, transposed).
 */
function unnestUpsertSql(dialect: SqlDialect, target: MirrorTarget): string {
  const bound = target.columns.filter((c) => c.bound);
  const affinities = [...bound.map((c) => c.affinity), ...SYSTEM_COLUMNS.map((c) => SYSTEM_AFFINITY[c])];
  const arrays = affinities.map((a, i) => `${dialect.placeholder(i + 1)}::${dialect.arrayType!(a)}`);
  const { insert, conflict } = upsertParts(target);
  return `${insert} SELECT * FROM unnest(${arrays.join(', ')}) ${conflict}`;
}

/**
 * PostgreSQL: `DELETE … USING unnest(keys…, epoch ordinals, commit seqs)`: each key is deleted
 * when its row is older than the delete's position.
 */
function unnestDeleteSql(dialect: SqlDialect, target: MirrorTarget): string {
  const keys = [
    ...(target.coalesced ? [{ name: 'device_id', affinity: 'TEXT' as const }] : []),
    ...keyColumns(target.columns.filter((c) => c.bound)),
  ];
  const t = quoteIdent(target.table);
  const arrays = [...keys.map((k) => k.affinity), 'INTEGER' as const, 'INTEGER' as const].map(
    (a, i) => `${dialect.placeholder(i + 1)}::${dialect.arrayType!(a)}`,
  );
  const alias = [...keys.map((_, i) => `"k${i}"`), '"e"', '"s"'];
  // Aliases, not device column names; text keys compare in the column's byte order.
  const match = keys.map(
    (k, i) => `${t}.${quoteIdent(k.name)} = d."k${i}"${k.affinity === 'TEXT' ? ' COLLATE "C"' : ''}`,
  );
  return (
    `DELETE FROM ${t} USING unnest(${arrays.join(', ')}) AS d(${alias.join(', ')}) WHERE ${match.join(' AND ')} ` +
    `AND (${t}."source_epoch_ordinal" < d."e" OR (${t}."source_epoch_ordinal" = d."e" AND ${t}."source_commit_seq" < d."s"))`
  );
}

/** The i-th parameter of every item, as one array. */
const column = (items: readonly Prepared[], i: number): DbValue[] => items.map((x) => x.params[i] as DbValue);

async function writeUpserts(tx: Tx, dialect: SqlDialect, target: MirrorTarget, items: readonly Prepared[]) {
  if (!dialect.arrayType)
    return inChunks(tx, dialect, items, MAX_UPSERT_ROWS, (n) => upsertSql(dialect, target, n));
  if (items.length === 0) return;
  const sql = unnestUpsertSql(dialect, target);
  const width = items[0]!.params.length;
  for (let i = 0; i < items.length; i += MAX_UPSERT_ROWS) {
    const chunk = items.slice(i, i + MAX_UPSERT_ROWS);
    await dialect.exec(
      tx,
      sql,
      Array.from({ length: width }, (_, j) => column(chunk, j)),
    );
  }
}

async function writeDeletes(tx: Tx, dialect: SqlDialect, target: MirrorTarget, items: readonly Prepared[]) {
  if (!dialect.arrayType)
    return inChunks(tx, dialect, items, MAX_DELETE_ROWS, (n) => deleteSql(dialect, target, n));
  if (items.length === 0) return;
  const sql = unnestDeleteSql(dialect, target);
  // Delete parameters: keys…, epoch ordinal, epoch ordinal again, commit_seq (see deleteSql).
  const width = items[0]!.params.length;
  const take = [...Array.from({ length: width - 3 }, (_, j) => j), width - 3, width - 1];
  for (let i = 0; i < items.length; i += MAX_UPSERT_ROWS) {
    const chunk = items.slice(i, i + MAX_UPSERT_ROWS);
    await dialect.exec(
      tx,
      sql,
      take.map((j) => column(chunk, j)),
    );
  }
}

async function inChunks(
  tx: Tx,
  dialect: SqlDialect,
  items: readonly Prepared[],
  maxRows: number,
  sqlFor: (rows: number) => string,
): Promise<void> {
  if (items.length === 0) return;
  const perRow = items[0]!.params.length;
  const size = Math.max(1, Math.min(maxRows, Math.floor(dialect.maxParams / perRow)));
  for (let i = 0; i < items.length; i += size) {
    const chunk = items.slice(i, i + size);
    await dialect.exec(
      tx,
      sqlFor(chunk.length),
      chunk.flatMap((x) => x.params),
    );
  }
}

/** Write prepared changes (one per key). Throws on any database error. */
async function writePrepared(tx: Tx, dialect: SqlDialect, target: MirrorTarget, items: readonly Prepared[]) {
  const tombstones = await loadTombstones(
    tx,
    target.lineage_id,
    items.map((x) => x.op.pk_hash),
  );
  // A change at or before a key's tombstone is already superseded by that delete.
  const live = items.filter((x) => {
    const t = tombstones.get(x.op.pk_hash);
    return !t || isAfter(x.op, t);
  });
  const upserts = live.filter((x) => x.op.op !== 'delete');
  const deletes = live.filter((x) => x.op.op === 'delete');
  await writeUpserts(tx, dialect, target, upserts);
  await writeDeletes(tx, dialect, target, deletes);

  const revived = upserts.filter((x) => tombstones.has(x.op.pk_hash)).map((x) => x.op.pk_hash);
  for (let i = 0; i < revived.length; i += LOOKUP_CHUNK) {
    await tx
      .deleteFrom('edge_mirror_tombstones')
      .where('lineage_id', '=', target.lineage_id)
      .where('pk_hash', 'in', revived.slice(i, i + LOOKUP_CHUNK))
      .execute();
  }
  await writeTombstones(
    tx,
    target.lineage_id,
    deletes.map((x) => ({
      pk_hash: x.op.pk_hash,
      epoch_ordinal: x.op.epoch_ordinal,
      commit_seq: x.op.commit_seq,
    })),
  );
}

/** A delete at this position per key: later changes at or before it are superseded. */
async function writeTombstones(
  tx: Tx,
  lineageId: string,
  items: readonly (Position & { pk_hash: string })[],
): Promise<void> {
  for (let i = 0; i < items.length; i += LOOKUP_CHUNK) {
    await tx
      .insertInto('edge_mirror_tombstones')
      .values(
        items.slice(i, i + LOOKUP_CHUNK).map((x) => ({
          lineage_id: lineageId,
          pk_hash: x.pk_hash,
          epoch_ordinal: x.epoch_ordinal,
          commit_seq: x.commit_seq,
        })),
      )
      .onConflict((oc) =>
        oc
          .columns(['lineage_id', 'pk_hash'])
          .doUpdateSet((eb) => ({
            epoch_ordinal: eb.ref('excluded.epoch_ordinal'),
            commit_seq: eb.ref('excluded.commit_seq'),
          }))
          .where((eb) =>
            eb.or([
              eb('edge_mirror_tombstones.epoch_ordinal', '<', eb.ref('excluded.epoch_ordinal')),
              eb.and([
                eb('edge_mirror_tombstones.epoch_ordinal', '=', eb.ref('excluded.epoch_ordinal')),
                eb('edge_mirror_tombstones.commit_seq', '<', eb.ref('excluded.commit_seq')),
              ]),
            ]),
          ),
      )
      .execute();
  }
}

/** The rows of this lineage in the target (a coalesced table: only its device's rows). */
function lineageFilter(
  dialect: SqlDialect,
  target: MirrorTarget,
  first: number,
): { sql: string; params: unknown[] } {
  return target.coalesced
    ? { sql: `"device_id" = ${dialect.placeholder(first)}`, params: [target.device_id] }
    : { sql: 'TRUE', params: [] };
}

/**
 * Read this lineage's mirror rows back in wire form: the key (source column names) and the
 * given columns, re-encoded with the codec so they compare with what the device sends. `before`
 * (optional) keeps the rows last changed before that position.
 */
export async function readMirrorRows(
  tx: Tx,
  dialect: SqlDialect,
  target: MirrorTarget,
  columns: readonly MirrorColumn[],
  before?: Position,
): Promise<{ pk: Record<string, WireValue>; row: Record<string, WireValue> }[]> {
  const keys = keyColumns(target.columns.filter((c) => c.bound));
  const cols = [...keys, ...columns];
  const f = lineageFilter(dialect, target, 1);
  const p = f.params.length;
  const params: unknown[] = [...f.params];
  let where = f.sql;
  if (before) {
    const e1 = dialect.placeholder(p + 1);
    const e2 = dialect.placeholder(p + 2);
    const s = dialect.placeholder(p + 3);
    where += ` AND ("source_epoch_ordinal" < ${e1} OR ("source_epoch_ordinal" = ${e2} AND "source_commit_seq" < ${s}))`;
    params.push(before.epoch_ordinal, before.epoch_ordinal, before.commit_seq);
  }
  // Aliases c0..cN: column names are device data; we never echo them as SQL aliases.
  const select = cols.map((c, i) => `${quoteIdent(c.name)} AS "c${i}"`).join(', ');
  const rows = await dialect.execExact(
    tx,
    `SELECT ${select} FROM ${quoteIdent(target.table)} WHERE ${where}`,
    params,
  );
  return rows.map((r) => {
    const pk: Record<string, WireValue> = {};
    const row: Record<string, WireValue> = {};
    cols.forEach((c, i) => {
      const v = dialect.toWire(c.affinity, r[`c${i}`]);
      if (i < keys.length) pk[c.source] = v;
      else row[c.source] = v;
    });
    return { pk, row };
  });
}

/**
 * A sweep: every row of the lineage last changed before (sweep epoch, since_commit_seq) — an
 * older epoch, or an older change of this one — and, when buckets are named, whose key falls in
 * one of them, is gone from the device: delete it and leave a tombstone just below the sweep's
 * position, so a late change from before the resync cannot bring it back. The bucket is computed
 * here, from the key read back and re-encoded, exactly as the device computes it.
 */
async function sweepRows(tx: Tx, dialect: SqlDialect, target: MirrorTarget, op: MirrorOp): Promise<number> {
  const spec = op.sweep!;
  const at: Position = { epoch_ordinal: op.epoch_ordinal, commit_seq: spec.since_commit_seq };
  const only = spec.buckets === null ? null : new Set(spec.buckets);
  const rows = await readMirrorRows(tx, dialect, target, [], at);
  const gone: Prepared[] = [];
  const keys = keyColumns(target.columns.filter((c) => c.bound));
  for (const { pk } of rows) {
    if (only && !only.has(bucketOf(pk))) continue;
    const del: MirrorOp = {
      ...op,
      op: 'delete',
      pk,
      row: null,
      pk_hash: pkHash(pk),
      commit_seq: at.commit_seq,
    };
    const params = [
      ...(target.coalesced ? [target.device_id] : []),
      ...keys.map((c) => dialect.bindValue(c.affinity, pk[c.source] ?? null)),
      at.epoch_ordinal,
      at.epoch_ordinal,
      at.commit_seq,
    ];
    gone.push({ op: del, params });
  }
  await writeDeletes(tx, dialect, target, gone);
  await writeTombstones(
    tx,
    target.lineage_id,
    gone.map((g) => ({
      pk_hash: g.op.pk_hash,
      epoch_ordinal: at.epoch_ordinal,
      commit_seq: at.commit_seq - 1,
    })),
  );
  return gone.length;
}

/**
 * Materialize changes, sweeps in their place: the changes before a sweep are written first, the
 * sweep runs, then the changes after it.
 */
export async function materialize(
  tx: Tx,
  dialect: SqlDialect,
  target: MirrorTarget,
  ops: readonly MirrorOp[],
): Promise<WriteResult> {
  if (!ops.some((o) => o.op === 'sweep')) return materializeChanges(tx, dialect, target, ops);
  let applied = 0;
  const failures: RowFailure[] = [];
  let segment: MirrorOp[] = [];
  const flush = async () => {
    const r = await materializeChanges(tx, dialect, target, segment);
    applied += r.applied;
    failures.push(...r.failures);
    segment = [];
  };
  for (const op of ops) {
    if (op.op !== 'sweep') {
      segment.push(op);
      continue;
    }
    await flush();
    try {
      await withSavepoint(tx, dialect, 'sluice_mirror_sweep', () => sweepRows(tx, dialect, target, op));
      applied++;
    } catch (err) {
      if (dialect.classifyError(err) === 'transient') throw err;
      failures.push({ op, err });
    }
  }
  await flush();
  return { applied, failures };
}

/**
 * Materialize changes into the target table. Values that cannot be converted, and rows the
 * database refuses permanently (constraint, type), come back as failures; everything else is
 * written. Transient errors are thrown: the caller's transaction is retried as a whole.
 */
async function materializeChanges(
  tx: Tx,
  dialect: SqlDialect,
  target: MirrorTarget,
  ops: readonly MirrorOp[],
): Promise<WriteResult> {
  const failures: RowFailure[] = [];
  const prepared: Prepared[] = [];
  if (ops.length === 0) return { applied: 0, failures };
  for (const op of latestPerKey(ops)) {
    try {
      prepared.push(prepare(dialect, target, op));
    } catch (err) {
      failures.push({ op, err });
    }
  }
  if (prepared.length === 0) return { applied: 0, failures };
  try {
    await withSavepoint(tx, dialect, 'sluice_mirror_batch', () =>
      writePrepared(tx, dialect, target, prepared),
    );
    return { applied: prepared.length, failures };
  } catch (err) {
    if (dialect.classifyError(err) === 'transient') throw err;
    // The table itself is unusable: every row fails the same way, no need to try them one by one.
    if (dialect.isMissingTable(err) || prepared.length === 1) {
      return { applied: 0, failures: [...failures, ...prepared.map((x) => ({ op: x.op, err }))] };
    }
  }
  // Isolate the rows the database refuses so that the others still land.
  let applied = 0;
  for (const item of prepared) {
    try {
      await withSavepoint(tx, dialect, 'sluice_mirror_row', () => writePrepared(tx, dialect, target, [item]));
      applied++;
    } catch (err) {
      if (dialect.classifyError(err) === 'transient') throw err;
      failures.push({ op: item.op, err });
    }
  }
  return { applied, failures };
}
