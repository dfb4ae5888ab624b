import mqtt from 'mqtt';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { STREAMS } from '../../infra/nats/names';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { createLogger, silentLogger } from '../../infra/log';
import { createMetrics } from '../../infra/metrics';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import { DEVICE_STATE } from '../support/fixtures';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const PROJECT = '0190a000-0000-7000-8000-000000000001';
function rowBatch(seqs: number[], epoch: string) {
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: uuidv7(),
    journal_epoch: epoch,
    source_table: 'device_state',
    schema_hash: schemaHash(DEVICE_STATE),
    schema_columns: DEVICE_STATE,
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: seqs.map((s) => ({ commit_seq: s, op: 'insert', pk: { id: s }, row: { id: s, mode: `m${s}` } })),
  };
}

let nats: NatsServer;
let mosq: MosquittoServer;
beforeAll(async () => {
  [nats, mosq] = await Promise.all([startNats(), startMosquitto({ persistence: true })]);
});
afterAll(async () => {
  await Promise.all([nats?.stop(), mosq?.stop()]);
});

async function cloud(mqttUrl: string, clientId: string) {
  const nc = await connect({ servers: nats.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  await ensureStreams(await jetstreamManager(nc));
  const metrics = createMetrics();
  const bridge = new UplinkBridge({
    nc,
    mqttUrl,
    clientId,
    projectOf: () => PROJECT,
    log: process.env.DBG ? createLogger({ level: 'debug' }) : silentLogger(),
    metrics,
  });
  const store = await JetStreamEventStore.create(nc);
  const registry = await Registry.open(nc);
  const handler = new LineageCommandHandler(store);
  const worker = new IngressWorker({ nc, handler, registry, log: silentLogger(), metrics });
  await bridge.start();
  await worker.start();
  return {
    nc,
    bridge,
    store,
    registry,
    metrics,
    stop: async () => {
      await worker.stop();
      await bridge.stop();
      await nc.close();
    },
  };
}

async function eventsOf(c: Awaited<ReturnType<typeof cloud>>, deviceName: string) {
  const device = await c.registry.resolveDevice(PROJECT, 'acme', deviceName, uuidv7());
  const { lineageId } = await c.registry.resolveLineage(device.device_id, 'device_state', uuidv7());
  return (await c.store.load(lineageId)).events;
}

describe.each([
  ['NATS MQTT listener', () => nats.mqttUrl],
  ['Mosquitto', () => mosq.url],
])('bridge + worker on %s', (_name, url) => {
  it('turns a device batch into lineage events, sends a receipt, and rejects bad input with a code', async () => {
    const c = await cloud(url(), `bridge-${uuidv7()}`);
    const dev = `gw-${uuidv7().slice(-6)}`;
    const device = await mqtt.connectAsync(url(), { clientId: dev, clean: false, protocolVersion: 4 });
    const receipts: unknown[] = [];
    device.on('message', (_t, p) => receipts.push(JSON.parse(p.toString())));
    await device.subscribeAsync(`acme/${dev}/sync/ingest/receipt`, { qos: 1 });
    const epoch = uuidv7();
    const b1 = rowBatch([1, 2, 3], epoch);
    await device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(b1), { qos: 1 });
    const events = await waitFor(
      async () => {
        const ev = await eventsOf(c, dev);
        return ev.some((e) => e.type === 'RowsStaged') ? ev : undefined;
      },
      { message: 'lineage events' },
    );
    expect(events.map((e) => e.type)).toEqual([
      'LineageRegistered',
      'SchemaVersionObserved',
      'SchemaReviewQueued',
      'LineagePaused',
      'RowsStaged',
    ]);
    await waitFor(() => receipts.length > 0, { message: 'receipt' });
    expect(receipts[0]).toEqual({
      format_version: 1,
      batch_id: b1.batch_id,
      source_table: 'device_state',
      journal_epoch: epoch,
      last_commit_seq: 3,
    });

    // Hostile and broken payloads are rejected with codes; the bridge keeps running.
    const bad = [
      '{nope',
      JSON.stringify({ ...b1, device_id: 'other' }),
      'x'.repeat(600_000),
      JSON.stringify({ ...b1, format_version: 9 }),
    ];
    for (const body of bad) await device.publishAsync(`acme/${dev}/sync/rows/batch`, body, { qos: 1 });
    // A retried batch and a new batch: the retry adds nothing, the new one is staged.
    await device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(b1), { qos: 1 });
    await device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(rowBatch([4], epoch)), {
      qos: 1,
    });
    const after = await waitFor(
      async () => {
        const ev = await eventsOf(c, dev);
        return ev.filter((e) => e.type === 'RowsStaged').length === 2 ? ev : undefined;
      },
      { message: 'second staged batch' },
    );
    const staged = after.flatMap((e) =>
      e.type === 'RowsStaged' ? e.data.rows.map((r) => r.commit_seq) : [],
    );
    expect(staged).toEqual([1, 2, 3, 4]);
    const codes = await c.metrics.registry.getSingleMetricAsString('sluice_rejections_total');
    for (const code of [
      'invalid_json',
      'envelope_unstripped_tenant_fields',
      'payload_too_large',
      'unsupported_format_version',
    ]) {
      expect(codes).toContain(`code="${code}"`);
    }
    const jsm = await jetstreamManager(c.nc);
    expect((await jsm.streams.info(STREAMS.rejections)).state.messages).toBeGreaterThanOrEqual(4);
    await device.endAsync();
    await c.stop();
  });
});

describe('bridge durability', () => {
  it('does not PUBACK before JetStream has the batch: a batch published while NATS is down survives a bridge crash', async () => {
    const clientId = `bridge-${uuidv7()}`;
    const first = await cloud(mosq.url, clientId);
    const dev = `gw-${uuidv7().slice(-6)}`;
    const device = await mqtt.connectAsync(mosq.url, { clientId: dev, clean: false, protocolVersion: 4 });
    await nats.stop();
    const b = rowBatch([1], uuidv7());
    // The device's publish is pending at the broker's side; the bridge cannot append it.
    device.publish(`acme/${dev}/sync/rows/batch`, JSON.stringify(b), { qos: 1 });
    // Wait until the bridge holds the message and is retrying its append.
    await waitFor(async () => (await first.metrics.appendRetries.get()).values[0]!.value >= 1, {
      message: 'append retries',
    });
    // Crash the bridge: drop its MQTT connection without a clean disconnect, abandon its NATS connection.
    first.bridge.mqtt?.end(true);
    await first.nc.close().catch(() => undefined);
    await nats.start();
    const second = await cloud(mosq.url, clientId);
    const events = await waitFor(
      async () => {
        const ev = await eventsOf(second, dev);
        return ev.some((e) => e.type === 'RowsStaged') ? ev : undefined;
      },
      { message: 'redelivered batch', timeoutMs: 30_000 },
    );
    expect(events.filter((e) => e.type === 'RowsStaged')).toHaveLength(1);
    await device.endAsync();
    await second.stop();
  });
});
