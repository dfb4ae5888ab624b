import type Database from 'better-sqlite3';
import { bucketOf, encodeSqliteValue, type SqliteValue } from '../../domain/protocol/wire-values';
import type { WireValue } from '../../domain/protocol/contracts';
import { listUserTables, readTableSchema, type TableSchema } from './schema';
import {
  INFRA_DDL,
  keyColumns,
  logDdl,
  logTable,
  quoteIdent,
  SCHEMA,
  SEQ,
  snapshotSql,
  TRIGGER_KINDS,
  triggerName,
  triggerSql,
} from './sql';
import { convertOldJournal } from './upgrade';

export type Strategy = 'rows' | 'telemetry' | 'ignore';

/** What a schema version (sv) recorded. */
export type SchemaInfo = Readonly<{
  columns: readonly string[];
  pk: readonly string[];
  /** DEFAULT of each column (absent in versions recorded by older agents). */
  defaults?: readonly (string | null)[];
  fingerprint: TableSchema['fingerprint'];
}>;

/** A table the agent knows (a row of `__sluice_seq`). */
export type RegisteredTable = Readonly<{
  tid: number;
  name: string;
  epoch: string;
  sv: number | null;
  /** Key columns of its change log (k0…), in PRIMARY KEY order. */
  keys: readonly string[];
  /** Triggers are installed now (false: table gone, ignored, or without a key; its log still drains). */
  capturing: boolean;
  /** The table's schema now (undefined: the table is gone). */
  schema?: TableSchema;
  /** Hash of the schema the table has now, or of the last one recorded when it is gone. */
  hash?: string;
  fingerprint?: TableSchema['fingerprint'];
}>;

export type Skipped = Readonly<{ table: string; reason: 'no_primary_key' | 'ignored' | 'telemetry' }>;

export type ResyncReason = 'key_changed' | 'recreated' | 'values_changed' | 'gap' | 'control';

/** A resync journaled: every current row as an insert (firstSeq…sweepSeq-1), then the sweep. */
export type ResyncDone = Readonly<{
  table: string;
  tid: number;
  resyncId: string;
  reason: ResyncReason;
  rows: number;
  firstSeq: number;
  sweepSeq: number;
}>;

export type ReconcileResult = Readonly<{
  registry: readonly RegisteredTable[];
  skipped: readonly Skipped[];
  /** Tables first registered by this run (new journal_epoch). */
  registered: readonly string[];
  /** Tables whose triggers were (re)installed by this run. */
  installed: readonly string[];
  /** Tables whose schema differs from the one last recorded (their next batch carries schema_columns). */
  changed: readonly string[];
  /** Rows journaled by snapshot_on_first_run (or of a table enrolled later), per table. */
  snapshotted: Readonly<Record<string, number>>;
  /** Resyncs started because a DDL changed values of rows that did not change. */
  resyncs: readonly ResyncDone[];
  /** Entries converted from the old JSON journal, per table. */
  converted: Readonly<Record<string, number>>;
  /** PRAGMA schema_version at the end of the reconcile (inside its transaction). */
  schemaVersion: number;
}>;

type SeqRow = { tid: number; name: string; epoch: string; sv: number | null; keys: string | null };

export type ReconcileOptions = Readonly<{
  strategyOf: (table: string) => Strategy;
  snapshotOnFirstRun: boolean;
  newEpoch: () => string;
  /** Id of a resync the agent starts itself (default: newEpoch, a UUIDv7). */
  newResyncId?: () => string;
}>;

/** Create the agent's tables in the application database if they are missing. */
export function ensureInfra(db: Database.Database): void {
  db.transaction(() => infra(db)).immediate();
}

function infra(db: Database.Database): void {
  for (const ddl of INFRA_DDL) db.exec(ddl);
  // __sluice_seq of agents before per-table logs has no `keys` column.
  const cols = (db.prepare(`SELECT name FROM pragma_table_info('${SEQ}')`).pluck().all() as string[]) ?? [];
  if (!cols.includes('keys')) db.exec(`ALTER TABLE ${SEQ} ADD COLUMN keys TEXT`);
}

const sameList = (a: readonly unknown[], b: readonly unknown[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Why a DDL between two recorded schemas changed values of rows that did not change, if it did:
 * a column added with a non-NULL DEFAULT (existing rows read the default), or a column gone while
 * another appeared (a RENAME looks the same as a DROP + ADD from outside, and a rename changes the
 * values under each name).
 */
export function valuesChangedBy(before: SchemaInfo, now: TableSchema): boolean {
  const old = new Set(before.columns);
  const added = now.columns.filter((c) => !old.has(c));
  const kept = new Set(now.columns);
  const removed = before.columns.filter((c) => !kept.has(c));
  if (added.length > 0 && removed.length > 0) return true;
  // SQLite cannot reorder columns: kept columns in another order mean one was dropped and added
  // again (its values are gone).
  const keptOld = before.columns.filter((c) => kept.has(c));
  const keptNow = now.columns.filter((c) => old.has(c));
  if (!sameList(keptOld, keptNow)) return true;
  return added.some((c) => {
    const d = now.defaults[now.columns.indexOf(c)];
    return d !== null && d !== undefined && d.toUpperCase() !== 'NULL';
  });
}

/**
 * Bring the agent's objects in the application database in line with its current schema:
 * convert an old JSON journal, register new tables (new journal_epoch, a change log), record a
 * schema version where the table changed, (re)install triggers, drop triggers of tables that are
 * gone or no longer captured, and start a resync of every table whose values a DDL changed
 * without a change being journaled (see valuesChangedBy; a key change; a table dropped and
 * created again, seen by its triggers being gone). One IMMEDIATE transaction: the application
 * never writes a row between a table's registration and its triggers, or between a DDL's
 * reconcile and its resync, so nothing is missed or doubled.
 */
export function reconcile(db: Database.Database, opts: ReconcileOptions): ReconcileResult {
  const skipped: Skipped[] = [];
  const registered: string[] = [];
  const installed: string[] = [];
  const changed: string[] = [];
  const snapshotted: Record<string, number> = {};
  const resyncs: ResyncDone[] = [];
  const newResyncId = opts.newResyncId ?? opts.newEpoch;
  let converted: Record<string, number> = {};
  let schemaVersion = 0;

  const run = db.transaction(() => {
    infra(db);
    converted = convertOldJournal(db);
    const seqRows = db.prepare(`SELECT tid, name, epoch, sv, keys FROM ${SEQ}`).all() as SeqRow[];
    const byName = new Map(seqRows.map((r) => [r.name, r]));
    const enrolledBefore = seqRows.length > 0;
    const infoOf = db.prepare(`SELECT info FROM ${SCHEMA} WHERE sv = ?`).pluck();
    const existing = new Map(
      (
        db
          .prepare(
            `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_\\_sluice\\_%' ESCAPE '\\'`,
          )
          .all() as { name: string; sql: string }[]
      ).map((t) => [t.name, t.sql]),
    );
    const expected = new Map<string, string>();
    const current = new Map<number, TableSchema>();
    const capturing = new Set<number>();
    const pendingResync: { tid: number; schema: TableSchema; reason: ResyncReason }[] = [];

    for (const { name, withoutRowid } of listUserTables(db)) {
      const schema = readTableSchema(db, name, withoutRowid);
      const strategy = opts.strategyOf(name);
      const known = byName.get(name);
      if (known && schema) current.set(known.tid, schema);
      if (strategy !== 'rows') {
        skipped.push({ table: name, reason: strategy === 'ignore' ? 'ignored' : 'telemetry' });
        continue;
      }
      if (!schema || schema.pk.length === 0) {
        skipped.push({ table: name, reason: 'no_primary_key' });
        continue;
      }
      let reg = known;
      const isNew = reg === undefined;
      if (!reg) {
        const epoch = opts.newEpoch();
        const tid = Number(
          db
            .prepare(`INSERT INTO ${SEQ} (name, seq, epoch, keys) VALUES (?, 0, ?, ?)`)
            .run(name, epoch, JSON.stringify(schema.pk)).lastInsertRowid,
        );
        db.exec(logDdl(tid, schema.pk.length));
        reg = { tid, name, epoch, sv: null, keys: JSON.stringify(schema.pk) };
        byName.set(name, reg);
        registered.push(name);
        current.set(tid, schema);
      }
      const tid = reg.tid;
      const info = JSON.stringify({
        columns: schema.columns,
        pk: schema.pk,
        defaults: schema.defaults,
        fingerprint: schema.fingerprint,
      } satisfies SchemaInfo);
      const recordedText = reg.sv === null ? undefined : (infoOf.get(reg.sv) as string | undefined);
      const recorded = recordedText ? (JSON.parse(recordedText) as SchemaInfo) : undefined;
      const keys = reg.keys ? (JSON.parse(reg.keys) as string[]) : schema.pk;
      if (!reg.keys) {
        // Registered by an agent that had no per-table log for it (nothing to convert).
        db.exec(logDdl(tid, keys.length));
        db.prepare(`UPDATE ${SEQ} SET keys = ? WHERE tid = ?`).run(JSON.stringify(keys), tid);
        reg = { ...reg, keys: JSON.stringify(keys) };
        byName.set(name, reg);
      }
      const triggersPresent = TRIGGER_KINDS.every((k) => existing.has(triggerName(tid, k)));

      let reason: ResyncReason | undefined;
      if (!isNew) {
        if (!sameList(keys, schema.pk)) reason = 'key_changed';
        else if (!triggersPresent) reason = 'recreated';
        else if (recorded && valuesChangedBy(recorded, schema)) reason = 'values_changed';
      }
      // A recorded schema compares column lists and defaults too: a reorder or a new DEFAULT is a
      // new version even when the hash (names, affinities, key, NOT NULL) is the same.
      const recordedSame =
        recorded !== undefined &&
        sameList(recorded.columns, schema.columns) &&
        sameList(recorded.pk, schema.pk) &&
        sameList(recorded.defaults ?? [], schema.defaults) &&
        JSON.stringify(recorded.fingerprint) === JSON.stringify(schema.fingerprint);
      if (!recordedSame) {
        const sv = Number(
          db.prepare(`INSERT INTO ${SCHEMA} (tid, hash, info) VALUES (?, ?, ?)`).run(tid, schema.hash, info)
            .lastInsertRowid,
        );
        db.prepare(`UPDATE ${SEQ} SET sv = ? WHERE tid = ?`).run(sv, tid);
        reg = { ...reg, sv };
        byName.set(name, reg);
        if (!isNew) changed.push(name);
      }
      if (reason === 'key_changed') {
        // The pending entries name keys of the old key columns: no batch could carry them under
        // the new schema. The resync below journals every row under the new key and its sweep
        // removes what the old entries would have, so they are dropped (commit_seq never goes
        // back: the resync continues after the largest seq the old log held).
        const max = (db
          .prepare(`SELECT coalesce(max(seq), 0) FROM ${logTable(tid)}`)
          .pluck()
          .get() ?? 0) as number;
        db.exec(`DROP TABLE ${logTable(tid)}`);
        db.exec(logDdl(tid, schema.pk.length));
        if (max > 0) db.prepare(`INSERT INTO ${logTable(tid)} (seq, op) VALUES (?, 'X')`).run(max);
        db.prepare(`UPDATE ${SEQ} SET keys = ? WHERE tid = ?`).run(JSON.stringify(schema.pk), tid);
        reg = { ...reg, keys: JSON.stringify(schema.pk) };
        byName.set(name, reg);
      }
      capturing.add(tid);
      const sqls = triggerSql(tid, schema);
      for (const kind of TRIGGER_KINDS) expected.set(triggerName(tid, kind), sqls[kind]);
      // A table enrolled after the database's first enrolment (created, or given a key or the rows
      // strategy, while capture ran) is snapshotted: rows it got before its triggers existed are
      // changes like any other.
      if (isNew && (opts.snapshotOnFirstRun || enrolledBefore)) {
        snapshotted[name] = db.prepare(snapshotSql(tid, schema)).run().changes;
      }
      if (reason) pendingResync.push({ tid, schema, reason });
    }

    const touched = new Set<string>();
    for (const [name, sql] of existing) {
      if (expected.get(name) !== sql) {
        db.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(name)}`);
        existing.delete(name);
      }
    }
    for (const [name, sql] of expected) {
      if (existing.has(name)) continue;
      db.exec(sql);
      touched.add(name.replace(/_[a-z]+$/, ''));
    }
    for (const r of byName.values()) {
      if (touched.has(`__sluice_t${r.tid}`)) installed.push(r.name);
    }
    for (const p of pendingResync) {
      const reg = [...byName.values()].find((r) => r.tid === p.tid)!;
      const done = journalResync(db, p.tid, p.schema, newResyncId(), null);
      resyncs.push({ table: reg.name, tid: p.tid, reason: p.reason, ...done });
      // A log emptied by a key change held only the placeholder: it is below the resync now.
      db.prepare(`DELETE FROM ${logTable(p.tid)} WHERE op = 'X' AND seq < ?`).run(done.sweepSeq);
    }

    const latest = db.prepare(`SELECT tid, name, epoch, sv, keys FROM ${SEQ} ORDER BY tid`).all() as SeqRow[];
    schemaVersion = db.pragma('schema_version', { simple: true }) as number;
    return latest.map((r): RegisteredTable => {
      const schema = current.get(r.tid);
      let hash = schema?.hash;
      let fingerprint = schema?.fingerprint;
      if (!schema && r.sv !== null) {
        const text = infoOf.get(r.sv) as string | undefined;
        if (text) {
          const rec = JSON.parse(text) as SchemaInfo;
          fingerprint = rec.fingerprint;
          hash = (db.prepare(`SELECT hash FROM ${SCHEMA} WHERE sv = ?`).pluck().get(r.sv) as
            string | undefined)!;
        }
      }
      return {
        tid: r.tid,
        name: r.name,
        epoch: r.epoch,
        sv: r.sv,
        keys: r.keys ? (JSON.parse(r.keys) as string[]) : [],
        capturing: capturing.has(r.tid),
        ...(schema ? { schema } : {}),
        ...(hash ? { hash } : {}),
        ...(fingerprint ? { fingerprint } : {}),
      };
    });
  });
  const registry = run.immediate();
  return {
    registry,
    skipped,
    registered,
    installed,
    changed,
    snapshotted,
    resyncs,
    converted,
    schemaVersion,
  };
}

/**
 * Register `__sluice_bucket(name1, value1, name2, value2, …)` on the agent's connection: the
 * verify bucket of a key (bucketOf over its wire encoding), so a resync of some buckets selects
 * its rows in SQL and journals the key values exactly as stored.
 */
const withBucket = new WeakSet<Database.Database>();
export function registerBucketFunction(db: Database.Database): void {
  if (withBucket.has(db)) return;
  withBucket.add(db);
  db.function('__sluice_bucket', { varargs: true, deterministic: true, safeIntegers: true }, (...args) => {
    const pk: Record<string, WireValue> = {};
    for (let i = 0; i + 1 < args.length; i += 2) {
      pk[String(args[i])] = encodeSqliteValue(args[i + 1] as SqliteValue);
    }
    return bucketOf(pk);
  });
}

/**
 * Journal a resync of a table at the end of its log: every current row (of the key `buckets`,
 * or all when null) as an insert, in key order, then one sweep entry whose since_commit_seq is
 * the first of those inserts (its own seq when there were none). Must run inside an IMMEDIATE
 * transaction (the caller's): the rows journaled and the sweep are one point in the table's
 * history. A table that is gone journals only the sweep (every row of it is gone).
 */
export function journalResync(
  db: Database.Database,
  tid: number,
  schema: TableSchema | undefined,
  resyncId: string,
  buckets: readonly number[] | null,
): { resyncId: string; rows: number; firstSeq: number; sweepSeq: number } {
  const log = logTable(tid);
  const next = () => (db.prepare(`SELECT coalesce(max(seq), 0) FROM ${log}`).pluck().get() as number) + 1;
  const firstSeq = next();
  let rows = 0;
  if (schema) {
    if (buckets === null) rows = db.prepare(snapshotSql(tid, schema)).run().changes;
    else if (buckets.length > 0) {
      registerBucketFunction(db);
      const ks = keyColumns(schema.pk.length).join(', ');
      const cols = schema.pk.map((c) => `__s.${quoteIdent(c)}`);
      const args = schema.pk.map((c, i) => `'${c.replaceAll("'", "''")}', ${cols[i]}`).join(', ');
      rows = db
        .prepare(
          `INSERT INTO ${log} (op, ${ks}) SELECT 'I', ${cols.join(', ')} FROM ${quoteIdent(schema.name)} AS __s
           WHERE __sluice_bucket(${args}) IN (${buckets.map((b) => Number(b)).join(', ')}) ORDER BY ${cols.join(', ')}`,
        )
        .run().changes;
    }
  }
  const sweepSeq = next();
  const sweep = { resync_id: resyncId, since_commit_seq: rows > 0 ? firstSeq : sweepSeq, buckets };
  db.prepare(`INSERT INTO ${log} (seq, op, k0) VALUES (?, 'S', ?)`).run(sweepSeq, JSON.stringify(sweep));
  return { resyncId, rows, firstSeq: rows > 0 ? firstSeq : sweepSeq, sweepSeq };
}

/**
 * A resync outside a reconcile (retention gap, `resync` control), in its own IMMEDIATE
 * transaction. Returns undefined when the table is not registered.
 */
export function resyncTable(
  db: Database.Database,
  tid: number,
  resyncId: string,
  buckets: readonly number[] | null,
): { resyncId: string; rows: number; firstSeq: number; sweepSeq: number } | undefined {
  return db
    .transaction(() => {
      const reg = db.prepare(`SELECT name FROM ${SEQ} WHERE tid = ?`).get(tid) as
        { name: string } | undefined;
      if (!reg) return undefined;
      const schema = readTableSchema(db, reg.name);
      return journalResync(db, tid, schema, resyncId, buckets);
    })
    .immediate();
}
