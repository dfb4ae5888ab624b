/**
 * The workload of the fault scenarios: a device application writing two tables under a seeded
 * PRNG, a record of every change the agent journals (so the checker knows each write, not just a
 * count), and the device's final tables in the mirror's column names.
 */
import Database from 'better-sqlite3';
import { ensureInfra } from '../../edge-agent/capture/install';
import { rng, startWriter, type Writer } from '../support/readside';
import { type TableImage, type Write, writeKey } from './checker';

export { rng };

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
} as const;
export type TableName = keyof typeof TABLES;
export const TABLE_NAMES = Object.keys(TABLES) as TableName[];

/** The agent leaves this table alone (strategy ignore); a trigger on its journal fills it. */
export const WRITE_LOG = 'fault_journal';
export const AGENT_TABLE_STRATEGIES = `table_strategies:\n    ${WRITE_LOG}: { strategy: ignore }`;

const SITES = ['north', 'south', 'east'] as const;
const BINS = 120;

/**
 * The application database, with the agent's journal tables created up front and a trigger
 * copying every journal insert (table, epoch, seq) into `fault_journal`: the journal itself is
 * trimmed once the cloud confirms, the copy keeps every write the checker must account for.
 */
export function createDeviceDb(path: string): Database.Database {
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.pragma('synchronous = NORMAL');
  app.pragma('busy_timeout = 10000');
  for (const t of Object.values(TABLES)) app.exec(t.ddl);
  ensureInfra(app);
  app.exec(
    `CREATE TABLE ${WRITE_LOG} (tid INTEGER NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, PRIMARY KEY (tid, epoch, seq))`,
  );
  app.exec(
    `CREATE TRIGGER fault_copy_journal AFTER INSERT ON __sluice_journal BEGIN
       INSERT INTO ${WRITE_LOG} (tid, epoch, seq, op)
       VALUES (NEW.tid, (SELECT epoch FROM __sluice_seq WHERE tid = NEW.tid), NEW.seq, NEW.op);
     END`,
  );
  return app;
}

/** One transaction of the application: inserts, updates, deletes and key changes. */
function step(app: Database.Database, random: () => number, ops: number): void {
  for (let i = 0; i < ops; i++) {
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

/** Changes still in the agent's journal (not confirmed by the cloud yet). */
export function devicePending(app: Database.Database): Set<string> {
  const rows = app
    .prepare(
      'SELECT s.name AS tbl, s.epoch, j.seq FROM __sluice_journal j JOIN __sluice_seq s ON s.tid = j.tid',
    )
    .all() as { tbl: string; epoch: string; seq: number }[];
  return new Set(rows.map((r) => writeKey(r.tbl, r.epoch, r.seq)));
}

export const keyText = (key: Readonly<Record<string, unknown>>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(key).sort(([a], [b]) => (a < b ? -1 : 1))));

/** The device's table as the approved mirror should hold it (ignored columns out, renamed in). */
export function deviceImage(app: Database.Database, table: TableName): TableImage {
  if (table === 'stock') {
    const rows = app.prepare('SELECT site, bin, qty, price FROM stock').all() as {
      site: string;
      bin: number;
      qty: number;
      price: number | null;
    }[];
    return new Map(
      rows.map((r) => [
        keyText({ site: r.site, bin: r.bin }),
        { site: r.site, bin: r.bin, quantity: r.qty, price: r.price },
      ]),
    );
  }
  const rows = app.prepare('SELECT id, sensor, value FROM readings').all() as {
    id: number;
    sensor: string;
    value: number | null;
  }[];
  return new Map(rows.map((r) => [keyText({ id: r.id }), { id: r.id, sensor: r.sensor, value: r.value }]));
}
