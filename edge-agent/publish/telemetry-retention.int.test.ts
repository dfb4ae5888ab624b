import Database from 'better-sqlite3';
import { join } from 'node:path';
import { uuidv7 } from 'uuidv7';
import { startNats, type NatsServer } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { startAgent } from '../main';
import { silentLogger } from '../../infra/log';
import { checkContiguous, FakeCloud } from '../testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../testing/fixtures';

describe('telemetry and retention', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('sends telemetry batches with a strictly increasing, persisted batch_seq and cursor', async () => {
    const dir = tempDir('agent');
    const app = createAppDb(
      join(dir, 'app.db'),
      'CREATE TABLE temps (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, value_c REAL, raw BLOB)',
    );
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'dev-tele',
      sourceDb: join(dir, 'app.db'),
      extraReplication:
        'max_batch_rows: 100\ntable_strategies:\n  temps: { strategy: telemetry, timestamp_column: ts }',
    });
    const ins = app.prepare('INSERT INTO temps (ts, value_c, raw) VALUES (?, ?, ?)');
    const base = Date.parse('2026-04-28T09:00:00Z');
    const write = (from: number, count: number) =>
      app.transaction(() => {
        for (let i = from; i < from + count; i++) {
          // SQLite's own datetime() format (no zone) is UTC.
          const ts = new Date(base + i * 1000).toISOString().replace('T', ' ').replace('Z', '');
          ins.run(ts, 20 + i / 10, Buffer.from([i % 256]));
        }
      })();
    write(0, 250);
    let agent = await startAgent(config, { logger: silentLogger() });
    try {
      await waitFor(() => cloud.telemetryBatches.reduce((n, b) => n + b.row_count, 0) === 250);
      await waitFor(() => agent.stats().confirmedBatches === cloud.telemetryBatches.length);
      await agent.stop();
      write(250, 30);
      agent = await startAgent(config, { logger: silentLogger() });
      await waitFor(() => cloud.telemetryBatches.reduce((n, b) => n + b.row_count, 0) === 280, {
        message: 'rows written while the agent was down',
      });
      expect(cloud.invalid).toEqual([]);
      const seqs = cloud.telemetryBatches.map((b) => b.batch_seq);
      expect(seqs).toEqual(seqs.map((_, i) => i + 1));
      const first = cloud.telemetryBatches[0]!;
      expect(first.schema_columns?.table_name).toBe('temps');
      expect(first.rows[0]).toEqual({
        ts: '2026-04-28T09:00:00.000Z',
        // A REAL that is integral travels as $real (docs/wire-values.md): it stays a REAL.
        fields: { id: 1, value_c: { $real: '20' }, raw: { $blob: 'AA==' } },
      });
      expect(cloud.telemetryBatches.flatMap((b) => b.rows.map((r) => r.fields.id))).toEqual(
        Array.from({ length: 280 }, (_, i) => i + 1),
      );
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });

  it('over local_retention_bytes, drops the oldest rows of the paused table, records the gap, starts a new epoch', async () => {
    const dir = tempDir('agent');
    const app = createAppDb(join(dir, 'app.db'));
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const { config, root } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'dev-ret',
      sourceDb: join(dir, 'app.db'),
      extraReplication: 'local_retention_bytes: 40KiB',
    });
    const agent = await startAgent(config, { logger: silentLogger() });
    try {
      await waitFor(() => agent.stats().connected);
      const pause = {
        control_id: uuidv7(),
        control_kind: 'pause_lineage',
        source_table: 'device_state',
        server_watermark: 0,
        issued_at: new Date().toISOString(),
      };
      await cloud.sendControl(root, pause);
      await waitFor(() => agent.stats().tables.device_state?.paused);
      const oldEpoch = agent.stats().tables.device_state!.journal_epoch!;
      const ins = app.prepare('INSERT INTO device_state (mode) VALUES (?)');
      app.transaction(() => {
        for (let i = 0; i < 3000; i++) ins.run('x'.repeat(100)); // ~78 KiB of change log (keys only)
      })();
      await waitFor(() => agent.stats().dropped_rows > 0, { message: 'retention enforced' });
      const st = agent.stats().tables.device_state!;
      expect(st.journal_epoch).not.toBe(oldEpoch);
      const kept = st.pending_rows;
      expect(kept).toBeGreaterThan(0);
      expect(kept + agent.stats().dropped_rows).toBe(3000);
      const state = new Database(join(dir, 'state.db'), { readonly: true });
      expect(
        state.prepare('SELECT table_name, epoch, first_seq, last_seq, reason, new_epoch FROM gaps').all(),
      ).toEqual([
        {
          table_name: 'device_state',
          epoch: oldEpoch,
          first_seq: 1,
          last_seq: agent.stats().dropped_rows,
          reason: 'local_retention_bytes',
          new_epoch: st.journal_epoch,
        },
      ]);
      state.close();

      await cloud.sendControl(root, { ...pause, control_id: uuidv7(), control_kind: 'resume_lineage' });
      await waitFor(() => cloud.distinctCount('device_state') === kept, { message: 'kept rows delivered' });
      const rows = cloud.firstArrivals('device_state');
      expect(new Set(rows.map((r) => r.epoch))).toEqual(new Set([st.journal_epoch]));
      expect(checkContiguous(rows)).toBeUndefined(); // the new epoch starts at commit_seq 1
    } finally {
      await agent.stop();
      await cloud.close();
      app.close();
    }
  });
});
