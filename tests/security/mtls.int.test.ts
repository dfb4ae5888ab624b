import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { connectNats } from '../../cli/roles/shared';
import { runCli } from '../../cli/program';
import { captureIo as capture } from '../support/cli-io';
import { startAgent } from '../../edge-agent/main';
import { createAppDb, writeTestConfig } from '../../edge-agent/testing/fixtures';
import { readEnv } from '../../infra/config/env';
import { silentLogger } from '../../infra/log';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import {
  type CredentialStore,
  DEVICE_PUBLISH,
  emptyStore,
  issueService,
  saveStore,
} from '../../infra/security/credentials';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import { type TlsBroker, startTlsMosquitto, startTlsNats } from '../support/secure-brokers';
import { waitFor } from '../support/wait';

/**
 * Device identity from certificates made by `sluice devices certs`, on both shipped TLS broker
 * configs: the agent checks the broker against the CA and presents its certificate; the broker
 * maps the certificate to the device's user, so the device ACLs hold; expired, foreign, revoked
 * certificates (and none) are refused; a device rotates to a new certificate mid-stream and the
 * cloud holds every row exactly once.
 */
const PROJECT = '0190a000-0000-7000-8000-0000000000c7';
const cost = { bcryptCost: 4 };

const work = tempDir('mtls');
const caDir = join(work, 'ca');
const storePath = join(work, 'credentials.json');
let store: CredentialStore = emptyStore();
const pw: Record<string, string> = {};

/** `sluice devices certs …` in process; its JSON answer. */
async function certs(args: string[]): Promise<Record<string, unknown>> {
  const io = capture();
  const r = await runCli(['devices', 'certs', ...args, '--store', storePath, '--json'], io);
  if (r.code !== 0) throw new Error(`sluice devices certs ${args.join(' ')}: ${r.code} ${io.stderr()}`);
  return JSON.parse(io.stdout()) as Record<string, unknown>;
}

type Files = { cert: string; key: string; ca: string; serial: string };
async function issue(args: string[], out: string, brokerDir?: string): Promise<Files> {
  const r = (await certs([
    'issue',
    ...args,
    '--ca-dir',
    caDir,
    '--cert-out',
    out,
    ...(brokerDir ? ['--out', brokerDir] : []),
  ])) as {
    files: string[];
    serial: string;
  };
  return { cert: r.files[0]!, key: r.files[1]!, ca: r.files[2]!, serial: r.serial };
}

const files: Record<string, Files> = {};

beforeAll(async () => {
  for (const s of ['bridge', 'cloud'] as const) {
    const r = issueService(store, s, cost);
    store = r.store;
    pw[s] = r.password;
  }
  saveStore(storePath, store);
  files.a = await issue(['acme/gw-01'], join(work, 'a'));
  files.b = await issue(['acme/gw-02'], join(work, 'b'));
  files.expired = await issue(
    ['acme/gw-01', '--not-before', '2020-01-01T00:00:00Z', '--not-after', '2020-01-02T00:00:00Z'],
    join(work, 'expired'),
  );
  files.revoked = await issue(['acme/gw-03'], join(work, 'revoked'));
  await certs(['revoke', 'acme/gw-03', '--ca-dir', caDir]);
  files.bridge = await issue(['--service', 'bridge'], join(work, 'bridge'));
  // The same device name from a CA the brokers never heard of.
  const foreign = (await runCli(
    [
      'devices',
      'certs',
      'issue',
      'acme/gw-01',
      '--ca-dir',
      join(work, 'foreign-ca'),
      '--cert-out',
      join(work, 'foreign'),
      '--json',
    ],
    capture(),
  )) as { code: number };
  expect(foreign.code).toBe(0);
  files.foreign = {
    cert: join(work, 'foreign', 'acme_gw-01.crt'),
    key: join(work, 'foreign', 'acme_gw-01.key'),
    ca: join(work, 'foreign', 'ca.crt'),
    serial: '',
  };
  const list = (await certs(['list', '--ca-dir', caDir])) as {
    items: { identity: string; status: string }[];
  };
  expect(list.items.map((c) => `${c.identity}:${c.status}`).sort()).toEqual(
    [
      'acme/gw-01:expired',
      'acme/gw-01:valid',
      'acme/gw-02:valid',
      'acme/gw-03:revoked',
      'sluice-bridge:valid',
    ].sort(),
  );
}, 60_000);

const tlsOf = (f: Files, ca?: Buffer) => ({
  ca: ca ?? readFileSync(f.ca),
  cert: readFileSync(f.cert),
  key: readFileSync(f.key),
});

const brokers: [string, (s: CredentialStore, ca: string) => Promise<TlsBroker>][] = [
  ['NATS MQTT listener', startTlsNats],
  ['Mosquitto', startTlsMosquitto],
];

describe.each(brokers)('%s with TLS and certificate identities', (name, start) => {
  let broker: TlsBroker;
  let nats: NatsServer | undefined;
  let nc: NatsConnection;
  let bridge: UplinkBridge;
  let worker: IngressWorker;
  let events: JetStreamEventStore;
  let registry: Registry;
  const open: MqttClient[] = [];

  /** A raw MQTT client over TLS; its bridge-side twin reads uplinks (sentinels prove absence). */
  const device = async (tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, url = broker.mqttUrl) => {
    const c = await mqtt.connectAsync(url, {
      clientId: `t-${uuidv7()}`,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...tls,
    });
    open.push(c);
    return c;
  };
  beforeAll(async () => {
    broker = await start(store, caDir);
    if (broker.natsUrl) {
      // The cloud roles' own connection code, over TLS with their password.
      nc = await connectNats(
        readEnv({
          SLUICE_NATS_URL: broker.natsUrl,
          SLUICE_NATS_USER: 'sluice-cloud',
          SLUICE_NATS_PASSWORD: pw.cloud,
          SLUICE_NATS_TLS_CA: broker.caFile,
        }),
        silentLogger(),
        'mtls test',
      );
    } else {
      nats = await startNats();
      nc = await connect({ servers: nats.url });
    }
    await ensureStreams(await jetstreamManager(nc));
    events = await JetStreamEventStore.create(nc);
    registry = await Registry.open(nc);
    worker = new IngressWorker({
      nc,
      handler: new LineageCommandHandler(events),
      registry,
      log: silentLogger(),
    });
    await worker.start();
    bridge = new UplinkBridge({
      nc,
      clientId: `bridge-${uuidv7()}`,
      projectOf: () => PROJECT,
      log: silentLogger(),
      ...(name === 'Mosquitto'
        ? {
            mqttUrl: broker.passwordMqttUrl!,
            username: 'sluice-bridge',
            password: pw.bridge,
            tls: { ca: broker.ca },
          }
        : { mqttUrl: broker.mqttUrl, tls: tlsOf(files.bridge!, broker.ca) }),
    });
    await bridge.start();
  }, 60_000);
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.endAsync(true)));
  });
  afterAll(async () => {
    await bridge?.stop();
    await worker?.stop();
    await nc?.close();
    await nats?.stop();
    await broker?.stop();
  });

  const bridgeSpy = async (): Promise<{ c: MqttClient; got: { topic: string; body: string }[] }> => {
    const c =
      name === 'Mosquitto'
        ? await mqtt.connectAsync(broker.passwordMqttUrl!, {
            clientId: `spy-${uuidv7()}`,
            protocolVersion: 4,
            reconnectPeriod: 0,
            username: 'sluice-bridge',
            password: pw.bridge,
            ca: broker.ca,
          })
        : await device(tlsOf(files.bridge!, broker.ca));
    if (name === 'Mosquitto') open.push(c);
    const got: { topic: string; body: string }[] = [];
    c.on('message', (topic, body) => got.push({ topic, body: body.toString() }));
    for (const t of DEVICE_PUBLISH) await c.subscribeAsync(`+/+/${t}`, { qos: 0 });
    return { c, got };
  };
  it('refuses expired, revoked and foreign certificates and a client without one', async () => {
    const attempts: [string, { ca: Buffer; cert?: Buffer; key?: Buffer }][] = [
      ['expired', tlsOf(files.expired!, broker.ca)],
      ['revoked', tlsOf(files.revoked!, broker.ca)],
      ['unknown CA', tlsOf(files.foreign!, broker.ca)],
      ['no certificate', { ca: broker.ca }],
    ];
    for (const [what, tls] of attempts) {
      const outcome = await device(tls).then(
        () => 'connected',
        (err: Error) => `refused: ${err.message}`,
      );
      expect([what, outcome.startsWith('refused')]).toEqual([what, true]);
    }
    // And the device refuses a broker whose certificate is not from its configured CA.
    const wrongCa = await device(tlsOf(files.a!, readFileSync(files.foreign!.ca))).then(
      () => 'connected',
      (err: Error) => err.message,
    );
    expect(wrongCa).toMatch(/certificate/i);
    const ok = await device(tlsOf(files.a!, broker.ca));
    expect(ok.connected).toBe(true);
  });

  it('lets a certificate act only as its own device: no publishing as another, no reading its controls', async () => {
    const spy = await bridgeSpy();
    const a = await device(tlsOf(files.a!, broker.ca));
    const b = await device(tlsOf(files.b!, broker.ca));
    const aGot: { topic: string; body: string }[] = [];
    const bGot: string[] = [];
    a.on('message', (topic, body) => aGot.push({ topic, body: body.toString() }));
    b.on('message', (_t, body) => bGot.push(body.toString()));
    await b.subscribeAsync('acme/gw-02/sync/ingest/control', { qos: 0 });
    for (const t of [
      'acme/gw-02/sync/ingest/control',
      'acme/gw-02/sync/ingest/receipt',
      '+/+/sync/ingest/control',
      '#',
    ])
      await a.subscribeAsync(t, { qos: 0 }).catch(() => undefined);
    await a.subscribeAsync('acme/gw-01/sync/ingest/control', { qos: 0 });
    for (const t of DEVICE_PUBLISH) {
      await a.publishAsync(`acme/gw-02/${t}`, `forged by A ${t}`, { qos: 1 }).catch(() => undefined);
      await b.publishAsync(`acme/gw-01/${t}`, `forged by B ${t}`, { qos: 1 }).catch(() => undefined);
    }
    await a
      .publishAsync('acme/gw-02/sync/ingest/control', 'forged control', { qos: 1 })
      .catch(() => undefined);
    await a.publishAsync('acme/gw-01/sync/telemetry/batch', 'sentinel A', { qos: 1 });
    await b.publishAsync('acme/gw-02/sync/telemetry/batch', 'sentinel B', { qos: 1 });
    await waitFor(() => ['sentinel A', 'sentinel B'].every((s) => spy.got.some((m) => m.body === s)), {
      message: 'sentinels at the bridge',
    });
    expect(spy.got.filter((m) => m.body.startsWith('forged'))).toEqual([]);
    // The cloud's control for B, then one for A: A sees only its own.
    await bridge.publishToDevice('acme/gw-02/sync/ingest/control', { for: 'B' });
    await bridge.publishToDevice('acme/gw-01/sync/ingest/control', { for: 'A' });
    await waitFor(() => aGot.some((m) => m.body.includes('"A"')) && bGot.length > 0, {
      message: 'controls delivered',
    });
    expect(aGot.map((m) => m.topic)).toEqual(aGot.map(() => 'acme/gw-01/sync/ingest/control'));
    expect(bGot).toEqual([JSON.stringify({ for: 'B' })]);
  });

  it('streams rows from a device that rotates to a new certificate mid-stream: lost 0, duplicated 0', async () => {
    const deviceName = name === 'Mosquitto' ? 'rot-mosq' : 'rot-nats';
    const root = `acme/${deviceName}`;
    const dir = tempDir('agent-mtls');
    // NATS learns of a new certificate from auth.conf (one user per certificate): render, apply.
    const old = await issue([root], join(dir, 'old'), broker.dir);
    await broker.apply();
    // The agent's configured files; rotation replaces them in place.
    const certPath = join(dir, 'device.crt');
    const keyPath = join(dir, 'device.key');
    writeFileSync(certPath, readFileSync(old.cert));
    writeFileSync(keyPath, readFileSync(old.key));
    const app = createAppDb(join(dir, 'app.db'));
    const base = writeTestConfig({
      dir,
      serverUrl: broker.mqttUrl,
      slug: 'acme',
      deviceId: deviceName,
      sourceDb: join(dir, 'app.db'),
    });
    const connects: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void connects.push(line) });
    const agent = await startAgent(
      {
        ...base.config,
        connection: { ...base.config.connection, tls: { caPath: old.ca, certPath, keyPath } },
      },
      { logger },
    );
    let written = 0;
    const ins = app.prepare('INSERT INTO device_state (mode, setpoint) VALUES (?, ?)');
    const write = (n: number) => {
      for (let i = 0; i < n; i++) {
        written++;
        ins.run(`m${written}`, written + 0.25); // never a whole number: the wire spells those apart
      }
    };
    const connected = () => connects.filter((l) => l.includes('"mqtt_connected"')).length;
    try {
      write(40);
      await waitFor(() => (agent.stats().tables.device_state?.confirmed_seq ?? 0) >= 20, {
        message: 'rows flowing with the first certificate',
        timeoutMs: 30_000,
      });
      // Rotation: a new certificate from the CLI replaces the files, the old one is revoked and
      // the broker applies it (NATS reload, Mosquitto restart) while the application keeps writing.
      const fresh = await issue([root], join(dir, 'new'), broker.dir);
      writeFileSync(`${keyPath}.next`, readFileSync(fresh.key));
      writeFileSync(`${certPath}.next`, readFileSync(fresh.cert));
      renameSync(`${keyPath}.next`, keyPath);
      renameSync(`${certPath}.next`, certPath);
      write(40);
      const before = connected();
      await certs(['revoke', '--serial', old.serial, '--ca-dir', caDir, '--out', broker.dir]);
      await broker.apply();
      write(40);
      await waitFor(() => connected() > before, {
        message: 'the agent reconnected with its new certificate',
        timeoutMs: 30_000,
      });
      write(40);
      await waitFor(() => agent.stats().tables.device_state?.confirmed_seq === written, {
        message: `all ${written} rows receipted`,
        timeoutMs: 30_000,
      });
      // The old certificate no longer gets in; the new one does.
      const refused = await device(tlsOf(old, broker.ca)).then(
        () => false,
        () => true,
      );
      expect(refused).toBe(true);
      expect((await device(tlsOf(fresh, broker.ca))).connected).toBe(true);

      // Lost 0, duplicated 0: the cloud's staged rows are the device's table, each change once.
      const dev = await registry.resolveDevice(PROJECT, 'acme', deviceName, uuidv7());
      const { lineageId } = await registry.resolveLineage(dev.device_id, 'device_state', uuidv7());
      const staged = await waitFor(
        async () => {
          const rows = (await events.load(lineageId)).events.flatMap((e) =>
            e.type === 'RowsStaged' ? e.data.rows : [],
          );
          return rows.length >= written ? rows : undefined;
        },
        { message: 'every row staged in the cloud', timeoutMs: 30_000 },
      );
      const seqs = staged.map((r) => r.commit_seq);
      expect(seqs.length).toBe(written);
      expect(new Set(seqs).size).toBe(written);
      const deviceRows = app.prepare('SELECT id, mode, setpoint FROM device_state ORDER BY id').all() as {
        id: number;
        mode: string;
        setpoint: number;
      }[];
      const cloudRows = staged
        .map((r) => r.row as { id: number; mode: string; setpoint: number })
        .map((r) => ({ id: Number(r.id), mode: r.mode, setpoint: Number(r.setpoint) }))
        .sort((x, y) => x.id - y.id);
      expect(cloudRows).toEqual(deviceRows);
    } finally {
      await agent.stop();
      app.close();
    }
  }, 90_000);
});
