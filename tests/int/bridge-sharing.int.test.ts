import mqtt, { type MqttClient } from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { STREAMS, subjects } from '../../infra/nats/names';
import { ensureStreams } from '../../infra/nats/streams';
import { createLogger, silentLogger } from '../../infra/log';
import { createMetrics } from '../../infra/metrics';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const schema = {
  table_name: 'device_state',
  columns: [{ name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true }],
};
const rowBatch = (seq: number, epoch: string) => ({
  format_version: 1,
  capture_strategy: 'sqlite_row_batch_v1',
  batch_id: uuidv7(),
  journal_epoch: epoch,
  source_table: 'device_state',
  schema_hash: schemaHash(schema),
  schema_columns: schema,
  first_commit_seq: seq,
  last_commit_seq: seq,
  rows: [{ commit_seq: seq, op: 'insert', pk: { id: seq }, row: { id: seq } }],
});

const BATCHES = 60;
let nats: NatsServer;
let mosq: MosquittoServer;
let nc: NatsConnection;
beforeAll(async () => {
  [nats, mosq] = await Promise.all([startNats(), startMosquitto({ persistence: true })]);
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
});
afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), mosq?.stop()]);
});

async function startBridge(url: string, clientId: string) {
  const metrics = createMetrics();
  const bridge = new UplinkBridge({
    nc,
    mqttUrl: url,
    clientId,
    projectOf: () => '0190a000-0000-7000-8000-000000000001',
    log: process.env.DBG ? createLogger({ level: 'debug' }) : silentLogger(),
    metrics,
  });
  await bridge.start();
  const closes = { n: 0 };
  bridge.mqtt?.on('close', () => closes.n++);
  const handled = async () => (await metrics.uplinks.get()).values.reduce((n, v) => n + v.value, 0);
  return { bridge, clientId, closes, handled };
}

describe.each([
  ['Mosquitto', () => mosq.url, 'shared'],
  ['the NATS MQTT listener', () => nats.mqttUrl, 'jetstream'],
])('two bridges on %s', (name, url, source) => {
  it('handle each batch once between them, with one receipt per batch and no session takeover', async () => {
    const bridges = [
      await startBridge(url(), `sluice-bridge-a-${uuidv7()}`),
      await startBridge(url(), `sluice-bridge-b-${uuidv7()}`),
    ];
    expect(bridges.map((b) => b.bridge.uplinkSource)).toEqual([source, source]);
    const dev = `gw-${uuidv7().slice(-8)}`;
    const device: MqttClient = await mqtt.connectAsync(url(), {
      clientId: dev,
      clean: false,
      protocolVersion: 4,
    });
    const receipts = new Map<string, number>();
    device.on('message', (_t, p) => {
      const id = (JSON.parse(p.toString()) as { batch_id: string }).batch_id;
      receipts.set(id, (receipts.get(id) ?? 0) + 1);
    });
    await device.subscribeAsync(`acme/${dev}/sync/ingest/receipt`, { qos: 1 });

    const epoch = uuidv7();
    const sent = Array.from({ length: BATCHES }, (_, i) => rowBatch(i + 1, epoch));
    // A few in flight at once, as an agent sends them (max_inflight_batches).
    for (let i = 0; i < sent.length; i += 4)
      await Promise.all(
        sent
          .slice(i, i + 4)
          .map((b) => device.publishAsync(`acme/${dev}/sync/rows/batch`, JSON.stringify(b), { qos: 1 })),
      );
    await waitFor(() => sent.every((b) => receipts.has(b.batch_id)), {
      timeoutMs: 60_000,
      message: 'a receipt for every batch',
    });
    await device.endAsync();
    for (const b of bridges) await b.bridge.stop();

    const shares = await Promise.all(bridges.map((b) => b.handled()));
    console.log(`${name}: per-bridge batches ${shares.join(' + ')} = ${BATCHES} sent`);
    expect(shares[0]! + shares[1]!).toBe(BATCHES);
    for (const share of shares) expect(share).toBeGreaterThanOrEqual(BATCHES / 10);
    expect([...receipts.values()].every((n) => n === 1)).toBe(true);
    expect(receipts.size).toBe(BATCHES);
    // Unique client ids: neither bridge lost its connection to the other during the run.
    expect(bridges.map((b) => b.closes.n)).toEqual([1, 1]);
    const info = await (
      await jetstreamManager(nc)
    ).streams.info(STREAMS.ingress, { subjects_filter: subjects.ingress('rows', `acme/${dev}`) });
    expect(Object.values(info.state.subjects ?? {})).toEqual([BATCHES]);
  });
});
