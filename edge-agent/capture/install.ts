import type Database from 'better-sqlite3';
import { listUserTables, readTableSchema, type TableSchema } from './schema';
import { INFRA_DDL, SCHEMA, SEQ, snapshotSql, TRIGGER_KINDS, triggerName, triggerSql } from './sql';

export type Strategy = 'rows' | 'telemetry' | 'ignore';

/** What a schema version (sv) recorded: enough to read journal rows written under it. */
export type SchemaInfo = Readonly<{
  columns: readonly string[];
  pk: readonly string[];
  fingerprint: TableSchema['fingerprint'];
}>;

/** A table the journal knows (a row of `__sluice_seq`). */
export type RegisteredTable = Readonly<{
  tid: number;
  name: string;
  epoch: string;
  seq: number;
  sv: number | null;
  /** Triggers are installed now (false: table gone, ignored, or without a key; its journal still drains). */
  capturing: boolean;
  hash?: string;
}>;

export type Skipped = Readonly<{ table: string; reason: 'no_primary_key' | 'ignored' | 'telemetry' }>;

export type ReconcileResult = Readonly<{
  registry: readonly RegisteredTable[];
  skipped: readonly Skipped[];
  /** Tables first registered by this run (new journal_epoch). */
  registered: readonly string[];
  /** Tables whose triggers were (re)installed by this run. */
  installed: readonly string[];
  /** Rows journaled by snapshot_on_first_run, per table. */
  snapshotted: Readonly<Record<string, number>>;
}>;

type SeqRow = { tid: number; name: string; seq: number; epoch: string; sv: number | null };

export type ReconcileOptions = Readonly<{
  strategyOf: (table: string) => Strategy;
  snapshotOnFirstRun: boolean;
  newEpoch: () => string;
}>;

/** Create the agent's tables in the application database if they are missing. */
export function ensureInfra(db: Database.Database): void {
  db.transaction(() => INFRA_DDL.forEach((ddl) => db.exec(ddl))).immediate();
}

/**
 * Bring the agent's objects in the application database in line with its current schema:
 * create the journal tables, register new tables (new journal_epoch), record a schema version
 * and (re)install triggers where the table changed, drop triggers of tables that are gone or
 * no longer captured. One IMMEDIATE transaction: the application never writes a row between a
 * table's registration and its triggers, so a snapshot neither misses nor doubles a row.
 */
export function reconcile(db: Database.Database, opts: ReconcileOptions): ReconcileResult {
  const skipped: Skipped[] = [];
  const registered: string[] = [];
  const installed: string[] = [];
  const snapshotted: Record<string, number> = {};
  const hashes = new Map<number, string>();

  const run = db.transaction(() => {
    for (const ddl of INFRA_DDL) db.exec(ddl);
    const seqRows = db.prepare(`SELECT tid, name, seq, epoch, sv FROM ${SEQ}`).all() as SeqRow[];
    const byName = new Map(seqRows.map((r) => [r.name, r]));
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
    const capturing = new Set<number>();

    for (const { name, withoutRowid } of listUserTables(db)) {
      const strategy = opts.strategyOf(name);
      if (strategy !== 'rows') {
        skipped.push({ table: name, reason: strategy === 'ignore' ? 'ignored' : 'telemetry' });
        continue;
      }
      const schema = readTableSchema(db, name, withoutRowid);
      if (!schema || schema.pk.length === 0) {
        skipped.push({ table: name, reason: 'no_primary_key' });
        continue;
      }
      let reg = byName.get(name);
      const isNew = reg === undefined;
      if (!reg) {
        const epoch = opts.newEpoch();
        const tid = Number(
          db.prepare(`INSERT INTO ${SEQ} (name, seq, epoch) VALUES (?, 0, ?)`).run(name, epoch)
            .lastInsertRowid,
        );
        reg = { tid, name, seq: 0, epoch, sv: null };
        byName.set(name, reg);
        registered.push(name);
      }
      const info = JSON.stringify({
        columns: schema.columns,
        pk: schema.pk,
        fingerprint: schema.fingerprint,
      } satisfies SchemaInfo);
      // A new schema version when anything a journal row depends on changed, including a mere
      // column reorder (same hash, different value positions).
      if (reg.sv === null || infoOf.get(reg.sv) !== info) {
        const sv = Number(
          db
            .prepare(`INSERT INTO ${SCHEMA} (tid, hash, info) VALUES (?, ?, ?)`)
            .run(reg.tid, schema.hash, info).lastInsertRowid,
        );
        db.prepare(`UPDATE ${SEQ} SET sv = ? WHERE tid = ?`).run(sv, reg.tid);
        reg = { ...reg, sv };
        byName.set(name, reg);
      }
      hashes.set(reg.tid, schema.hash);
      capturing.add(reg.tid);
      const sqls = triggerSql(reg.tid, reg.sv!, schema);
      for (const kind of TRIGGER_KINDS) expected.set(triggerName(reg.tid, kind), sqls[kind]);
      if (isNew && opts.snapshotOnFirstRun) {
        const n = db.prepare(snapshotSql(reg.tid, reg.sv!, schema)).run().changes;
        db.prepare(`UPDATE ${SEQ} SET seq = seq + ? WHERE tid = ?`).run(n, reg.tid);
        reg = { ...reg, seq: reg.seq + n };
        byName.set(name, reg);
        snapshotted[name] = n;
      }
    }

    const touched = new Set<string>();
    for (const [name, sql] of existing) {
      if (expected.get(name) !== sql) {
        db.exec(`DROP TRIGGER IF EXISTS ${name}`);
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
    const latest = db.prepare(`SELECT tid, name, seq, epoch, sv FROM ${SEQ} ORDER BY tid`).all() as SeqRow[];
    return latest.map((r): RegisteredTable => ({
      ...r,
      capturing: capturing.has(r.tid),
      ...(hashes.has(r.tid) ? { hash: hashes.get(r.tid)! } : {}),
    }));
  });
  const registry = run.immediate();
  return { registry, skipped, registered, installed, snapshotted };
}

/**
 * Journal every current row of a captured table as an insert at the end of its journal, under
 * its current schema version, in one IMMEDIATE transaction (the same statement as
 * snapshot_on_first_run). Used after a retention gap, so the cloud converges on the rows as they
 * are now. Returns the rows journaled and the table's counter after them, or undefined when the
 * table is not captured any more.
 */
export function journalSnapshot(
  db: Database.Database,
  tid: number,
): { rows: number; seq: number } | undefined {
  return db
    .transaction(() => {
      const reg = db.prepare(`SELECT name, sv FROM ${SEQ} WHERE tid = ?`).get(tid) as
        { name: string; sv: number | null } | undefined;
      if (!reg || reg.sv === null) return undefined;
      const info = db.prepare(`SELECT info FROM ${SCHEMA} WHERE sv = ?`).pluck().get(reg.sv) as
        string | undefined;
      const schema = readTableSchema(db, reg.name);
      if (!info || !schema) return undefined;
      const recorded = JSON.parse(info) as SchemaInfo;
      // Only under the schema the triggers capture with: after drift, the next reconcile comes first.
      if (recorded.columns.join('\u0000') !== schema.columns.join('\u0000')) return undefined;
      const rows = db.prepare(snapshotSql(tid, reg.sv, schema)).run().changes;
      db.prepare(`UPDATE ${SEQ} SET seq = seq + ? WHERE tid = ?`).run(rows, tid);
      const seq = db.prepare(`SELECT seq FROM ${SEQ} WHERE tid = ?`).pluck().get(tid) as number;
      return { rows, seq };
    })
    .immediate();
}
