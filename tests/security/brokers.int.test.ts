import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { readEnv } from '../../infra/config/env';
import { silentLogger } from '../../infra/log';
import { ensureStreams } from '../../infra/nats/streams';
import {
  type CredentialStore,
  DEVICE_PUBLISH,
  emptyStore,
  issueDevice,
  issueService,
} from '../../infra/security/credentials';
import { connectNats } from '../../cli/roles/shared';
import { startAgent } from '../../edge-agent/main';
import { createAppDb, writeTestConfig } from '../../edge-agent/testing/fixtures';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import { type SecureBroker, startSecureMosquitto, startSecureNats } from '../support/secure-brokers';
import { waitFor } from '../support/wait';

/**
 * The shipped broker configs (infra/nats, infra/mosquitto) with credentials issued by the same
 * code as `sluice devices credentials`, on real brokers. Absence of a forged message is proven
 * with a sentinel: MQTT keeps the order of one publisher's messages to one subscriber, so once a
 * later message has arrived, an earlier forged one that the broker let through would have too.
 */

const cost = { bcryptCost: 4 }; // the minimum: the test is about permissions, not hashing cost
let store: CredentialStore = emptyStore();
const pw: Record<string, string> = {};
for (const root of ['acme/gw-01', 'acme/gw-02', '/solo']) {
  const r = issueDevice(store, root, cost);
  store = r.store;
  pw[root] = r.password;
}
for (const s of ['bridge', 'cloud'] as const) {
  const r = issueService(store, s, cost);
  store = r.store;
  pw[s] = r.password;
  pw[r.username] = r.password;
}

type Inbox = { client: MqttClient; got: { topic: string; body: string }[] };

async function client(url: string, username: string | undefined, password: string | undefined, id: string) {
  const c = await mqtt.connectAsync(url, {
    clientId: id,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...(username !== undefined ? { username, password } : {}),
  });
  const inbox: Inbox = { client: c, got: [] };
  c.on('message', (topic, body) => inbox.got.push({ topic, body: body.toString() }));
  return inbox;
}

/** Subscribe and swallow a refusal: the property is what arrives, not what the SUBACK says. */
async function trySubscribe(c: MqttClient, topic: string, qos: 0 | 1 = 0): Promise<number> {
  try {
    const granted = await c.subscribeAsync(topic, { qos });
    return granted[0]?.qos ?? 128;
  } catch {
    return 128;
  }
}

const brokers: [string, (s: CredentialStore) => Promise<SecureBroker>][] = [
  ['NATS MQTT listener', startSecureNats],
  ['Mosquitto', startSecureMosquitto],
];

describe.each(brokers)('shipped %s config with per-device credentials', (name, start) => {
  let broker: SecureBroker;
  const open: Inbox[] = [];
  const connectAs = async (user: string | undefined, password?: string) => {
    const c = await client(
      broker.mqttUrl,
      user,
      password ?? (user ? pw[user] : undefined),
      `c-${open.length}-${Date.now()}`,
    );
    open.push(c);
    return c;
  };
  beforeAll(async () => {
    broker = await start(store);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.client.endAsync(true)));
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('refuses anonymous clients, unknown users, wrong passwords and another device’s name', async () => {
    const attempts: [string | undefined, string | undefined][] = [
      [undefined, undefined],
      ['acme/gw-99', pw['acme/gw-01']],
      ['acme/gw-01', 'not-the-password'],
      ['acme/gw-02', pw['acme/gw-01']],
      ['sluice-bridge', pw['acme/gw-01']],
      ['acme/gw-01', ''],
    ];
    for (const [user, pass] of attempts) {
      await expect(client(broker.mqttUrl, user, pass, `bad-${Math.random()}`)).rejects.toThrow(
        /authori[sz]ed/i,
      );
    }
    const ok = await connectAs('acme/gw-01');
    expect(ok.client.connected).toBe(true);
  });

  it('drops what a device publishes under another root or on any control or receipt topic', async () => {
    const bridge = await connectAs('sluice-bridge');
    for (const t of DEVICE_PUBLISH) await bridge.client.subscribeAsync(`+/+/${t}`, { qos: 0 });
    const victim = await connectAs('acme/gw-02');
    await victim.client.subscribeAsync(['acme/gw-02/sync/ingest/control', 'acme/gw-02/sync/ingest/receipt'], {
      qos: 0,
    });
    const solo = await connectAs('/solo');
    await solo.client.subscribeAsync(['/solo/sync/ingest/control', '/solo/sync/ingest/receipt'], { qos: 0 });
    const attacker = await connectAs('acme/gw-01');
    await attacker.client.subscribeAsync(
      ['acme/gw-01/sync/ingest/control', 'acme/gw-01/sync/ingest/receipt'],
      {
        qos: 0,
      },
    );

    const forged = [
      ...DEVICE_PUBLISH.flatMap((t) => [
        `acme/gw-02/${t}`, // a neighbour
        `/solo/${t}`, // a device without a slug
        `other/gw-01/${t}`, // the same device name under another slug
        `acme/GW-01/${t}`, // case
        `acme/gw\u201001/${t}`, // a unicode hyphen that looks the same
        `acme/gw-01/${t}/extra`, // below its own topics
        `acme/gw-01/${t.replace('sync/', '')}`,
      ]),
      'acme/gw-01/sync/ingest/control', // its own control topic: controls come from the cloud only
      'acme/gw-01/sync/ingest/receipt',
      'acme/gw-02/sync/ingest/control',
      'acme/gw-02/sync/ingest/receipt',
      '/solo/sync/ingest/control',
      'acme/gw-01',
      'acme',
      'sluice-bridge/sync/rows/batch',
    ];
    for (const topic of forged) {
      await attacker.client.publishAsync(topic, `forged ${topic}`, {
        qos: 1,
        retain: topic.includes('ingest'),
      });
    }
    expect(attacker.client.connected).toBe(true);
    await attacker.client.publishAsync('acme/gw-01/sync/rows/batch', 'sentinel', { qos: 1 });
    await waitFor(() => bridge.got.some((m) => m.body === 'sentinel'), { message: 'sentinel at the bridge' });
    // The cloud's own controls still arrive, after the forged ones were PUBACKed.
    for (const root of ['acme/gw-02', '/solo', 'acme/gw-01'])
      await bridge.client.publishAsync(`${root}/sync/ingest/control`, 'genuine', { qos: 1 });
    await waitFor(() => [victim, solo, attacker].every((d) => d.got.some((m) => m.body === 'genuine')), {
      message: 'genuine controls delivered',
    });
    expect(bridge.got).toEqual([{ topic: 'acme/gw-01/sync/rows/batch', body: 'sentinel' }]);
    expect(victim.got).toEqual([{ topic: 'acme/gw-02/sync/ingest/control', body: 'genuine' }]);
    expect(solo.got).toEqual([{ topic: '/solo/sync/ingest/control', body: 'genuine' }]);
    expect(attacker.got).toEqual([{ topic: 'acme/gw-01/sync/ingest/control', body: 'genuine' }]);

    // Nothing forged was retained either: a new subscriber of the victim's topics gets nothing old.
    const late = await connectAs('acme/gw-02');
    await late.client.subscribeAsync(['acme/gw-02/sync/ingest/control', 'acme/gw-02/sync/ingest/receipt'], {
      qos: 0,
    });
    await bridge.client.publishAsync('acme/gw-02/sync/ingest/receipt', 'fresh', { qos: 1 });
    await waitFor(() => late.got.some((m) => m.body === 'fresh'), { message: 'fresh receipt' });
    expect(late.got).toEqual([{ topic: 'acme/gw-02/sync/ingest/receipt', body: 'fresh' }]);
  });

  it('lets no dotted or wildcard topic reach another device’s subjects', async () => {
    const bridge = await connectAs('sluice-bridge');
    for (const t of DEVICE_PUBLISH) await bridge.client.subscribeAsync(`+/+/${t}`, { qos: 0 });
    const victim = await connectAs('acme/gw-02');
    await victim.client.subscribeAsync('acme/gw-02/sync/ingest/control', { qos: 0 });
    // On NATS `.` separates subject tokens: `acme.gw-02/…` must not become acme.gw-02's subject.
    const tricks = [
      'acme.gw-02/sync/rows/batch',
      'acme/gw-02.sync.rows.batch',
      'acme/gw-01/sync.ingest.control',
      'acme/gw-02/sync/ingest/control.',
      'acme/+/sync/rows/batch',
      'acme/#',
      'acme/gw-02/sync/ingest/*',
      'acme/gw-02/sync/ingest/>',
    ];
    for (const topic of tricks) {
      // A fresh connection each: a broker may close one that publishes such a topic.
      const c = await client(broker.mqttUrl, 'acme/gw-01', pw['acme/gw-01'], `trick-${Math.random()}`);
      const closed = new Promise<string>((resolve) => c.client.once('close', () => resolve('closed')));
      const outcome = await Promise.race([
        c.client.publishAsync(topic, `trick ${topic}`, { qos: 1 }).then(
          () => 'puback',
          () => 'refused',
        ),
        closed,
      ]);
      expect(['puback', 'refused', 'closed']).toContain(outcome);
      await c.client.endAsync(true);
    }
    const sentinel = await connectAs('acme/gw-01');
    await sentinel.client.publishAsync('acme/gw-01/sync/rows/batch', 'sentinel', { qos: 1 });
    await bridge.client.publishAsync('acme/gw-02/sync/ingest/control', 'genuine', { qos: 1 });
    await waitFor(() => bridge.got.some((m) => m.body === 'sentinel'), { message: 'sentinel' });
    await waitFor(() => victim.got.some((m) => m.body === 'genuine'), { message: 'genuine' });
    expect(bridge.got.filter((m) => m.body.startsWith('trick'))).toEqual([]);
    expect(victim.got).toEqual([{ topic: 'acme/gw-02/sync/ingest/control', body: 'genuine' }]);
  });

  it('publishes no last will under another root or on a control topic', async () => {
    const bridge = await connectAs('sluice-bridge');
    for (const t of DEVICE_PUBLISH) await bridge.client.subscribeAsync(`+/+/${t}`, { qos: 0 });
    const victim = await connectAs('acme/gw-02');
    await victim.client.subscribeAsync(['acme/gw-02/sync/ingest/control', 'acme/gw-02/sync/ingest/receipt'], {
      qos: 0,
    });
    const wills = [
      'acme/gw-02/sync/ingest/control',
      'acme/gw-02/sync/ingest/receipt',
      'acme/gw-02/sync/rows/batch',
      'acme/gw-01/sync/ingest/control',
    ];
    for (const topic of wills) {
      const c = await mqtt
        .connectAsync(broker.mqttUrl, {
          clientId: `will-${Math.random()}`,
          protocolVersion: 4,
          reconnectPeriod: 0,
          username: 'acme/gw-01',
          password: pw['acme/gw-01'],
          will: { topic, payload: Buffer.from(`will ${topic}`), qos: 1, retain: false },
        })
        .catch(() => undefined); // a broker may refuse the CONNECT outright
      if (c) {
        const gone = new Promise((resolve) => c.stream.once('close', resolve));
        c.stream.destroy(); // an abrupt end: the broker sends the will, if it would
        await gone;
        c.end(true);
      }
    }
    // Its own will on its own uplink topic is delivered: wills work (and the forged ones, sent at
    // earlier disconnects, would have arrived by now).
    const own = await mqtt.connectAsync(broker.mqttUrl, {
      clientId: `will-own-${Math.random()}`,
      protocolVersion: 4,
      reconnectPeriod: 0,
      username: 'acme/gw-01',
      password: pw['acme/gw-01'],
      will: { topic: 'acme/gw-01/sync/rows/batch', payload: Buffer.from('own will'), qos: 1, retain: false },
    });
    own.stream.destroy();
    await waitFor(() => bridge.got.some((m) => m.body === 'own will'), { message: 'own will delivered' });
    await bridge.client.publishAsync('acme/gw-02/sync/ingest/control', 'genuine', { qos: 1 });
    await waitFor(() => victim.got.some((m) => m.body === 'genuine'), { message: 'genuine' });
    expect(bridge.got).toEqual([{ topic: 'acme/gw-01/sync/rows/batch', body: 'own will' }]);
    expect(victim.got).toEqual([{ topic: 'acme/gw-02/sync/ingest/control', body: 'genuine' }]);
  });

  it('gives no device another device’s session by taking its client id', async () => {
    const bridge = await connectAs('sluice-bridge');
    // The victim's persistent session holds a QoS 1 subscription to its controls.
    const victimId = `sluice-agent-gw-02-${Math.random().toString(16).slice(2, 8)}`;
    const victim = await mqtt.connectAsync(broker.mqttUrl, {
      clientId: victimId,
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 0,
      username: 'acme/gw-02',
      password: pw['acme/gw-02'],
    });
    await victim.subscribeAsync('acme/gw-02/sync/ingest/control', { qos: 1 });
    await victim.endAsync();
    await bridge.client.publishAsync('acme/gw-02/sync/ingest/control', 'queued while offline', { qos: 1 });
    // The attacker connects under the victim's client id with its own credentials.
    const got: string[] = [];
    const attacker = await mqtt
      .connectAsync(broker.mqttUrl, {
        clientId: victimId,
        protocolVersion: 4,
        clean: false,
        reconnectPeriod: 0,
        username: 'acme/gw-01',
        password: pw['acme/gw-01'],
      })
      .catch(() => undefined); // refusing the CONNECT is fine too
    if (attacker) {
      attacker.on('message', (_t, p) => got.push(p.toString()));
      await bridge.client.publishAsync('acme/gw-02/sync/ingest/control', 'sent to the session', { qos: 1 });
      await attacker.subscribeAsync('acme/gw-01/sync/ingest/control', { qos: 1 });
      await bridge.client.publishAsync('acme/gw-01/sync/ingest/control', 'sentinel', { qos: 1 });
      await waitFor(() => got.includes('sentinel'), { message: 'sentinel' });
      await attacker.endAsync(true);
    }
    expect(got.filter((b) => b !== 'sentinel')).toEqual([]);
  });

  it('delivers no other device’s controls or receipts, whatever a device subscribes to', async () => {
    const bridge = await connectAs('sluice-bridge');
    const attacker = await connectAs('acme/gw-01');
    const spies = [
      'acme/gw-02/sync/ingest/control',
      'acme/gw-02/sync/ingest/receipt',
      '/solo/sync/ingest/control',
      '+/+/sync/ingest/control',
      '+/+/sync/ingest/receipt',
      '+/gw-02/#',
      'acme/#',
      '#',
      '+/#',
      '$SYS/#',
      '$MQTT/sub/#',
    ];
    const granted: Record<string, number> = {};
    for (const t of spies) granted[t] = await trySubscribe(attacker.client, t);
    await attacker.client.subscribeAsync('acme/gw-01/sync/ingest/control', { qos: 0 });
    for (const root of ['acme/gw-02', '/solo']) {
      await bridge.client.publishAsync(`${root}/sync/ingest/control`, `control for ${root}`, { qos: 1 });
      await bridge.client.publishAsync(`${root}/sync/ingest/receipt`, `receipt for ${root}`, { qos: 1 });
    }
    // Another device's uplinks are not readable either.
    const victim = await connectAs('acme/gw-02');
    await victim.client.publishAsync('acme/gw-02/sync/rows/batch', 'victim rows', { qos: 1 });
    await bridge.client.publishAsync('acme/gw-01/sync/ingest/control', 'sentinel', { qos: 1 });
    await waitFor(() => attacker.got.some((m) => m.body === 'sentinel'), { message: 'sentinel control' });
    // Only its own control, delivered through whichever of its subscriptions match it.
    expect(attacker.got.map((m) => m.topic)).toEqual(
      attacker.got.map(() => 'acme/gw-01/sync/ingest/control'),
    );
    expect(attacker.got.every((m) => m.body === 'sentinel')).toBe(true);
    if (name === 'NATS MQTT listener') {
      // NATS refuses the subscriptions outright; Mosquitto grants them and filters every delivery.
      for (const t of spies) expect([t, granted[t]]).toEqual([t, 128]);
    }
  });

  it('lets the bridge take a real agent’s batches in and send its receipts and controls', async () => {
    let nats: NatsServer | undefined;
    let nc: NatsConnection | undefined;
    const dir = tempDir('agent-secure');
    const app = createAppDb(join(dir, 'app.db'));
    let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
    let bridge: UplinkBridge | undefined;
    try {
      if (broker.natsUrl) {
        nc = await connect({ servers: broker.natsUrl, user: 'sluice-cloud', pass: pw.cloud });
      } else {
        nats = await startNats();
        nc = await connect({ servers: nats.url });
      }
      await ensureStreams(await jetstreamManager(nc));
      bridge = new UplinkBridge({
        nc,
        mqttUrl: broker.mqttUrl,
        clientId: `bridge-${Date.now()}`,
        username: 'sluice-bridge',
        password: pw.bridge,
        projectOf: () => '0190a000-0000-7000-8000-0000000000f1',
        log: silentLogger(),
      });
      await bridge.start();
      const base = writeTestConfig({
        dir,
        serverUrl: broker.mqttUrl,
        slug: 'acme',
        deviceId: 'gw-01',
        sourceDb: join(dir, 'app.db'),
      });
      const config = {
        ...base.config,
        connection: { ...base.config.connection, username: 'acme/gw-01', password: pw['acme/gw-01'] },
      };
      agent = await startAgent(config, { logger: silentLogger() });
      await waitFor(() => agent!.stats().connected, { message: 'agent connected with its credentials' });
      const ins = app.prepare("INSERT INTO device_state (mode) VALUES ('m')");
      for (let i = 0; i < 20; i++) ins.run();
      // Receipt mode: the journal empties only when the bridge's receipts reached the device.
      await waitFor(() => agent!.stats().tables.device_state?.confirmed_seq === 20, {
        message: 'batches receipted through the broker ACL',
        timeoutMs: 30_000,
      });
      await bridge.publishToDevice('acme/gw-01/sync/ingest/control', {
        control_id: '0190a000-0000-7000-8000-0000000000c9',
        control_kind: 'pause_lineage',
        source_table: 'device_state',
        server_watermark: 20,
        issued_at: new Date().toISOString(),
      });
      await waitFor(() => agent!.stats().tables.device_state?.paused, {
        message: 'control reached the agent',
      });
    } finally {
      await agent?.stop();
      await bridge?.stop();
      await nc?.close();
      await nats?.stop();
      app.close();
    }
  });

  if (name === 'NATS MQTT listener') {
    it('lets the cloud roles in with their NATS user, and no device or bridge credential', async () => {
      const env = readEnv({
        SLUICE_NATS_URL: broker.natsUrl,
        SLUICE_NATS_USER: 'sluice-cloud',
        SLUICE_NATS_PASSWORD: pw.cloud,
      });
      const nc = await connectNats(env, silentLogger(), 'security test');
      await ensureStreams(await jetstreamManager(nc));
      await nc.close();
      const refused: [string | undefined, string | undefined][] = [
        [undefined, undefined],
        ['sluice-cloud', 'wrong'],
        ['acme/gw-01', pw['acme/gw-01']], // an MQTT-only user
        ['sluice-bridge', pw.bridge],
      ];
      for (const [user, pass] of refused) {
        await expect(
          connect({ servers: broker.natsUrl, maxReconnectAttempts: 0, ...(user ? { user, pass } : {}) }),
        ).rejects.toThrow(/authorization/i);
      }
    });
  }
});
