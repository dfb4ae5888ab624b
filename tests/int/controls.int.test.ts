import mqtt from 'mqtt';
import { generateKeyPairSync } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { ControlDispatcher } from '../../bridge/downlink/dispatcher';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { verifyControl } from '../../edge-agent/control/signature';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { STREAMS } from '../../infra/nats/names';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { silentLogger } from '../../infra/log';
import { createMetrics } from '../../infra/metrics';
import { CommandService } from '../../worker/commands';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const PROJECT = '0190a000-0000-7000-8000-0000000000c0';
const schema = {
  table_name: 'readings',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'v', decl_type_affinity: 'REAL' as const, pk_ordinal: 0, not_null: false },
  ],
};
const batch = (seqs: number[], epoch: string) => ({
  format_version: 1,
  capture_strategy: 'sqlite_row_batch_v1',
  batch_id: uuidv7(),
  journal_epoch: epoch,
  source_table: 'readings',
  schema_hash: schemaHash(schema),
  schema_columns: schema,
  first_commit_seq: Math.min(...seqs),
  last_commit_seq: Math.max(...seqs),
  rows: seqs.map((s) => ({ commit_seq: s, op: 'insert', pk: { id: s }, row: { id: s, v: s / 10 } })),
});

let nats: NatsServer;
let mosq: MosquittoServer;
beforeAll(async () => {
  [nats, mosq] = await Promise.all([startNats(), startMosquitto()]);
});
afterAll(async () => {
  await Promise.all([nats?.stop(), mosq?.stop()]);
});
// Run after each test, passed or failed: a client left reconnecting outlives the suite and
// breaks whatever the jest worker runs next.
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe.each([
  ['NATS MQTT listener', () => nats.mqttUrl],
  ['Mosquitto', () => mosq.url],
])('controls on %s', (_name, url) => {
  it('pauses the device on backpressure with a signed control, re-delivers until the ACK, and refuses unknown ACKs', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    const metrics = createMetrics();
    const registry = await Registry.open(nc);
    await registry.setPolicy(PROJECT, { max_pending_rows_per_lineage: 3 });
    const handler = new LineageCommandHandler(await JetStreamEventStore.create(nc));
    const commands = new CommandService(handler, registry);
    const bridge = new UplinkBridge({
      nc,
      mqttUrl: url(),
      clientId: `bridge-${uuidv7()}`,
      projectOf: () => PROJECT,
      log: silentLogger(),
      metrics,
    });
    const worker = new IngressWorker({ nc, handler, registry, log: silentLogger(), metrics });
    const dispatcher = new ControlDispatcher({
      nc,
      registry,
      commands,
      publish: (t, b) => bridge.publishToDevice(t, b),
      deviceKeyOf: async (id) => {
        const { state } = await handler.load(id, true);
        return state.status === 'registered' ? `${state.topic_slug}/${state.device_name}` : undefined;
      },
      signingKey: privateKey,
      log: silentLogger(),
      firstRetryMs: 150,
    });
    cleanups.push(() => nc.close());
    await bridge.start();
    cleanups.push(() => bridge.stop());
    await worker.start();
    cleanups.push(() => worker.stop());
    await dispatcher.start();
    cleanups.push(() => dispatcher.stop());
    // Re-delivery never lists the pending controls (a KV key listing is a consumer on its stream).
    const listings = nc.subscribe('$JS.EVENT.ADVISORY.CONSUMER.CREATED.KV_sluice_controls.>');
    let controlListings = 0;
    void (async () => {
      for await (const _ of listings) controlListings++;
    })();

    const dev = `gw-${uuidv7().slice(-8)}`;
    const device = await mqtt.connectAsync(url(), { clientId: dev, clean: false, protocolVersion: 4 });
    cleanups.push(() => device.endAsync(true));
    const controls: Record<string, unknown>[] = [];
    device.on('message', (topic, p) => {
      if (topic.endsWith('/sync/ingest/control')) controls.push(JSON.parse(p.toString()));
    });
    await device.subscribeAsync(`acme/${dev}/sync/ingest/control`, { qos: 1 });
    const epoch = uuidv7();
    await device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(batch([1, 2], epoch)), {
      qos: 1,
    });
    await device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(batch([3, 4], epoch)), {
      qos: 1,
    });

    // Not acked yet: the control keeps coming back.
    await waitFor(() => controls.length >= 2, { message: 'control re-delivered' });
    const control = controls[0]!;
    expect(control).toMatchObject({
      control_kind: 'pause_lineage',
      source_table: 'readings',
      server_watermark: 4,
    });
    expect(String(control.reason)).toContain('backpressure');
    expect(verifyControl(control, publicKey)).toBe(true);
    expect(verifyControl({ ...control, server_watermark: 1 }, publicKey)).toBe(false);
    expect(new Set(controls.map((c) => c.control_id)).size).toBe(1);

    const device2 = `gw-${uuidv7().slice(-8)}`;
    const other = await mqtt.connectAsync(url(), { clientId: device2, clean: true, protocolVersion: 4 });
    cleanups.push(() => other.endAsync(true));
    // Another device cannot acknowledge it, nor can anyone ack an id never issued.
    await other.publishAsync(
      `acme/${device2}/sync/ingest/ack`,
      JSON.stringify({ format_version: 1, control_id: control.control_id }),
      { qos: 1 },
    );
    await device.publishAsync(
      `acme/${dev}/sync/ingest/ack`,
      JSON.stringify({ format_version: 1, control_id: uuidv7() }),
      { qos: 1 },
    );
    await waitFor(
      async () => {
        const m = await metrics.registry.getSingleMetricAsString('sluice_rejections_total');
        return /code="unknown_control_id"} 2/.test(m);
      },
      { message: 'two unknown_control_id rejections' },
    );

    await device.publishAsync(
      `acme/${dev}/sync/ingest/ack`,
      JSON.stringify({ format_version: 1, control_id: control.control_id }),
      { qos: 1 },
    );
    const device0 = await registry.resolveDevice(PROJECT, 'acme', dev, uuidv7());
    const { lineageId } = await registry.resolveLineage(device0.device_id, 'readings', uuidv7());
    const events = await waitFor(
      async () => {
        const ev = (await handler.load(lineageId, true)).state;
        return ev.status === 'registered' &&
          ev.controls.find((c) => c.control_id === control.control_id)?.acknowledged
          ? ev
          : undefined;
      },
      { message: 'ControlAcknowledged' },
    );
    expect(events.pause_reasons).toEqual(expect.arrayContaining(['schema_review', 'volume_backpressure']));
    expect(await registry.getControl(String(control.control_id))).toBeUndefined();
    listings.unsubscribe();
    expect(controlListings).toBe(0);
    // An acknowledged control is no longer pending, so nothing sends it again.
    await waitFor(async () => (await registry.pendingControls()).length === 0, {
      message: 'no pending control',
    });
    const delivered = (await handler.load(lineageId, true)).state;
    const attempts =
      delivered.status === 'registered'
        ? delivered.controls.find((c) => c.control_id === control.control_id)?.deliveries
        : -1;
    // Its retry message is gone from the work queue: nothing is left to send it again.
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => (await jsm.streams.info(STREAMS.controlRetries)).state.messages === 0, {
      message: 'the retry message acked',
    });
    const after = (await handler.load(lineageId, true)).state;
    expect(
      after.status === 'registered' &&
        after.controls.find((c) => c.control_id === control.control_id)?.deliveries,
    ).toBe(attempts);
    expect(attempts).toBeGreaterThanOrEqual(2);
  });
});
