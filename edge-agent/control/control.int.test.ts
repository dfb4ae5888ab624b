import { logRows } from '../testing/mirror';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { uuidv7 } from 'uuidv7';
import { startMosquitto } from '../../tests/support/mosquitto';
import { startNats } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { type AgentHandle, startAgent } from '../main';
import { silentLogger } from '../../infra/log';
import { FakeCloud } from '../testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../testing/fixtures';
import { signControl } from './signature';

const brokers: [string, () => Promise<{ url: string; stop: () => Promise<void> }>][] = [
  [
    'NATS MQTT listener',
    async () => {
      const n = await startNats();
      return { url: n.mqttUrl, stop: n.stop };
    },
  ],
  [
    'Mosquitto',
    async () => {
      const m = await startMosquitto();
      return { url: m.url, stop: m.stop };
    },
  ],
];

const control = (kind: string, table: string, extra: Record<string, unknown> = {}) => ({
  control_id: uuidv7(),
  control_kind: kind,
  source_table: table,
  issued_at: new Date().toISOString(),
  ...extra,
});

type Ctx = { app: Database.Database; cloud: FakeCloud; agent: AgentHandle; root: string; dir: string };

async function setup(url: string, deviceId: string, security = ''): Promise<Ctx> {
  const dir = tempDir('agent');
  const app = createAppDb(join(dir, 'app.db'));
  const cloud = await FakeCloud.connect(url);
  const { config, root } = writeTestConfig({
    dir,
    serverUrl: url,
    deviceId,
    sourceDb: join(dir, 'app.db'),
    security,
  });
  const agent = await startAgent(config, { logger: silentLogger() });
  await waitFor(() => agent.stats().connected, { message: 'agent connected' });
  return { app, cloud, agent, root, dir };
}

async function teardown(c: Ctx | undefined): Promise<void> {
  await c?.agent.stop();
  await c?.cloud.close();
  c?.app.close();
}

const journalRows = (app: Database.Database, table: string) => logRows(app, table);

describe.each(brokers)('downlinks over %s', (_name, start) => {
  let broker: { url: string; stop: () => Promise<void> };
  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('pause stops one table and leaves the other flowing; resume drains from watermark + 1', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup(broker.url, 'dev-pause');
      const { app, cloud, agent, root } = c;
      const ins = app.prepare("INSERT INTO device_state (mode) VALUES ('m')");
      const ord = app.prepare('INSERT INTO order_events VALUES (?, ?, 1, null)');
      for (let i = 0; i < 100; i++) ins.run();
      for (let i = 0; i < 100; i++) ord.run('a', i);
      await waitFor(
        () => cloud.distinctCount('device_state') === 100 && cloud.distinctCount('order_events') === 100,
      );

      const pause = control('pause_lineage', 'device_state', {
        server_watermark: 100,
        reason: 'backpressure',
      });
      await cloud.sendControl(root, pause);
      await waitFor(
        () => cloud.acks.includes(pause.control_id) && agent.stats().tables.device_state?.paused,
        {
          message: 'pause acked and applied',
        },
      );
      for (let i = 0; i < 50; i++) ins.run();
      for (let i = 100; i < 150; i++) ord.run('a', i);
      await waitFor(() => cloud.distinctCount('order_events') === 150, {
        message: 'other table keeps flowing',
      });
      await agent.flushNow();
      expect(cloud.distinctCount('device_state')).toBe(100);
      // Kept durably while paused (plus the confirmed entry 100, kept for its commit_seq).
      expect(journalRows(app, 'device_state')).toBe(51);

      const before = cloud.arrivals.length;
      const resume = control('resume_lineage', 'device_state', { server_watermark: 110 });
      await cloud.sendControl(root, resume);
      await waitFor(
        () => cloud.arrivals.slice(before).filter((a) => a.table === 'device_state').length >= 40,
        {
          message: 'drained after resume',
        },
      );
      const drained = cloud.arrivals
        .slice(before)
        .filter((a) => a.table === 'device_state')
        .map((a) => a.seq);
      expect(drained).toEqual(Array.from({ length: 40 }, (_, i) => 111 + i));
      // Everything confirmed is deleted but the entry holding the largest commit_seq.
      await waitFor(() => journalRows(app, 'device_state') === 1, {
        message: 'journal cleaned after resume',
      });
    } finally {
      await teardown(c);
    }
  });

  it('state_write applies rows and confirms them with lkcv; a change made before it keeps the older version', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup(broker.url, 'dev-sw');
      const { app, cloud, agent, root } = c;
      const rowsOf = (id: number) => cloud.rowBatches.flatMap((b) => b.rows).filter((r) => r.pk.id === id);
      app.prepare("INSERT INTO device_state (id, mode, setpoint) VALUES (1, 'idle', 18)").run();
      await waitFor(() => cloud.distinctCount('device_state') === 1);

      // A device change journaled (the table is paused, so it is not sent) before the write.
      const pause = control('pause_lineage', 'device_state', { server_watermark: 1 });
      await cloud.sendControl(root, pause);
      await waitFor(() => agent.stats().tables.device_state?.paused === true, { message: 'paused' });
      app.prepare('UPDATE device_state SET setpoint = 50 WHERE id = 1').run();

      const sw = control('state_write', 'device_state', {
        rows: [
          { pk: { id: 1 }, values: { mode: 'cloud', setpoint: 21.5 }, cloud_version: 7 },
          { pk: { id: 42 }, values: { mode: 'fresh' }, cloud_version: 3 },
        ],
      });
      await cloud.sendControl(root, sw);
      await waitFor(() => cloud.acks.includes(sw.control_id) && agent.stats().controls.applied === 2);
      expect(app.prepare('SELECT mode, setpoint FROM device_state WHERE id = 1').get()).toEqual({
        mode: 'cloud',
        setpoint: 21.5,
      });
      expect(app.prepare('SELECT mode FROM device_state WHERE id = 42').pluck().get()).toBe('fresh');
      // The device's own change, then one confirmation per applied key (and the confirmed
      // entry 1, kept for its commit_seq).
      expect(journalRows(app, 'device_state')).toBe(4);

      await cloud.sendControl(root, control('resume_lineage', 'device_state', { server_watermark: 1 }));
      await waitFor(() => cloud.distinctCount('device_state') === 4, { message: 'drained after resume' });
      const [before, confirmation] = rowsOf(1).slice(1);
      // Values are read when the batch is built: the device's own change carries the row as it
      // is now, still without a version (it was made before the cloud's write).
      expect(before).toMatchObject({ commit_seq: 2, op: 'update', row: { setpoint: 21.5 } });
      expect(before).not.toHaveProperty('lkcv'); // made before the cloud's write: no version yet
      expect(confirmation).toMatchObject({
        commit_seq: 3,
        op: 'update',
        lkcv: 7,
        row: { id: 1, mode: 'cloud', setpoint: 21.5 },
      });
      expect(rowsOf(42)).toEqual([
        expect.objectContaining({
          commit_seq: 4,
          op: 'insert',
          lkcv: 3,
          row: expect.objectContaining({ mode: 'fresh' }),
        }),
      ]);

      // A change after the write carries its version.
      app.prepare('UPDATE device_state SET setpoint = 99 WHERE id = 1').run();
      await waitFor(() => cloud.distinctCount('device_state') === 5, {
        message: 'device change after write-back',
      });
      expect(rowsOf(1).at(-1)).toMatchObject({ commit_seq: 5, op: 'update', lkcv: 7 });

      // Redelivered: ACKed again, applied once.
      await cloud.sendControl(root, sw);
      await waitFor(() => cloud.acks.filter((id) => id === sw.control_id).length === 2, {
        message: 're-ACK',
      });
      expect(agent.stats().controls.applied).toBe(3); // pause, write, resume
      // An older version of a key arriving late is skipped: the device never goes back.
      const older = control('state_write', 'device_state', {
        rows: [{ pk: { id: 1 }, values: { mode: 'older' }, cloud_version: 6 }],
      });
      await cloud.sendControl(root, older);
      await waitFor(() => agent.stats().controls.applied === 4, { message: 'older write handled' });
      expect(app.prepare('SELECT mode, setpoint FROM device_state WHERE id = 1').get()).toEqual({
        mode: 'cloud',
        setpoint: 99,
      });
      await agent.flushNow();
      expect(cloud.distinctCount('device_state')).toBe(5);
      // A newer one while the table flows: its confirmation goes out with the next flush.
      await cloud.sendControl(
        root,
        control('state_write', 'device_state', {
          rows: [{ pk: { id: 42 }, values: { mode: 'newer' }, cloud_version: 8 }],
        }),
      );
      await waitFor(() => cloud.distinctCount('device_state') === 6, { message: 'confirmation of v8' });
      expect(rowsOf(42).at(-1)).toMatchObject({ commit_seq: 6, lkcv: 8, row: { mode: 'newer' } });
    } finally {
      await teardown(c);
    }
  });
});

describe('signed controls', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('drops forged and unsigned controls and obeys signed ones', async () => {
    const cloudKey = generateKeyPairSync('ed25519');
    const attacker = generateKeyPairSync('ed25519');
    const pem = cloudKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const security = `security:\n  signed_control:\n    enabled: true\n    public_key: |\n${pem
      .trim()
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n')}\n`;
    let c: Ctx | undefined;
    try {
      c = await setup(nats.mqttUrl, 'dev-sig', security);
      const { cloud, agent, root } = c;
      const forged = signControl(
        control('pause_lineage', 'device_state', { server_watermark: 0 }),
        attacker.privateKey,
      );
      const unsigned = control('pause_lineage', 'device_state');
      const tampered = {
        ...signControl(control('pause_lineage', 'order_events'), cloudKey.privateKey),
        source_table: 'device_state',
      };
      await cloud.sendControl(root, forged);
      await cloud.sendControl(root, unsigned);
      await cloud.sendControl(root, tampered);
      const genuine = signControl(
        control('pause_lineage', 'order_events', { server_watermark: 0, root_topic: root }),
        cloudKey.privateKey,
      );
      await cloud.sendControl(root, genuine);
      // Controls arrive in order on one session: once the genuine one is handled, so were the others.
      await waitFor(() => cloud.acks.includes(genuine.control_id), { message: 'signed control acked' });
      expect(agent.stats().tables.order_events?.paused).toBe(true);
      expect(agent.stats().tables.device_state?.paused).toBe(false);
      expect(cloud.acks).toEqual([genuine.control_id]);
      expect(agent.stats().controls.rejected).toBe(3);
    } finally {
      await teardown(c);
    }
  });
});
