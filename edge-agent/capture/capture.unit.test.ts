import Database from 'better-sqlite3';
import { validateRowBatch } from '../../domain/protocol/contracts';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { buildRowBatch } from '../publish/row-batch';
import { reconcile, type ReconcileOptions } from './install';
import { Journal } from './journal';
import { readTableSchema } from './schema';
import { quoteIdent, triggerSql } from './sql';

let n = 0;
const epoch = () => `0190a000-0000-7000-8000-${String(++n).padStart(12, '0')}`;
const rowsOpts: ReconcileOptions = { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: epoch };

/** A journal reading `db` the way the agent does: reconciling whenever the schema changed. */
function journalOf(db: Database.Database, opts: ReconcileOptions = rowsOpts): Journal {
  const j = new Journal(db);
  j.onSchemaChanged = () => {
    const res = reconcile(db, opts);
    j.setRegistry(res.registry, res.schemaVersion);
  };
  j.onSchemaChanged();
  return j;
}

function changes(db: Database.Database, table: string, after = 0) {
  const j = journalOf(db);
  const c = j.counters().find((x) => x.name === table)!;
  return j.read(c.tid, after, 1000)!.changes;
}

const HOSTILE = [
  'we"ird',
  "it's; DROP TABLE victims; --",
  'naïve 表 😀',
  'with space',
  '"',
  'x"); DELETE FROM t; --',
];

describe('capture triggers', () => {
  it.each(HOSTILE)('captures a table and columns named %j without breaking out of the identifier', (name) => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE victims (id INTEGER PRIMARY KEY)');
    db.exec(
      `CREATE TABLE ${quoteIdent(name)} (${quoteIdent(name + 'k')} TEXT PRIMARY KEY, ${quoteIdent(name)} INTEGER, "v; --" TEXT)`,
    );
    const res = reconcile(db, rowsOpts);
    expect(res.installed).toEqual(expect.arrayContaining([name, 'victims']));
    const t = quoteIdent(name);
    db.prepare(`INSERT INTO ${t} VALUES (?, ?, ?)`).run("k'1", 7, 'a"b');
    // Values are read when the batch is built: each step is read before the next.
    expect(changes(db, name)).toEqual([
      {
        commit_seq: 1,
        op: 'insert',
        pk: { [name + 'k']: "k'1" },
        row: { [name + 'k']: "k'1", [name]: 7, 'v; --': 'a"b' },
      },
    ]);
    db.prepare(`UPDATE ${t} SET ${quoteIdent(name)} = 8`).run();
    expect(changes(db, name, 1)).toEqual([
      {
        commit_seq: 2,
        op: 'update',
        pk: { [name + 'k']: "k'1" },
        row: { [name + 'k']: "k'1", [name]: 8, 'v; --': 'a"b' },
      },
    ]);
    db.prepare(`DELETE FROM ${t}`).run();
    expect(db.prepare('SELECT count(*) FROM victims').pluck().get()).toBe(0);
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'victims'").pluck().get()).toBe(1);
    // Read now, the insert and the update find their row gone: they travel as deletes.
    expect(changes(db, name)).toEqual(
      [1, 2, 3].map((seq) => ({
        commit_seq: seq,
        op: 'delete',
        pk: { [name + 'k']: "k'1" },
        row: null,
      })),
    );
  });

  it('quotes every identifier in the generated SQL', () => {
    const db = new Database(':memory:');
    db.exec(`CREATE TABLE "a""b" ("c""d" INTEGER PRIMARY KEY, "e;f" TEXT)`);
    const sql = triggerSql(3, readTableSchema(db, 'a"b')!);
    expect(sql.ins).toContain('AFTER INSERT ON "a""b"');
    expect(sql.ins).toContain('NEW."c""d"');
    expect(sql.del).toContain('OLD."c""d"');
    // Key columns only: no value is ever formatted by the application's SQLite.
    for (const text of Object.values(sql)) {
      expect(text).not.toContain('"e;f"');
      expect(text).not.toMatch(/json|quote\(|printf|hex\(/i);
    }
  });

  it('journals a key change as delete + insert, composite keys in key order', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE oe (note TEXT, line INTEGER, order_id TEXT, PRIMARY KEY (order_id, line))');
    reconcile(db, rowsOpts);
    db.prepare("INSERT INTO oe VALUES ('n', 1, 'A')").run();
    db.prepare("UPDATE oe SET line = 2 WHERE order_id = 'A'").run();
    const got = changes(db, 'oe');
    expect(got.map((c) => [c.commit_seq, c.op, c.pk])).toEqual([
      [1, 'delete', { order_id: 'A', line: 1 }], // the inserted row is gone (its key changed)
      [2, 'delete', { order_id: 'A', line: 1 }],
      [3, 'insert', { order_id: 'A', line: 2 }],
    ]);
    expect(Object.keys(got[0]!.pk)).toEqual(['order_id', 'line']);
  });

  it('skips tables without an explicit primary key, ignored tables and its own', () => {
    const db = new Database(':memory:');
    db.exec(
      'CREATE TABLE nokey (a, b); CREATE TABLE scratch (id INTEGER PRIMARY KEY); CREATE TABLE ok (id INTEGER PRIMARY KEY)',
    );
    const res = reconcile(db, { ...rowsOpts, strategyOf: (t) => (t === 'scratch' ? 'ignore' : 'rows') });
    expect(res.skipped).toEqual([
      { table: 'nokey', reason: 'no_primary_key' },
      { table: 'scratch', reason: 'ignored' },
    ]);
    expect(res.registry.map((r) => r.name)).toEqual(['ok']);
  });

  it('is idempotent: a second reconcile changes nothing', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    reconcile(db, rowsOpts);
    const v = db.pragma('schema_version', { simple: true });
    const again = reconcile(db, rowsOpts);
    expect(again.installed).toEqual([]);
    expect(db.pragma('schema_version', { simple: true })).toBe(v);
  });

  it('detects drift: a new column gets a new schema version and hash, triggers stay, rows read under the new schema', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const first = reconcile(db, rowsOpts).registry[0]!;
    db.prepare("INSERT INTO t VALUES (1, 'a')").run();
    db.exec('ALTER TABLE t ADD COLUMN w REAL');
    const second = reconcile(db, rowsOpts);
    expect(second.installed).toEqual([]); // triggers name key columns only
    expect(second.changed).toEqual(['t']);
    expect(second.resyncs).toEqual([]); // no DEFAULT: existing rows did not change
    expect(second.registry[0]!.hash).not.toBe(first.hash);
    expect(second.registry[0]!.epoch).toBe(first.epoch); // same journal, same epoch
    db.prepare("INSERT INTO t VALUES (2, 'b', 1.5)").run();
    expect(changes(db, 't').map((c) => c.row)).toEqual([
      { id: 1, v: 'a', w: null },
      { id: 2, v: 'b', w: 1.5 },
    ]);
  });

  it('snapshot_on_first_run journals existing rows once, as inserts, in key order', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    db.exec("INSERT INTO t VALUES (3, 'c'), (1, 'a'), (2, 'b')");
    const res = reconcile(db, { ...rowsOpts, snapshotOnFirstRun: true });
    expect(res.snapshotted).toEqual({ t: 3 });
    expect(reconcile(db, { ...rowsOpts, snapshotOnFirstRun: true }).snapshotted).toEqual({});
    db.prepare("INSERT INTO t VALUES (4, 'd')").run();
    expect(changes(db, 't').map((c) => [c.commit_seq, c.op, c.pk.id])).toEqual([
      [1, 'insert', 1],
      [2, 'insert', 2],
      [3, 'insert', 3],
      [4, 'insert', 4],
    ]);
  });

  it("fingerprints a real table exactly like the domain's schemaHash", () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE temps (value REAL, ts TEXT NOT NULL, id INTEGER NOT NULL PRIMARY KEY)');
    const s = readTableSchema(db, 'temps')!;
    expect(s.hash).toBe('3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142');
    expect(s.hash).toBe(schemaHash(s.fingerprint));
  });

  it('builds batches that pass validateRowBatch, within the row and byte caps', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, b BLOB)');
    reconcile(db, rowsOpts);
    const ins = db.prepare('INSERT INTO t (body, b) VALUES (?, ?)');
    for (let i = 0; i < 300; i++) ins.run('x'.repeat(i * 10), Buffer.from([i % 256]));
    const j = journalOf(db);
    const c = j.counters()[0]!;
    let after = 0;
    let batches = 0;
    for (;;) {
      const read = j.read(c.tid, after, 100)!;
      const res = buildRowBatch({
        batchId: '0190a000-0000-7000-8000-000000000001',
        table: 't',
        epoch: c.epoch,
        hash: read.hash,
        fingerprint: read.fingerprint,
        changes: read.changes,
        withSchema: batches === 0,
        maxRows: 100,
        maxBytes: 64 * 1024,
      });
      if (!res.batch) break;
      batches++;
      expect(res.batch.bytes).toBeLessThanOrEqual(64 * 1024);
      expect(res.batch.rowCount).toBeLessThanOrEqual(100);
      const v = validateRowBatch(JSON.parse(res.batch.payload));
      if (!v.ok) throw new Error(v.rejection.message);
      expect(v.value.first_commit_seq).toBe(after + 1);
      expect(Buffer.byteLength(res.batch.payload)).toBe(res.batch.bytes);
      expect(v.value.schema_columns !== undefined).toBe(batches === 1);
      after = res.batch.lastSeq;
    }
    expect(after).toBe(300);
    expect(batches).toBeGreaterThan(3);
  });

  it('refuses a change too large to ever travel (row_too_large, with its key); the rest flows', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)');
    reconcile(db, rowsOpts);
    db.prepare('INSERT INTO t (body) VALUES (?)').run('x'.repeat(10_000));
    db.prepare("INSERT INTO t (body) VALUES ('small')").run();
    const j = journalOf(db);
    const c = j.counters()[0]!;
    const read = j.read(c.tid, 0, 10)!;
    const res = buildRowBatch({
      batchId: '0190a000-0000-7000-8000-000000000001',
      table: 't',
      epoch: c.epoch,
      hash: read.hash,
      fingerprint: read.fingerprint,
      changes: read.changes,
      withSchema: false,
      maxRows: 10,
      maxBytes: 4096,
    });
    expect(res.tooLarge.map((o) => o.seq)).toEqual([1]);
    const v = validateRowBatch(JSON.parse(res.batch!.payload));
    if (!v.ok) throw new Error(v.rejection.message);
    expect(v.value.rows.map((r) => [r.commit_seq, r.op, r.pk, r.refusal?.code])).toEqual([
      [1, 'refused', { id: 1 }, 'row_too_large'],
      [2, 'insert', { id: 2 }, undefined],
    ]);
  });
});
