import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DEMO_SCHEMA } from './schema';

export type DemoApp = Readonly<{ stop(): void; writes(): number }>;

const MODES = ['idle', 'cooling', 'heating', 'defrost'] as const;

/**
 * A stand-in for a device application: it owns app.db (WAL), knows nothing about Sluice, and
 * keeps changing `device_state` (keyed settings) and `order_events` (composite key) every
 * `intervalMs`: inserts, updates and the occasional delete.
 */
export function runDemoApp(dbPath: string, opts: { intervalMs?: number } = {}): DemoApp {
  mkdirSync(dirname(resolve(dbPath)), { recursive: true });
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.exec(DEMO_SCHEMA);
  const upsertState = db.prepare(
    `INSERT INTO device_state (id, mode, setpoint, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, setpoint = excluded.setpoint, updated_at = excluded.updated_at`,
  );
  const addLine = db.prepare(
    'INSERT OR IGNORE INTO order_events (order_id, line, qty, note) VALUES (?, ?, ?, ?)',
  );
  const cancel = db.prepare('DELETE FROM order_events WHERE order_id = ? AND line = ?');
  let n = 0;
  const step = () => {
    n++;
    const at = new Date().toISOString();
    db.transaction(() => {
      upsertState.run(1 + (n % 4), MODES[n % MODES.length], 18 + (n % 7) * 0.5, at);
      const order = `ord-${Math.floor(n / 5)}`;
      addLine.run(order, n % 5, 1 + (n % 9), n % 3 === 0 ? null : `line ${n}`);
      if (n % 11 === 0) cancel.run(order, n % 5);
    })();
  };
  step();
  const timer = setInterval(step, opts.intervalMs ?? 500);
  return {
    stop() {
      clearInterval(timer);
      db.close();
    },
    writes: () => n,
  };
}

if (require.main === module) {
  const path = process.argv[2] ?? '.data/demo/app.db';
  const app = runDemoApp(path, { intervalMs: Number(process.env.DEMO_INTERVAL_MS ?? 500) });
  console.log(`demo app writing to ${path}; Ctrl-C to stop`);
  const stop = () => {
    app.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
