/**
 * The workload of the fault scenarios: a device application writing three tables under a seeded
 * PRNG, a record of every change the agent journals (so the checker knows each write, not just a
 * count), and the device's final tables in the mirror's column names, as wire values.
 *
 * The application is better-sqlite3 (its bundled SQLite) or, for scenarios that say so, Python's
 * sqlite3 module (the system's SQLite, `tests/support/pyapp.ts`): the capture must not depend on
 * which SQLite the application links. `samples` carries every value class of docs/wire-values.md.
 */
import Database from 'better-sqlite3';
import { uuidv7 } from 'uuidv7';
import { reconcile } from '../../edge-agent/capture/install';
import { logTable } from '../../edge-agent/capture/sql';
import type { WireValue } from '../../domain/protocol/contracts';
import { encodeSqliteValue, normalizeWire, type SqliteValue } from '../../domain/protocol/wire-values';
import { canonicalJson } from '../../domain/shared/canonical';
import { journalCounters } from '../../edge-agent/testing/mirror';
import type { PyApp, PyStep } from '../support/pyapp';
import { delay, startWriter, type Writer } from '../support/readside';
import {
  orNull,
  randomBlob,
  randomInteger,
  randomReal,
  randomText,
  randomValue,
} from '../support/value-classes';
import { type TableImage, type Write, writeKey } from './checker';

/** The tables the application writes, and the column actions the operator approves for each. */
export const TABLES = {
  stock: {
    ddl: 'CREATE TABLE stock (site TEXT NOT NULL, bin INTEGER NOT NULL, qty INTEGER NOT NULL, price REAL, note TEXT, PRIMARY KEY (site, bin))',
    actions: [
      { column: 'note', action: 'ignore' },
      { column: 'qty', action: 'mirror', mirror_column_name: 'quantity' },
    ],
  },
  readings: {
    ddl: 'CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, value REAL)',
    actions: undefined,
  },
  // Every value class: `v` untyped (keeps any class as given, -0.0 included), the others typed.
  samples: {
    ddl: 'CREATE TABLE samples (id INTEGER PRIMARY KEY, v, r REAL, i INTEGER, t TEXT, b BLOB)',
    actions: undefined,
  },
} as const;
export type TableName = keyof typeof TABLES;
export const TABLE_NAMES = Object.keys(TABLES) as TableName[];

/** The agent leaves this table alone (strategy ignore); a trigger on its journal fills it. */
export const WRITE_LOG = 'fault_journal';
export const AGENT_TABLE_STRATEGIES = `table_strategies:\n    ${WRITE_LOG}: { strategy: ignore }`;

const SITES = ['north', 'south', 'east'] as const;
const BINS = 120;

/**
 * The application database, enrolled up front as an agent's first run would (its change logs
 * created), with a trigger on each change log copying every entry (table, epoch, seq) into
 * `fault_journal`: a change log is trimmed once the cloud confirms, the copy keeps every write the
 * checker must account for. `X` entries are placeholders the agent never sends.
 */
export function createDeviceDb(path: string): Database.Database {
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.pragma('synchronous = NORMAL');
  app.pragma('busy_timeout = 10000');
  for (const t of Object.values(TABLES)) app.exec(t.ddl);
  app.exec(
    `CREATE TABLE ${WRITE_LOG} (tid INTEGER NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, PRIMARY KEY (tid, epoch, seq))`,
  );
  const { registry } = reconcile(app, {
    strategyOf: (t) => (t === WRITE_LOG ? 'ignore' : 'rows'),
    snapshotOnFirstRun: false,
    newEpoch: uuidv7,
  });
  for (const { tid } of registry) {
    app.exec(
      `CREATE TRIGGER fault_copy_log_${tid} AFTER INSERT ON ${logTable(tid)} WHEN NEW.op <> 'X' BEGIN
         INSERT INTO ${WRITE_LOG} (tid, epoch, seq, op)
         VALUES (${tid}, (SELECT epoch FROM __sluice_seq WHERE tid = ${tid}), NEW.seq, NEW.op);
       END`,
    );
  }
  return app;
}

const SAMPLES = 300;

/** One write of `samples`: an upsert of every column, one column changed, or a delete. */
function samplesStatement(random: () => number): PyStep {
  const id = BigInt(1 + Math.floor(random() * SAMPLES));
  const r = random();
  if (r < 0.6)
    return {
      sql:
        'INSERT INTO samples (id, v, r, i, t, b) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET ' +
        'v = excluded.v, r = excluded.r, i = excluded.i, t = excluded.t, b = excluded.b',
      params: [
        id,
        randomValue(random),
        orNull(random, () => randomReal(random)),
        orNull(random, () => randomInteger(random)),
        orNull(random, () => randomText(random)),
        orNull(random, () => randomBlob(random)),
      ],
    };
  if (r < 0.85) return { sql: 'UPDATE samples SET v = ? WHERE id = ?', params: [randomValue(random), id] };
  return { sql: 'DELETE FROM samples WHERE id = ?', params: [id] };
}

/** One transaction of the application: inserts, updates, deletes and key changes. */
function step(app: Database.Database, random: () => number, ops: number): void {
  for (let i = 0; i < ops; i++) {
    if (random() < 0.2) {
      const st = samplesStatement(random);
      app.prepare(st.sql).run(...(st.params ?? []));
      continue;
    }
    if (random() < 0.35) {
      const id = 1 + Math.floor(random() * 400);
      const r = random();
      if (r < 0.7)
        app
          .prepare(
            'INSERT INTO readings (id, sensor, value) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value',
          )
          .run(id, `s${id % 7}`, Math.round(random() * 10_000) / 100);
      else app.prepare('DELETE FROM readings WHERE id = ?').run(id);
      continue;
    }
    const site = SITES[Math.floor(random() * SITES.length)]!;
    const bin = 1 + Math.floor(random() * BINS);
    const price = random() < 0.1 ? null : Math.round(random() * 100_000) / 100;
    const exists = app.prepare('SELECT 1 FROM stock WHERE site = ? AND bin = ?').get(site, bin);
    if (!exists) {
      app
        .prepare('INSERT INTO stock (site, bin, qty, price, note) VALUES (?, ?, ?, ?, ?)')
        .run(site, bin, Math.floor(random() * 1000), price, `n${Math.floor(random() * 1e6)}`);
      continue;
    }
    const r = random();
    if (r < 0.6) {
      app
        .prepare('UPDATE stock SET qty = qty + ?, price = ?, note = ? WHERE site = ? AND bin = ?')
        .run(1 + Math.floor(random() * 10), price, `u${Math.floor(random() * 1e6)}`, site, bin);
    } else if (r < 0.85) {
      app.prepare('DELETE FROM stock WHERE site = ? AND bin = ?').run(site, bin);
    } else {
      const to = 1 + Math.floor(random() * BINS);
      const free = !app.prepare('SELECT 1 FROM stock WHERE site = ? AND bin = ?').get(site, to);
      if (free) app.prepare('UPDATE stock SET bin = ? WHERE site = ? AND bin = ?').run(to, site, bin);
    }
  }
}

/** Continuous load: a transaction of 1..`maxOps` changes every few ms until stopped. */
export function startLoad(
  app: Database.Database,
  random: () => number,
  opts: { maxOps?: number; paceMs?: number } = {},
): Writer {
  const maxOps = opts.maxOps ?? 6;
  return startWriter(app, random, (db, r) => step(db, r, 1 + Math.floor(r() * maxOps)), opts.paceMs ?? 10);
}

/**
 * One transaction of the application as statements that need no read first (upserts, deletes,
 * `UPDATE OR IGNORE` key changes), so a writer in another process can run it: the python3 app.
 */
function statements(random: () => number, ops: number): PyStep[] {
  const out: PyStep[] = [];
  for (let i = 0; i < ops; i++) {
    const r = random();
    if (r < 0.2) out.push(samplesStatement(random));
    else if (r < 0.45) {
      const id = BigInt(1 + Math.floor(random() * 400));
      out.push(
        random() < 0.7
          ? {
              sql: 'INSERT INTO readings (id, sensor, value) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value',
              params: [id, `s${id % 7n}`, Math.round(random() * 10_000) / 100],
            }
          : { sql: 'DELETE FROM readings WHERE id = ?', params: [id] },
      );
    } else {
      const site = SITES[Math.floor(random() * SITES.length)]!;
      const bin = BigInt(1 + Math.floor(random() * BINS));
      const price = random() < 0.1 ? null : Math.round(random() * 100_000) / 100;
      const k = random();
      if (k < 0.6)
        out.push({
          sql:
            'INSERT INTO stock (site, bin, qty, price, note) VALUES (?, ?, ?, ?, ?) ' +
            'ON CONFLICT (site, bin) DO UPDATE SET qty = qty + excluded.qty, price = excluded.price, note = excluded.note',
          params: [site, bin, BigInt(1 + Math.floor(random() * 10)), price, `p${Math.floor(random() * 1e6)}`],
        });
      else if (k < 0.85)
        out.push({ sql: 'DELETE FROM stock WHERE site = ? AND bin = ?', params: [site, bin] });
      else
        out.push({
          sql: 'UPDATE OR IGNORE stock SET bin = ? WHERE site = ? AND bin = ?',
          params: [BigInt(1 + Math.floor(random() * BINS)), site, bin],
        });
    }
  }
  return out;
}

/** Continuous load from the python3 application: a transaction of 1..`maxOps` changes at a time. */
export function startPyLoad(
  py: PyApp,
  random: () => number,
  opts: { maxOps?: number; paceMs?: number } = {},
): Writer {
  const maxOps = opts.maxOps ?? 6;
  const paceMs = opts.paceMs ?? 10;
  let on = true;
  let n = 0;
  let failed: Error | undefined;
  const loop = (async () => {
    while (on) {
      try {
        await py.tx(statements(random, 1 + Math.floor(random() * maxOps)));
        n++;
      } catch (err) {
        failed = err as Error;
        return;
      }
      await delay(Math.floor(random() * paceMs));
    }
  })();
  return {
    transactions: () => n,
    stop: async () => {
      on = false;
      await loop;
      if (failed)
        throw new Error(`the python3 application stopped writing: ${failed.message}`, { cause: failed });
      return n;
    },
  };
}

/** A burst of `transactions` transactions at once (a device writing while it is offline). */
export function writeBurst(
  app: Database.Database,
  random: () => number,
  transactions: number,
  ops = 8,
): void {
  const tx = app.transaction(() => step(app, random, ops));
  for (let i = 0; i < transactions; i++) tx.immediate();
}

/** Every change the agent journaled, with the table it belongs to. */
export function deviceWrites(app: Database.Database): Write[] {
  return (
    app
      .prepare(
        `SELECT s.name AS tbl, j.epoch, j.seq FROM ${WRITE_LOG} j JOIN __sluice_seq s ON s.tid = j.tid ORDER BY j.tid, j.seq`,
      )
      .all() as { tbl: string; epoch: string; seq: number }[]
  ).map((r) => ({ table: r.tbl, epoch: r.epoch, seq: r.seq }));
}

/** Changes still in the agent's change logs (not confirmed by the cloud yet). */
export function devicePending(app: Database.Database): Set<string> {
  const out = new Set<string>();
  for (const t of journalCounters(app)) {
    const seqs = app
      .prepare(`SELECT seq FROM ${logTable(t.tid)} WHERE op <> 'X'`)
      .pluck()
      .all() as number[];
    for (const seq of seqs) out.add(writeKey(t.name, t.epoch, seq));
  }
  return out;
}

/** A key's canonical text from its wire values, the same for every spelling of the same values. */
export const keyText = (key: Readonly<Record<string, unknown>>): string =>
  canonicalJson(Object.fromEntries(Object.entries(key).map(([k, v]) => [k, normalizeWire(v as WireValue)])));

/** A device row (read with safe integers) as wire values, under the mirror's column names. */
function wireRow(r: Record<string, SqliteValue>, names: Readonly<Record<string, string>>) {
  return Object.fromEntries(Object.entries(names).map(([src, dst]) => [dst, encodeSqliteValue(r[src])]));
}

/**
 * The device's table as the approved mirror should hold it (ignored columns out, renamed in),
 * every value as the one codec encodes what SQLite stores: class and bits.
 */
export function deviceImage(app: Database.Database, table: TableName): TableImage {
  const spec: Record<TableName, { cols: Record<string, string>; key: string[] }> = {
    stock: { cols: { site: 'site', bin: 'bin', qty: 'quantity', price: 'price' }, key: ['site', 'bin'] },
    readings: { cols: { id: 'id', sensor: 'sensor', value: 'value' }, key: ['id'] },
    samples: { cols: { id: 'id', v: 'v', r: 'r', i: 'i', t: 't', b: 'b' }, key: ['id'] },
  };
  const { cols, key } = spec[table];
  const rows = app
    .prepare(`SELECT ${Object.keys(cols).join(', ')} FROM ${table}`)
    .safeIntegers()
    .all() as Record<string, SqliteValue>[];
  return new Map(
    rows.map((r) => {
      const row = wireRow(r, cols);
      return [keyText(Object.fromEntries(key.map((k) => [cols[k]!, row[cols[k]!]]))), row];
    }),
  );
}
