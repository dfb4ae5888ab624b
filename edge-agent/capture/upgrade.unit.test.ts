import Database from 'better-sqlite3';
import { reconcile, type ReconcileOptions } from './install';
import { Journal } from './journal';
import { readTableSchema } from './schema';
import { parseOldArray } from './upgrade';

const EPOCH = '0190a000-0000-7000-8000-00000000e0e0';
const opts: ReconcileOptions = {
  strategyOf: () => 'rows',
  snapshotOnFirstRun: false,
  newEpoch: () => 'new-epoch',
};

/**
 * The objects an agent of the JSON-journal format left in an application database, made the way
 * it made them (its DDL and trigger bodies, verbatim in substance): the application then writes
 * through those old triggers.
 */
function installOldFormat(db: Database.Database, table: string): void {
  const s = readTableSchema(db, table)!;
  db.exec(`CREATE TABLE __sluice_seq (tid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL DEFAULT 0, epoch TEXT NOT NULL, sv INTEGER);
    CREATE TABLE __sluice_schema (sv INTEGER PRIMARY KEY, tid INTEGER NOT NULL, hash TEXT NOT NULL, info TEXT NOT NULL);
    CREATE TABLE __sluice_journal (tid INTEGER NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, sv INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (tid, seq)) WITHOUT ROWID;
    CREATE TABLE __sluice_applying (flag INTEGER);`);
  db.prepare('INSERT INTO __sluice_seq (tid, name, seq, epoch, sv) VALUES (1, ?, 0, ?, 1)').run(table, EPOCH);
  db.prepare('INSERT INTO __sluice_schema (sv, tid, hash, info) VALUES (1, 1, ?, ?)').run(
    s.hash,
    JSON.stringify({ columns: s.columns, pk: s.pk, fingerprint: s.fingerprint }),
  );
  const q = (c: string) => `"${c.replaceAll('"', '""')}"`;
  const val = (ref: string, c: string) =>
    `iif(typeof(${ref}.${q(c)})='blob',json_object('$h',hex(${ref}.${q(c)})),${ref}.${q(c)})`;
  const arr = (ref: string, cols: readonly string[]) =>
    `json_array(${cols.map((c) => val(ref, c)).join(',')})`;
  const append = (op: string, data: string) =>
    `UPDATE __sluice_seq SET seq = seq + 1 WHERE tid = 1; INSERT INTO __sluice_journal (tid, seq, op, sv, data) SELECT 1, seq, '${op}', 1, ${data} FROM __sluice_seq WHERE tid = 1;`;
  const same = s.pk.map((c) => `OLD.${q(c)} IS NEW.${q(c)}`).join(' AND ');
  db.exec(`CREATE TRIGGER __sluice_t1_ins AFTER INSERT ON ${q(table)} BEGIN ${append('I', arr('NEW', s.columns))} END;
    CREATE TRIGGER __sluice_t1_upd AFTER UPDATE ON ${q(table)} WHEN ${same} BEGIN ${append('U', arr('NEW', s.columns))} END;
    CREATE TRIGGER __sluice_t1_key AFTER UPDATE ON ${q(table)} WHEN NOT (${same}) BEGIN ${append('D', arr('OLD', s.pk))} ${append('I', arr('NEW', s.columns))} END;
    CREATE TRIGGER __sluice_t1_del AFTER DELETE ON ${q(table)} BEGIN ${append('D', arr('OLD', s.pk))} END;`);
}

function journalOf(db: Database.Database): Journal {
  const j = new Journal(db);
  j.onSchemaChanged = () => {
    const res = reconcile(db, opts);
    j.setRegistry(res.registry, res.schemaVersion);
  };
  return j;
}

describe('upgrade from the JSON journal', () => {
  it('converts pending entries into the change log, keeping commit_seq, epoch and exact keys', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE o (region TEXT, n INTEGER, k BLOB, v REAL, PRIMARY KEY (region, n, k))');
    installOldFormat(db, 'o');
    const ins = db.prepare('INSERT INTO o VALUES (?, ?, ?, ?)');
    ins.run('eu', 9223372036854775807n, Buffer.from([0, 255]), 1.5); // 1
    ins.run('us', -5n, Buffer.alloc(0), 2.5); // 2
    ins.run('表', 1n, Buffer.from('a'), 3.5); // 3
    db.prepare("DELETE FROM o WHERE region = 'us'").run(); // 4
    db.prepare("UPDATE o SET v = 9.25 WHERE region = 'eu'").run(); // 5
    db.prepare("UPDATE o SET n = 2 WHERE region = '表'").run(); // 6 (D) and 7 (I)
    // The old agent had confirmed and deleted 1..2.
    db.exec('DELETE FROM __sluice_journal WHERE seq <= 2');

    const res = reconcile(db, opts);
    expect(res.converted).toEqual({ o: 5 });
    expect(res.registry[0]).toMatchObject({ tid: 1, name: 'o', epoch: EPOCH, keys: ['region', 'n', 'k'] });
    expect(res.resyncs).toEqual([]);
    const objects = db
      .prepare("SELECT name FROM sqlite_schema WHERE name LIKE '__sluice%' ORDER BY name")
      .pluck()
      .all();
    expect(objects).not.toContain('__sluice_journal');
    expect(objects).not.toContain('__sluice_applying');
    // The converted keys are stored natively, with their storage class.
    expect(
      db
        .prepare('SELECT seq, op, k0, typeof(k1), k1, hex(k2) FROM __sluice_log_1 ORDER BY seq')
        .raw()
        .safeIntegers()
        .all(),
    ).toEqual([
      [3n, 'I', '表', 'integer', 1n, '61'],
      [4n, 'D', 'us', 'integer', -5n, ''],
      [5n, 'U', 'eu', 'integer', 9223372036854775807n, '00FF'],
      [6n, 'D', '表', 'integer', 1n, '61'],
      [7n, 'I', '表', 'integer', 2n, '61'],
    ]);

    const j = journalOf(db);
    j.setRegistry(res.registry, res.schemaVersion);
    const read = j.read(1, 2, 100)!;
    expect(read.changes.map((c) => [c.commit_seq, c.op, c.pk, c.row?.v])).toEqual([
      [3, 'delete', { region: '表', n: 1, k: { $blob: 'YQ==' } }, undefined], // its key changed since
      [4, 'delete', { region: 'us', n: -5, k: { $blob: '' } }, undefined],
      [5, 'update', { region: 'eu', n: { $int: '9223372036854775807' }, k: { $blob: 'AP8=' } }, 9.25],
      [6, 'delete', { region: '表', n: 1, k: { $blob: 'YQ==' } }, undefined],
      [7, 'insert', { region: '表', n: 2, k: { $blob: 'YQ==' } }, 3.5],
    ]);
    // New triggers write the log, and the next commit_seq follows.
    db.prepare("INSERT INTO o VALUES ('new', 1, x'00', 0.5)").run();
    expect(j.read(1, 7, 10)!.changes.map((c) => [c.commit_seq, c.op])).toEqual([[8, 'insert']]);
  });

  it('keeps the counter when nothing was pending: no commit_seq of the epoch is reused', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    installOldFormat(db, 't');
    for (let i = 0; i < 4; i++) db.prepare("INSERT INTO t (v) VALUES ('x')").run();
    db.exec('DELETE FROM __sluice_journal'); // all confirmed
    const res = reconcile(db, opts);
    expect(res.converted).toEqual({ t: 0 });
    const j = journalOf(db);
    j.setRegistry(res.registry, res.schemaVersion);
    expect(j.read(1, 4, 10)!.changes).toEqual([]);
    db.prepare("INSERT INTO t (v) VALUES ('y')").run();
    expect(j.read(1, 4, 10)!.changes.map((c) => [c.commit_seq, c.op, c.pk])).toEqual([
      [5, 'insert', { id: 5 }],
    ]);
  });

  it('parses the old JSON with storage classes (integer literal, REAL, ±Infinity, hex BLOB)', () => {
    expect(parseOldArray('[9223372036854775807,5.0,9.0e+999,-9.0e+999,"a\\"b",{"$h":"00FF"},null]')).toEqual([
      9223372036854775807n,
      5,
      Infinity,
      -Infinity,
      'a"b',
      Buffer.from([0, 255]),
      null,
    ]);
  });
});

describe('commit_seq allocation', () => {
  it('is never reused after confirmed entries are deleted, even when the log is drained', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY)');
    const j = journalOf(db);
    j.onSchemaChanged();
    for (let i = 1; i <= 3; i++) db.prepare('INSERT INTO t VALUES (?)').run(i);
    j.deleteThrough(1, 3);
    expect(j.maxSeq(1)).toBe(3); // the largest entry stays
    db.prepare('INSERT INTO t VALUES (4)').run();
    expect(j.read(1, 3, 10)!.changes.map((c) => c.commit_seq)).toEqual([4]);
    j.deleteThrough(1, 4);
    expect(db.prepare('SELECT seq FROM __sluice_log_1').pluck().all()).toEqual([4]);
  });
});
