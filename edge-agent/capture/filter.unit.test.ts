import Database from 'better-sqlite3';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { BucketDigests } from '../../domain/protocol/wire-values';
import { parseAgentConfig } from '../config/load';
import { FilterKeys } from '../state/filter-keys';
import { checkPredicate, checkTableConfig, filterSchema, type TableFilter } from './filter';
import { reconcile, type ReconcileOptions } from './install';
import { Journal } from './journal';
import { readTableSchema } from './schema';

let n = 0;
const epoch = () => `0190a000-0000-7000-8000-${String(++n).padStart(12, '0')}`;
const rowsOpts: ReconcileOptions = { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: epoch };

const BASE = `
connection:
  server_url: mqtt://127.0.0.1:1883
  device_id: dev1
  root_topic: acme/dev1
sqlite-replication:
  source_db_path: /tmp/app.db
  table_strategies:
`;
const problemsOf = (tables: string) => {
  const r = parseAgentConfig(BASE + tables, {});
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

function appDb(): Database.Database {
  const db = new Database(':memory:');
  db.exec(
    `CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT NOT NULL, secret TEXT, note TEXT);
     CREATE TABLE other (id INTEGER PRIMARY KEY, x TEXT);
     CREATE TABLE temps (id INTEGER PRIMARY KEY, ts TEXT, raw BLOB, v REAL)`,
  );
  return db;
}

describe('filter config (YAML)', () => {
  it('accepts include_columns, exclude_columns, where and ts_column', () => {
    const r = parseAgentConfig(
      BASE +
        `    t: { exclude_columns: [secret], where: "status <> 'secret'" }
    temps: { strategy: telemetry, ts_column: ts, include_columns: [ts, v] }
`,
      {},
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.replication.tableStrategies).toEqual({
      t: { strategy: 'rows', filter: { exclude: ['secret'], where: "status <> 'secret'" } },
      temps: { strategy: 'telemetry', timestampColumn: 'ts', filter: { include: ['ts', 'v'] } },
    });
  });

  it('takes timestamp_column as the older name of ts_column', () => {
    const r = parseAgentConfig(BASE + '    temps: { strategy: telemetry, timestamp_column: ts }\n', {});
    expect(r.ok && r.config.replication.tableStrategies.temps?.timestampColumn).toBe('ts');
  });

  it('refuses both lists, a ts_column left out, statement breaks and comments', () => {
    expect(
      problemsOf(`    t: { include_columns: [status], exclude_columns: [secret] }
    u: { where: "1; DROP TABLE t" }
    v: { where: "1 -- rest" }
    w: { exclude_columns: [a, a] }
    temps: { strategy: telemetry, ts_column: ts, exclude_columns: [ts] }
    x: { strategy: telemetry }
    y: { strategy: telemetry, ts_column: a, timestamp_column: b }
`).sort(),
    ).toEqual([
      'sqlite-replication.table_strategies.t.exclude_columns: include_columns and exclude_columns cannot both be set: list what is sent, or what is kept back',
      'sqlite-replication.table_strategies.temps.ts_column: ts holds the sample time: it cannot be left out by include_columns/exclude_columns',
      'sqlite-replication.table_strategies.u.where: must be one expression: ";" is not allowed (write char(59) for a semicolon)',
      'sqlite-replication.table_strategies.v.where: must not hold SQL comments (-- or /*)',
      'sqlite-replication.table_strategies.w.exclude_columns: names a twice',
      'sqlite-replication.table_strategies.x.ts_column: is required for strategy telemetry',
      'sqlite-replication.table_strategies.y.timestamp_column: names b but ts_column names a; keep one (ts_column)',
    ]);
  });
});

describe('predicate rules (checked with the agent’s SQLite)', () => {
  const db = appDb();
  const t = readTableSchema(db, 't')!;

  it.each([
    "status <> 'secret'",
    "status IN ('a', 'b') AND note IS NOT NULL",
    "lower(status) LIKE 'op%'",
    "json_extract(note, '$.public') = 1",
    'secret IS NULL', // an excluded column may decide, it is never sent
  ])('accepts %j', (where) => {
    expect(checkPredicate(db, t, where)).toBeUndefined();
  });

  it.each([
    ['1; DELETE FROM t', '";" is not allowed'],
    ["status <> 'x' -- tail", 'comments'],
    ['id IN (SELECT id FROM other)', 'subqueries prohibited'],
    ['EXISTS (SELECT 1 FROM t)', 'subqueries prohibited'],
    ['1) UNION SELECT x FROM other WHERE (1', 'syntax error'],
    ['random() > 0', 'non-deterministic'],
    ["date('now') > status", 'non-deterministic'],
    ['changes() > 0', 'non-deterministic'],
    ["load_extension('x') IS NULL", 'load_extension'],
    ['count(*) > 0', 'aggregate'],
    ["t.status = 'a'", 'prohibited'],
    ['nosuch = 1', 'no such column: nosuch'],
    ['__sluice_bucket(1, 2) = 0', 'no such function'],
  ])('refuses %j', (where, why) => {
    expect(checkPredicate(db, t, where)).toContain(why);
  });

  it('checks columns, keys and ts_column against the table', () => {
    const problems = (cfg: Parameters<typeof checkTableConfig>[2], table = 't') =>
      checkTableConfig(db, readTableSchema(db, table)!, cfg).map((p) => `${p.field}: ${p.message}`);
    expect(problems({ strategy: 'rows', filter: { exclude: ['id', 'nope'] } })).toEqual([
      'exclude_columns: t has no column nope (it has id, status, secret, note)',
      'exclude_columns: id is part of the PRIMARY KEY of t: key columns are always sent (the cloud keys the mirror by them)',
    ]);
    expect(problems({ strategy: 'rows', filter: { include: ['Status'] } })).toEqual([]);
    expect(problems({ strategy: 'telemetry', timestampColumn: 'when' }, 'temps')).toEqual([
      'ts_column: temps has no column when (it has id, ts, raw, v)',
    ]);
    expect(problems({ strategy: 'telemetry', timestampColumn: 'raw' }, 'temps')[0]).toContain(
      'raw is declared BLOB or without a type',
    );
    expect(problems({ strategy: 'telemetry', timestampColumn: 'ts' }, 'temps')).toEqual([]);
  });
});

describe('the schema the cloud reviews is the filtered one', () => {
  it('hashes only the columns sent (key columns always among them)', () => {
    const t = readTableSchema(appDb(), 't')!;
    const f = filterSchema(t, { exclude: ['SECRET'] });
    expect(f.columns).toEqual(['id', 'status', 'note']);
    expect(f.fingerprint.columns.map((c) => c.name)).toEqual(['id', 'status', 'note']);
    expect(f.hash).toBe(
      schemaHash({ table_name: 't', columns: t.fingerprint.columns.filter((c) => c.name !== 'secret') }),
    );
    expect(f.hash).not.toBe(t.hash);
    expect(filterSchema(t, { include: ['status', 'note'] }).hash).toBe(f.hash);
    // A predicate alone sends every column: the hash is the table's.
    expect(filterSchema(t, { where: '1' }).hash).toBe(t.hash);
  });
});

/** The agent's journal over `db` with `filter` on table t, and a mirror the changes are applied to. */
function filteredJournal(db: Database.Database, filter: TableFilter) {
  const state = new Database(':memory:');
  const j = new Journal(db, {
    keys: new FilterKeys(state),
    filterOf: (x) => (x === 't' ? filter : undefined),
  });
  j.onSchemaChanged = () => {
    const res = reconcile(db, rowsOpts);
    j.setRegistry(res.registry, res.schemaVersion);
  };
  j.onSchemaChanged();
  const tid = j.counters().find((c) => c.name === 't')!.tid;
  const mirror = new Map<string, Record<string, WireValue>>();
  let sent = 0;
  const all: RowChange[] = [];
  /** Read everything new (as one batch), confirm it, apply it to the mirror. */
  const flush = (): RowChange[] => {
    const r = j.read(tid, sent, 1000)!;
    sent = Math.max(sent, r.throughSeq);
    const ep = db.prepare('SELECT epoch FROM __sluice_seq WHERE tid = ?').pluck().get(tid) as string;
    j.confirmed(tid, ep, sent);
    for (const c of r.changes) {
      const k = JSON.stringify(c.pk);
      if (c.op === 'delete') mirror.delete(k);
      else if (c.row) mirror.set(k, c.row);
    }
    all.push(...r.changes);
    return [...r.changes];
  };
  const mirrorDigests = (columns: readonly string[]) => {
    const d = new BucketDigests();
    for (const row of mirror.values()) {
      const r: Record<string, WireValue> = {};
      for (const c of columns) r[c] = row[c] ?? null;
      d.addRow({ id: row.id ?? null }, r, columns);
    }
    return d.list();
  };
  return { j, tid, flush, mirror, all, mirrorDigests, state };
}

describe('row predicate: rows entering and leaving the filter', () => {
  it('sends matching rows without excluded columns, deletes rows that leave, nothing of rows never in', () => {
    const db = appDb();
    const { j, tid, flush, mirror, all, mirrorDigests, state } = filteredJournal(db, {
      exclude: ['secret'],
      where: "status <> 'secret'",
    });
    const ins = db.prepare('INSERT INTO t (id, status, secret, note) VALUES (?, ?, ?, ?)');
    ins.run(1, 'open', 'S1', 'a');
    ins.run(2, 'secret', 'S2', 'b');
    expect(flush()).toEqual([
      { commit_seq: 1, op: 'insert', pk: { id: 1 }, row: { id: 1, status: 'open', note: 'a' } },
    ]);
    // Row 2 enters the filter: an upsert. Row 1 leaves it: a delete.
    db.prepare("UPDATE t SET status = 'open' WHERE id = 2").run();
    db.prepare("UPDATE t SET status = 'secret' WHERE id = 1").run();
    expect(flush()).toEqual([
      { commit_seq: 3, op: 'update', pk: { id: 2 }, row: { id: 2, status: 'open', note: 'b' } },
      { commit_seq: 4, op: 'delete', pk: { id: 1 }, row: null },
    ]);
    // Row 1 changes while out, then is deleted: the cloud no longer has it, nothing is sent.
    db.prepare("UPDATE t SET note = 'z' WHERE id = 1").run();
    db.prepare('DELETE FROM t WHERE id = 1').run();
    // Row 3 comes in and leaves again before a read: never sent, not even its key.
    ins.run(3, 'open', 'S3', 'c');
    db.prepare("UPDATE t SET status = 'secret' WHERE id = 3").run();
    expect(flush()).toEqual([]);
    expect(JSON.stringify(all)).not.toMatch(/S1|S2|S3|secret/);
    expect(all.some((c) => (c.pk as { id?: number }).id === 3)).toBe(false);
    expect([...mirror.values()]).toEqual([{ id: 2, status: 'open', note: 'b' }]);
    // Confirmed deletes leave the key set; row 2 stays in it.
    expect(state.prepare('SELECT count(*) FROM filter_keys').pluck().get()).toBe(1);
    // Verify digests the same rows and columns the mirror holds.
    const v = j.verify(tid, ['status', 'note', 'secret'], 1e9)!;
    expect(v.columns).toEqual(['status', 'note', 'id']);
    expect(v.missing).toEqual(['secret']);
    expect(v.digests).toEqual(mirrorDigests(v.columns));
  });

  it('withholds a table whose filter no longer applies (fail closed)', () => {
    const db = appDb();
    const { j, tid, flush } = filteredJournal(db, { where: "note <> 'x'" });
    db.prepare("INSERT INTO t (id, status, note) VALUES (1, 'a', 'b')").run();
    expect(flush()).toHaveLength(1);
    db.exec('ALTER TABLE t DROP COLUMN note');
    db.prepare("INSERT INTO t (id, status) VALUES (2, 'a')").run();
    j.read(tid, 1, 10);
    expect(j.withheld(tid)?.problems[0]?.field).toBe('where');
  });
});
