/**
 * The "other SQLite" writers themselves: every value class written through python3's sqlite3
 * (PyApp) and Debian's sqlite3 shell lands with the storage class and bits better-sqlite3 gives
 * the same value, in an untyped column (which keeps what it is given) and in typed ones.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { SqliteValue } from '../../domain/protocol/wire-values';
import { tempDir } from './proc';
import { PyApp } from './pyapp';
import { sqlLiteral, sqliteCli, sqliteCliVersion } from './sqlite-cli';
import { VALUE_CASES, sqliteClassOf } from './value-classes';

const DDL = 'CREATE TABLE v (id INTEGER PRIMARY KEY, u, r REAL, i INTEGER, t TEXT, b BLOB, n NUMERIC)';
const COLS = ['u', 'r', 'i', 't', 'b', 'n'] as const;

type Stored = { cls: string; v: SqliteValue };
function readBack(path: string): Map<number, Record<string, Stored>> {
  const db = new Database(path, { readonly: true });
  const sel = COLS.map((c) => `typeof(${c}) AS ${c}_t, ${c}`).join(', ');
  const rows = db.prepare(`SELECT id, ${sel} FROM v ORDER BY id`).safeIntegers().all() as Record<
    string,
    SqliteValue
  >[];
  db.close();
  return new Map(
    rows.map((r) => [
      Number(r.id),
      Object.fromEntries(COLS.map((c) => [c, { cls: String(r[`${c}_t`]), v: r[c]! }])),
    ]),
  );
}

/** Same class and same bits (-0.0 is not 0.0, a Buffer is compared by content). */
function same(a: Stored, b: Stored): boolean {
  if (a.cls !== b.cls) return false;
  if (typeof a.v === 'number' && typeof b.v === 'number') return Object.is(a.v, b.v);
  if (a.v instanceof Uint8Array && b.v instanceof Uint8Array) return Buffer.compare(a.v, b.v) === 0;
  return a.v === b.v;
}

const show = (s: Stored) =>
  `${s.cls} ${typeof s.v === 'bigint' ? `${s.v}n` : s.v instanceof Uint8Array ? `x'${Buffer.from(s.v).toString('hex')}'` : Object.is(s.v, -0) ? '-0' : (JSON.stringify(s.v) ?? String(s.v))}`;

function expectSameAsBetterSqlite(path: string, reference: string): void {
  const got = readBack(path);
  const want = readBack(reference);
  const diffs: string[] = [];
  for (const [id, w] of want) {
    const g = got.get(id);
    for (const c of COLS) {
      // A REAL stored into a TEXT column is turned into text by the library itself, with its
      // own digits (3.40 prints 15 significant digits, newer SQLite 17): that is the
      // application's SQLite at work, not the writer, and the device's table is what it made.
      if (c === 't' && sqliteClassOf(VALUE_CASES[id - 1]!.value) === 'real') continue;
      if (!g || !same(g[c]!, w[c]!))
        diffs.push(`${VALUE_CASES[id - 1]!.name}.${c}: ${g ? show(g[c]!) : 'missing'} ≠ ${show(w[c]!)}`);
    }
  }
  expect(diffs).toEqual([]);
  expect(got.size).toBe(want.size);
}

describe('other-SQLite writers', () => {
  let dir: string;
  let reference: string;

  beforeAll(() => {
    dir = tempDir('writers');
    // The reference: better-sqlite3 binding the same values (numbers as REAL, bigint as INTEGER).
    reference = join(dir, 'ref.db');
    const db = new Database(reference);
    db.exec(DDL);
    const ins = db.prepare(`INSERT INTO v (id, ${COLS.join(', ')}) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    VALUE_CASES.forEach((c, i) => ins.run(i + 1, ...COLS.map(() => c.value)));
    db.close();
  });

  it('the untyped column of the reference keeps each value class as given', () => {
    const ref = readBack(reference);
    const wrong = VALUE_CASES.flatMap((c, i) => {
      const u = ref.get(i + 1)!.u!;
      return u.cls === sqliteClassOf(c.value) && same(u, { cls: u.cls, v: c.value })
        ? []
        : [`${c.name}: ${show(u)}`];
    });
    expect(wrong).toEqual([]);
  });

  it('python3 sqlite3 (the system SQLite) stores every value class exactly as better-sqlite3 does', async () => {
    const path = join(dir, 'py.db');
    const app = PyApp.open(path);
    try {
      expect(await app.sqliteVersion()).toMatch(/^3\.\d+\.\d+$/);
      await app.script(`PRAGMA journal_mode = WAL; ${DDL};`);
      // Half in one transaction, half autocommit: both paths bind the same way.
      const half = Math.ceil(VALUE_CASES.length / 2);
      const sql = `INSERT INTO v (id, ${COLS.join(', ')}) VALUES (?, ?, ?, ?, ?, ?, ?)`;
      await app.tx(
        VALUE_CASES.slice(0, half).map((c, i) => ({
          sql,
          params: [BigInt(i + 1), ...COLS.map(() => c.value)],
        })),
      );
      for (let i = half; i < VALUE_CASES.length; i++)
        await app.exec(sql, [BigInt(i + 1), ...COLS.map(() => VALUE_CASES[i]!.value)]);
      // Read back through python too: the values come home typed.
      const rows = await app.query('SELECT u FROM v ORDER BY id');
      expect(rows.map((r) => sqliteClassOf(r[0]!))).toEqual(VALUE_CASES.map((c) => sqliteClassOf(c.value)));
    } finally {
      await app.close();
    }
    expectSameAsBetterSqlite(path, reference);
  });

  it('a failed python3 transaction is rolled back and reported', async () => {
    const path = join(dir, 'py-fail.db');
    const app = PyApp.open(path);
    try {
      await app.script('CREATE TABLE k (id INTEGER PRIMARY KEY)');
      await expect(
        app.tx([
          { sql: 'INSERT INTO k VALUES (?)', params: [1n] },
          { sql: 'INSERT INTO k VALUES (?)', params: [1n] },
        ]),
      ).rejects.toThrow(/UNIQUE constraint failed/);
      expect(await app.query('SELECT count(*) FROM k')).toEqual([[0n]]);
    } finally {
      await app.close();
    }
  });

  it("Debian's sqlite3 shell stores every value class exactly as better-sqlite3 does", () => {
    expect(sqliteCliVersion()).toMatch(/^3\.\d+\.\d+$/);
    const path = join(dir, 'cli.db');
    sqliteCli(
      path,
      [
        'PRAGMA journal_mode = WAL;',
        `${DDL};`,
        'BEGIN;',
        ...VALUE_CASES.map(
          (c, i) =>
            `INSERT INTO v (id, ${COLS.join(', ')}) VALUES (${i + 1}, ${COLS.map(() => sqlLiteral(c.value)).join(', ')});`,
        ),
        'COMMIT;',
      ].join('\n'),
    );
    expectSameAsBetterSqlite(path, reference);
    expect(() => sqliteCli(path, 'INSERT INTO nope VALUES (1);')).toThrow(/no such table: nope/);
  });
});
