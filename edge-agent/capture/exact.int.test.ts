import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type RowChange, validateRowBatch } from '../../domain/protocol/contracts';
import { decodeWireValue, storageClassOf } from '../../domain/protocol/wire-values';
import { tempDir } from '../../tests/support/proc';
import { buildRowBatch } from '../publish/row-batch';
import { reconcile, type ReconcileOptions } from './install';
import { Journal } from './journal';

/**
 * Applications write through other SQLite builds (Python's sqlite3 module, Debian's sqlite3
 * CLI) and through better-sqlite3; whatever they store, the batches the agent builds decode
 * (decodeWireValue) to exactly that: same storage class, same bits, same bytes.
 */

const opts: ReconcileOptions = {
  strategyOf: () => 'rows',
  snapshotOnFirstRun: false,
  newEpoch: () => '0190a000-0000-7000-8000-000000000001',
};

const DDL = `CREATE TABLE v (id INTEGER PRIMARY KEY, u, i INTEGER, t TEXT, b BLOB);
CREATE TABLE k (name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;`;

const BIG_TEXT = 'naïve 表 😀 Ωμέγα '.repeat(4000);

/** The values every writer stores, one row each, as SQL literals (the CLI) and as Python literals. */
const CASES: { id: number; col: 'u' | 'i' | 't' | 'b'; sql: string; py: string; js: unknown }[] = [
  { id: 1, col: 'u', sql: '0.30000000000000004', py: '0.30000000000000004', js: 0.1 + 0.2 },
  { id: 2, col: 'u', sql: '3.141592653589793', py: '3.141592653589793', js: Math.PI },
  { id: 3, col: 'u', sql: '9007199254740992.0', py: '9007199254740992.0', js: 9007199254740992 },
  { id: 4, col: 'u', sql: '1e308', py: '1e308', js: 1e308 },
  { id: 5, col: 'u', sql: '5.0', py: '5.0', js: 5 },
  { id: 6, col: 'u', sql: '-0.0', py: '-0.0', js: -0 },
  { id: 7, col: 'u', sql: '9e999', py: "float('inf')", js: Infinity },
  { id: 8, col: 'u', sql: '-9e999', py: "float('-inf')", js: -Infinity },
  { id: 9, col: 'i', sql: '9223372036854775807', py: '9223372036854775807', js: 9223372036854775807n },
  { id: 10, col: 'i', sql: '-9223372036854775808', py: '-9223372036854775808', js: -9223372036854775808n },
  { id: 11, col: 'u', sql: '9223372036854775807', py: '9223372036854775807', js: 9223372036854775807n },
  { id: 12, col: 'u', sql: '-9223372036854775808', py: '-9223372036854775808', js: -9223372036854775808n },
  { id: 13, col: 'u', sql: '9007199254740993', py: '9007199254740993', js: 9007199254740993n },
  { id: 14, col: 'b', sql: "x''", py: "b''", js: Buffer.alloc(0) },
  {
    id: 15,
    col: 'b',
    sql: "x'0001fe ff'".replace(' ', ''),
    py: "b'\\x00\\x01\\xfe\\xff'",
    js: Buffer.from([0, 1, 254, 255]),
  },
  {
    id: 16,
    col: 't',
    sql: `'${BIG_TEXT}'`,
    py: `${JSON.stringify(BIG_TEXT)}`,
    js: BIG_TEXT,
  },
  { id: 17, col: 't', sql: "'Ωμέγα 表 😀'", py: "'Ωμέγα 表 😀'", js: 'Ωμέγα 表 😀' },
  { id: 18, col: 'u', sql: 'NULL', py: 'None', js: null },
  { id: 19, col: 'u', sql: "'Infinity'", py: "'Infinity'", js: 'Infinity' },
  { id: 20, col: 'u', sql: '42', py: '42', js: 42n },
];
/** Invalid UTF-8 TEXT: in a value (refused, the rest flows) and in a key. */
const INVALID_SQL = [
  "INSERT INTO v (id, t) VALUES (21, CAST(x'41ff42' AS TEXT));",
  "INSERT INTO k (name, n) VALUES (CAST(x'ff41' AS TEXT), 1);",
  "INSERT INTO k (name, n) VALUES ('ok', 2);",
];

type Writer = (path: string) => void;

const writers: [string, Writer][] = [
  [
    "python3's sqlite3 module",
    (path) => {
      const lines = [
        'import sqlite3',
        `c = sqlite3.connect(${JSON.stringify(path)})`,
        ...CASES.map((x) => `c.execute("INSERT INTO v (id, ${x.col}) VALUES (?, ?)", (${x.id}, ${x.py}))`),
        ...INVALID_SQL.map((s) => `c.execute(${JSON.stringify(s)})`),
        'c.commit()',
        'c.close()',
      ];
      execFileSync('python3', ['-c', lines.join('\n')]);
    },
  ],
  [
    "Debian's sqlite3 CLI",
    (path) => {
      const sql = [
        'BEGIN;',
        ...CASES.map((x) => `INSERT INTO v (id, ${x.col}) VALUES (${x.id}, ${x.sql});`),
        ...INVALID_SQL,
        'COMMIT;',
      ].join('\n');
      execFileSync('sqlite3', [path], { input: sql });
    },
  ],
  [
    'better-sqlite3',
    (path) => {
      const db = new Database(path);
      db.transaction(() => {
        for (const x of CASES) db.prepare(`INSERT INTO v (id, ${x.col}) VALUES (?, ?)`).run(x.id, x.js);
        for (const s of INVALID_SQL) db.exec(s);
      })();
      db.close();
    },
  ],
];

function readAll(db: Database.Database): { table: string; rows: RowChange[] }[] {
  const j = new Journal(db);
  j.onSchemaChanged = () => {
    const res = reconcile(db, opts);
    j.setRegistry(res.registry, res.schemaVersion);
  };
  j.onSchemaChanged();
  return j.counters().map((c) => {
    const read = j.read(c.tid, 0, 1000)!;
    const built = buildRowBatch({
      batchId: '0190a000-0000-7000-8000-0000000000aa',
      table: c.name,
      epoch: c.epoch,
      hash: read.hash,
      fingerprint: read.fingerprint,
      changes: read.changes,
      withSchema: true,
      maxRows: 1000,
      maxBytes: 512 * 1024,
    });
    const v = validateRowBatch(JSON.parse(built.batch!.payload));
    if (!v.ok) throw new Error(v.rejection.message);
    return { table: c.name, rows: v.value.rows };
  });
}

describe.each(writers)('values written by %s', (_name, write) => {
  it('decode from the batches to exactly what SQLite stores; invalid UTF-8 is refused and the rest flows', () => {
    const path = join(tempDir('exact'), 'app.db');
    const setup = new Database(path);
    setup.exec(DDL);
    reconcile(setup, opts); // capture installed before the application writes
    setup.close();
    write(path);

    const db = new Database(path);
    const [k, v] = readAll(db);
    expect(v!.table).toBe('v');
    const stored = db
      .prepare(
        'SELECT id, u, i, t, b, typeof(u) AS tu, typeof(i) AS ti, typeof(t) AS tt, typeof(b) AS tb, hex(CAST(t AS BLOB)) AS th, hex(b) AS bh FROM v',
      )
      .safeIntegers(true)
      .all() as Record<string, unknown>[];
    expect(v!.rows).toHaveLength(CASES.length + 1);
    for (const change of v!.rows) {
      const id = change.pk.id as number;
      const s = stored.find((r) => r.id === BigInt(id))!;
      if (id === 21) {
        expect(change).toEqual({
          commit_seq: change.commit_seq,
          op: 'refused',
          pk: { id: 21 },
          row: null,
          refusal: { code: 'unencodable_text', column: 't', message: expect.any(String) },
        });
        continue;
      }
      expect(change.op).toBe('insert');
      for (const col of ['u', 'i', 't', 'b'] as const) {
        const wire = change.row![col]!;
        const decoded = decodeWireValue(wire);
        expect([id, col, storageClassOf(wire)]).toEqual([id, col, s[`t${col}`]]);
        const raw = s[col];
        if (typeof raw === 'number')
          expect(Object.is(decoded, raw)).toBe(true); // same bits, -0 included
        else if (typeof raw === 'string')
          expect(
            Buffer.from(decoded as string, 'utf8')
              .toString('hex')
              .toUpperCase(),
          ).toBe(col === 't' ? s.th : Buffer.from(raw, 'utf8').toString('hex').toUpperCase());
        else if (raw instanceof Uint8Array)
          expect(Buffer.from(decoded as Uint8Array).equals(Buffer.from(raw))).toBe(true);
        else expect(decoded).toEqual(raw); // bigint or null
      }
    }
    // The values the writers meant, as a cross-check of the ground truth itself.
    const byId = (id: number) => v!.rows.find((r) => r.pk.id === id)!.row!;
    expect(byId(6).u).toEqual({ $real: '-0' });
    expect(byId(7).u).toEqual({ $real: 'Infinity' });
    expect(byId(8).u).toEqual({ $real: '-Infinity' });
    expect(byId(19).u).toBe('Infinity');
    expect(byId(3).u).toEqual({ $real: '9007199254740992' });
    expect(byId(5).u).toEqual({ $real: '5' });
    expect(byId(9).i).toEqual({ $int: '9223372036854775807' });
    expect(byId(12).u).toEqual({ $int: '-9223372036854775808' });
    expect(byId(14).b).toEqual({ $blob: '' });
    expect(byId(16).t).toBe(BIG_TEXT);

    // A key that is not valid UTF-8: refused, its key sent as the bytes it holds.
    expect(k!.rows.map((r) => [r.op, r.pk, r.refusal?.code])).toEqual([
      ['refused', { name: { $blob: Buffer.from([0xff, 0x41]).toString('base64') } }, 'unencodable_text'],
      ['insert', { name: 'ok' }, undefined],
    ]);
    db.close();
  });
});
