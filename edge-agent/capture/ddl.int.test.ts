import type Database from 'better-sqlite3';
import { join } from 'node:path';
import type { RowBatch, WireValue } from '../../domain/protocol/contracts';
import { startNats, type NatsServer } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { type AgentHandle, startAgent } from '../main';
import { FakeCloud } from '../testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../testing/fixtures';
import { silentLogger } from '../../infra/log';
import { applyBatches, deviceRows, journalCounters } from '../testing/mirror';
import { readTableSchema } from './schema';

const SCHEMA = `
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);
CREATE TABLE lines (order_id TEXT, line INTEGER, note TEXT, PRIMARY KEY (order_id, line)) WITHOUT ROWID;
`;

/** The application: writes, DDL in the middle of them, more writes; no pause in between. */
const STEPS: ((app: Database.Database) => void)[] = [
  (app) => {
    const ins = app.prepare('INSERT INTO items (id, name, qty) VALUES (?, ?, ?)');
    const line = app.prepare('INSERT INTO lines VALUES (?, ?, ?)');
    app.transaction(() => {
      for (let i = 1; i <= 50; i++) ins.run(i, `item ${i}`, i * 10);
      for (let i = 1; i <= 20; i++) line.run(i % 2 ? 'A' : 'B', i, `n${i}`);
    })();
    app.exec('UPDATE items SET id = id + 1000 WHERE id <= 5'); // key changes
    app.exec('UPDATE lines SET line = line + 100 WHERE line <= 3');
    app.exec("UPDATE items SET name = 'renamed' WHERE id % 7 = 0");
  },
  (app) => {
    app.exec('ALTER TABLE items ADD COLUMN color TEXT');
    app.exec("INSERT INTO items (id, name, qty, color) VALUES (51, 'n51', 1, 'blue'), (52, 'n52', 2, NULL)");
    app.exec("UPDATE items SET color = 'red' WHERE id % 2 = 0");
  },
  (app) => {
    // Existing rows now read 7: a resync.
    app.exec('ALTER TABLE items ADD COLUMN size INTEGER DEFAULT 7');
    app.exec("INSERT INTO items (id, name, qty, size) VALUES (53, 'n53', 3, 1)");
  },
  (app) => {
    app.exec('ALTER TABLE items DROP COLUMN color');
    app.exec('UPDATE items SET qty = qty + 1 WHERE id % 3 = 0');
  },
  (app) => {
    // Values move to another name: a resync.
    app.exec('ALTER TABLE items RENAME COLUMN qty TO quantity');
    app.exec('UPDATE items SET quantity = -1 WHERE id = 10');
    app.exec('DELETE FROM items WHERE id BETWEEN 20 AND 24');
  },
  (app) => {
    app.exec('CREATE TABLE extra (k TEXT PRIMARY KEY, v)');
    app.exec("INSERT INTO extra VALUES ('a', 1), ('b', 2.5), ('c', x'00')");
  },
  (app) => {
    // Dropped and created again with another key: a resync under the new key.
    app.exec(`DROP TABLE lines;
      CREATE TABLE lines (order_id TEXT, line INTEGER, note TEXT, extra INTEGER, PRIMARY KEY (line, order_id)) WITHOUT ROWID;
      INSERT INTO lines VALUES ('C', 1, 'c1', 1), ('C', 2, 'c2', NULL);`);
    app.exec("UPDATE lines SET order_id = 'D' WHERE line = 2");
    app.exec("INSERT INTO extra VALUES ('d', NULL)");
  },
];

const TABLES = ['items', 'lines', 'extra'];

function pkOf(app: Database.Database, table: string): string[] {
  return [...readTableSchema(app, table)!.pk];
}

/**
 * The mirror built from the batches holds the device's rows: same keys, and for each row the
 * values of the device's current columns (a column the mirror has not seen yet is NULL there,
 * which is what a column added without DEFAULT holds).
 */
function expectMirror(batches: readonly RowBatch[], app: Database.Database): void {
  for (const t of TABLES) {
    const device = deviceRows(app, t, pkOf(app, t));
    const mirror = applyBatches(batches, t);
    expect([t, [...mirror.keys()].sort()]).toEqual([t, [...device.keys()].sort()]);
    for (const [k, row] of device) {
      const m = mirror.get(k)!;
      const projected: Record<string, WireValue> = {};
      for (const c of Object.keys(row)) projected[c] = m[c] ?? null;
      expect([t, k, projected]).toEqual([t, k, row]);
    }
  }
}

/**
 * No change is published under the wrong schema: every batch names a schema announced by it or
 * an earlier batch, its rows hold exactly that schema's columns, and the first batch after a
 * schema change carries schema_columns.
 */
function expectSchemasHonest(batches: readonly RowBatch[]): void {
  const seen = new Set<string>();
  for (const t of TABLES) {
    const known = new Map<string, string[]>();
    let prev: string | undefined;
    for (const b of batches.filter((x) => x.source_table === t)) {
      if (seen.has(b.batch_id)) continue;
      seen.add(b.batch_id);
      if (b.schema_columns) known.set(b.schema_hash, b.schema_columns.columns.map((c) => c.name).sort());
      if (b.schema_hash !== prev)
        expect([t, b.batch_id, b.schema_columns !== undefined]).toEqual([t, b.batch_id, true]);
      prev = b.schema_hash;
      const cols = known.get(b.schema_hash);
      expect(cols).toBeDefined();
      for (const r of b.rows) {
        if (r.row) expect([t, r.commit_seq, Object.keys(r.row).sort()]).toEqual([t, r.commit_seq, cols]);
      }
    }
  }
}

describe('schema changes mid-stream', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  async function setup(device: string) {
    const dir = tempDir('ddl');
    const app = createAppDb(join(dir, 'app.db'), SCHEMA);
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: device,
      sourceDb: join(dir, 'app.db'),
      extraReplication: 'max_batch_rows: 40',
    });
    return { app, cloud, config };
  }

  /** Every change journaled so far is confirmed (read from the change logs, not the agent's view). */
  const confirmedAll = (agent: AgentHandle, app: Database.Database) => {
    const t = agent.stats().tables;
    return journalCounters(app).every((c) => t[c.name]?.confirmed_seq === c.seq && t[c.name]!.inflight === 0);
  };
  const settled = (agent: AgentHandle, app: Database.Database) =>
    confirmedAll(agent, app) && TABLES.every((n) => agent.stats().tables[n]);

  it('with the agent running: every DDL is reconciled before the next read, nothing is lost', async () => {
    const { app, cloud, config } = await setup('ddl-running');
    const agent = await startAgent(config, { logger: silentLogger() });
    try {
      await waitFor(() => agent.stats().connected, { message: 'agent connected' });
      for (const step of STEPS) {
        step(app);
        // Let the agent read part of it (or not): the next step's DDL lands mid-stream.
        await agent.flushNow();
      }
      await waitFor(() => settled(agent, app), { timeoutMs: 20_000, message: 'everything confirmed' });
      expect(cloud.invalid).toEqual([]);
      expectMirror(cloud.rowBatches, app);
      expectSchemasHonest(cloud.rowBatches);
      const sweeps = (t: string) =>
        cloud.rowBatches
          .filter((b) => b.source_table === t)
          .flatMap((b) => b.rows.filter((r) => r.op === 'sweep'));
      expect(sweeps('items').length).toBe(2); // ADD COLUMN … DEFAULT 7, RENAME COLUMN
      expect(sweeps('lines').length).toBe(1); // re-created with another key
      expect(sweeps('items')[0]!.sweep).toMatchObject({ buckets: null });
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });

  it('with the agent stopped during the DDL: reconciled at start, nothing is lost', async () => {
    const { app, cloud, config } = await setup('ddl-stopped');
    let agent = await startAgent(config, { logger: silentLogger() });
    try {
      STEPS[0]!(app);
      await waitFor(() => confirmedAll(agent, app), { message: 'first writes confirmed' });
      expect(cloud.distinctCount('items')).toBeGreaterThan(50);
      // Stopped with changes still unread, then every DDL while it is down.
      STEPS[1]!(app);
      await agent.stop();
      for (const step of STEPS.slice(2)) step(app);
      agent = await startAgent(config, { logger: silentLogger() });
      await waitFor(() => settled(agent, app), { timeoutMs: 20_000, message: 'everything confirmed' });
      expect(cloud.invalid).toEqual([]);
      expectMirror(cloud.rowBatches, app);
      expectSchemasHonest(cloud.rowBatches);
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });
});
