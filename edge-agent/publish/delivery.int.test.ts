import Database from 'better-sqlite3';
import { join } from 'node:path';
import { startMosquitto, type MosquittoServer } from '../../tests/support/mosquitto';
import { startNats, type NatsServer } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { type AgentHandle, startAgent } from '../main';
import { silentLogger } from '../../infra/log';
import { applyBatches, deviceRows, journalBacklog } from '../testing/mirror';
import { checkContiguous, FakeCloud } from '../testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../testing/fixtures';

const brokers: [string, () => Promise<{ url: string; stop: () => Promise<void> }>][] = [
  [
    'NATS MQTT listener',
    async () => {
      const n: NatsServer = await startNats();
      return { url: n.mqttUrl, stop: n.stop };
    },
  ],
  [
    'Mosquitto',
    async () => {
      const m: MosquittoServer = await startMosquitto();
      return { url: m.url, stop: m.stop };
    },
  ],
];

describe.each(brokers)('delivery over %s', (_name, start) => {
  let broker: { url: string; stop: () => Promise<void> };
  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  for (const delivery of ['receipt', 'puback'] as const) {
    it(`delivers every change in commit_seq order with no gap (${delivery})`, async () => {
      const dir = tempDir('agent');
      const app = createAppDb(join(dir, 'app.db'));
      const cloud = await FakeCloud.connect(broker.url);
      const { config } = writeTestConfig({
        dir,
        serverUrl: broker.url,
        deviceId: `dev-${delivery}`,
        sourceDb: join(dir, 'app.db'),
        extraReplication: `delivery: ${delivery}\nmax_batch_rows: 500`,
      });
      let agent: AgentHandle | undefined;
      try {
        agent = await startAgent(config, { logger: silentLogger() });
        const ins = app.prepare('INSERT INTO device_state (mode, setpoint, updated_at) VALUES (?, ?, ?)');
        const upd = app.prepare('UPDATE device_state SET setpoint = setpoint + 1 WHERE id = ?');
        const ord = app.prepare('INSERT INTO order_events VALUES (?, ?, ?, ?)');
        app.transaction(() => {
          for (let i = 0; i < 1500; i++) ins.run('cool', i / 2, '2026-01-01T00:00:00Z');
        })();
        for (let i = 1; i <= 300; i++) upd.run(i);
        for (let i = 0; i < 200; i++) ord.run(`o-${i % 17}`, i, i * 3, i % 5 === 0 ? null : 'n');
        app.prepare('DELETE FROM order_events WHERE qty < 30').run();

        await waitFor(
          () => cloud.distinctCount('device_state') === 1800 && cloud.distinctCount('order_events') === 210,
          {
            timeoutMs: 20_000,
            message: 'all changes at the cloud',
          },
        );
        expect(cloud.invalid).toEqual([]);
        expect(checkContiguous(cloud.firstArrivals('device_state'))).toBeUndefined();
        expect(checkContiguous(cloud.firstArrivals('order_events'))).toBeUndefined();
        const deletes = cloud.rowBatches.flatMap((b) => b.rows).filter((r) => r.op === 'delete');
        // Ten rows deleted; an insert read after its row was deleted travels as a delete too.
        expect(deletes.length).toBeGreaterThanOrEqual(10);
        expect(deletes[0]!.pk).toEqual({ order_id: expect.any(String), line: expect.any(Number) });
        // The mirror built from the batches is the device's table.
        expect(applyBatches(cloud.rowBatches, 'order_events')).toEqual(
          deviceRows(app, 'order_events', ['order_id', 'line']),
        );
        expect(applyBatches(cloud.rowBatches, 'device_state')).toEqual(
          deviceRows(app, 'device_state', ['id']),
        );
        // Confirmation frees the journal.
        await waitFor(() => journalBacklog(app) === 0, {
          timeoutMs: 10_000,
          message: 'journal emptied after confirmation',
        });
        expect(cloud.rowBatches[0]!.schema_columns?.table_name).toBeDefined();
      } finally {
        await agent?.stop();
        await cloud.close();
        app.close();
      }
    });
  }
});

describe('receipts over Mosquitto without persistence', () => {
  let mosq: MosquittoServer;
  beforeAll(async () => {
    mosq = await startMosquitto({ persistence: false });
  });
  afterAll(async () => {
    await mosq?.stop();
  });

  it('re-sends a batch the broker acked and then lost, with the same batch_id', async () => {
    const dir = tempDir('agent');
    const app = createAppDb(join(dir, 'app.db'));
    // The cloud has a persistent session but is away: Mosquitto PUBACKs and queues in memory.
    const cloudId = `cloud-${process.pid}`;
    const away = await FakeCloud.connect(mosq.url, { clientId: cloudId, clean: false });
    await away.close();
    const { config } = writeTestConfig({ dir, serverUrl: mosq.url, sourceDb: join(dir, 'app.db') });
    const agent = await startAgent(config, { logger: silentLogger(), backoff: { minMs: 50, maxMs: 300 } });
    let cloud: FakeCloud | undefined;
    try {
      app.prepare("INSERT INTO device_state (mode) VALUES ('heat')").run();
      await waitFor(() => agent.stats().publishedBatches === 1, { message: 'batch published and acked' });
      const state = new Database(join(dir, 'state.db'), { readonly: true });
      const sent = state.prepare('SELECT batch_id FROM inflight').pluck().all() as string[];
      state.close();
      expect(sent).toHaveLength(1);

      await mosq.restart(); // no persistence: the queued batch is gone
      cloud = await FakeCloud.connect(mosq.url, { clientId: cloudId, clean: false });
      await waitFor(() => cloud!.rowBatches.length > 0, { timeoutMs: 10_000, message: 'batch re-sent' });
      expect(cloud.rowBatches[0]!.batch_id).toBe(sent[0]);
      await waitFor(() => agent.stats().confirmedBatches === 1, { message: 'receipt confirms it' });
      expect(agent.stats().resentBatches).toBeGreaterThan(0);
    } finally {
      await agent.stop();
      await cloud?.close();
      app.close();
    }
  });
});

describe('restart and drift (NATS)', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('after a restart re-sends the unconfirmed batch with the same batch_id and the same rows', async () => {
    const dir = tempDir('agent');
    const app = createAppDb(join(dir, 'app.db'));
    const cloud = await FakeCloud.connect(nats.mqttUrl, { receipts: false });
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'dev-restart',
      sourceDb: join(dir, 'app.db'),
    });
    let agent = await startAgent(config, { logger: silentLogger() });
    try {
      for (let i = 0; i < 10; i++) app.prepare("INSERT INTO device_state (mode) VALUES ('a')").run();
      await waitFor(() => cloud.rowBatches.length === 1, { message: 'first send' });
      await agent.stop();
      const first = cloud.rowBatches[0]!;
      // The rows of the unconfirmed batch change meanwhile: the re-send still carries the bytes
      // it was built with (kept in state.db), the change goes in a later batch.
      app.prepare("UPDATE device_state SET mode = 'changed' WHERE id <= 3").run();
      for (let i = 0; i < 5; i++) app.prepare("INSERT INTO device_state (mode) VALUES ('b')").run();
      cloud.receipts = true;
      agent = await startAgent(config, { logger: silentLogger() });
      await waitFor(() => agent.stats().tables.device_state?.pending_rows === 0, {
        message: 'all confirmed',
      });
      const again = cloud.rowBatches.filter((b) => b.batch_id === first.batch_id);
      expect(again.length).toBeGreaterThanOrEqual(2);
      expect(again[1]).toEqual(first);
      expect(cloud.distinctCount('device_state')).toBe(18);
      expect(applyBatches(cloud.rowBatches, 'device_state')).toEqual(deviceRows(app, 'device_state', ['id']));
      expect(checkContiguous(cloud.firstArrivals('device_state'))).toBeUndefined();
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });

  it('sends schema_columns again on the first batch after a schema change', async () => {
    const dir = tempDir('agent');
    const app = createAppDb(join(dir, 'app.db'));
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'dev-drift',
      sourceDb: join(dir, 'app.db'),
    });
    const agent = await startAgent(config, { logger: silentLogger() });
    try {
      app.prepare("INSERT INTO device_state (mode) VALUES ('a')").run();
      await waitFor(() => cloud.distinctCount('device_state') === 1);
      app.prepare("INSERT INTO device_state (mode) VALUES ('b')").run();
      await waitFor(() => cloud.distinctCount('device_state') === 2);
      app.exec('ALTER TABLE device_state ADD COLUMN firmware TEXT');
      // The agent notices the DDL (schema_version) and records a third schema version.
      await waitFor(() => app.prepare('SELECT count(*) FROM __sluice_schema').pluck().get() === 3, {
        message: 'triggers reinstalled for the new schema',
      });
      app.prepare("INSERT INTO device_state (mode, firmware) VALUES ('c', '1.2.3')").run();
      await waitFor(() => cloud.distinctCount('device_state') === 3);
      const batches = cloud.rowBatches.filter((b) => b.source_table === 'device_state');
      expect(batches.map((b) => b.schema_columns !== undefined)).toEqual([true, false, true]);
      expect(batches[2]!.schema_hash).not.toBe(batches[0]!.schema_hash);
      expect(batches[2]!.schema_columns!.columns.map((c) => c.name)).toContain('firmware');
      expect(batches[2]!.rows[0]!.row).toMatchObject({ mode: 'c', firmware: '1.2.3' });
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });
});
