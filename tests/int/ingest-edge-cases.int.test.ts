import mqtt from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import type { RowBatch } from '../../domain/protocol/contracts';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { type IngressMessage, encodeJson } from '../../infra/nats/ingress';
import { subjects } from '../../infra/nats/names';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { silentLogger } from '../../infra/log';
import { createMetrics, type Metrics } from '../../infra/metrics';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import { ingressBacklog } from '../../worker/ingress-partitions';
import { TEMPS } from '../support/fixtures';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const PROJECT = '0190a000-0000-7000-8000-0000000000d0';
const schema = {
  table_name: 'state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'v', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};
const rowBatch = (seqs: number[], epoch: string, table = 'state'): RowBatch => ({
  format_version: 1,
  capture_strategy: 'sqlite_row_batch_v1',
  batch_id: uuidv7(),
  journal_epoch: epoch,
  source_table: table,
  schema_hash: schemaHash({ ...schema, table_name: table }),
  schema_columns: { ...schema, table_name: table },
  first_commit_seq: Math.min(...seqs),
  last_commit_seq: Math.max(...seqs),
  rows: seqs.map((s) => ({
    commit_seq: s,
    op: 'insert' as const,
    pk: { id: s },
    row: { id: s, v: `v${s}` },
  })),
});

let nats: NatsServer;
let mosq: MosquittoServer;
let nc: NatsConnection;
let registry: Registry;
let store: JetStreamEventStore;
beforeAll(async () => {
  [nats, mosq] = await Promise.all([startNats(), startMosquitto({ extraConfig: 'message_size_limit 0' })]);
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
  registry = await Registry.open(nc);
  store = await JetStreamEventStore.create(nc);
});
afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), mosq?.stop()]);
});

async function lineageEvents(slug: string, device: string, table = 'state') {
  const d = await registry.resolveDevice(PROJECT, slug, device, uuidv7());
  const { lineageId } = await registry.resolveLineage(d.device_id, table, uuidv7());
  return (await store.load(lineageId)).events;
}

async function startWorkers(n: number, metrics: Metrics) {
  const workers = Array.from(
    { length: n },
    () =>
      new IngressWorker({
        nc,
        handler: new LineageCommandHandler(store),
        registry,
        log: silentLogger(),
        metrics,
      }),
  );
  for (const w of workers) await w.start();
  return { stop: () => Promise.all(workers.map((w) => w.stop())) };
}

const rejections = async (m: Metrics, code: string) => {
  const text = await m.registry.getSingleMetricAsString('sluice_rejections_total');
  const match = new RegExp(`code="${code}"} (\\d+)`).exec(text);
  return Number(match?.[1] ?? 0);
};

// The NATS MQTT listener closes any connection that publishes a topic holding '.', so device names
// with dots only work on Mosquitto (docs/decisions.md); Sluice itself encodes them safely.
describe.each([
  ['NATS MQTT listener', () => nats.mqttUrl, ''],
  ['Mosquitto', () => mosq.url, '.east'],
])('hostile uplinks on %s', (_name, url, suffix) => {
  it('rejects each with its code, changes no state, and keeps serving', async () => {
    const metrics = createMetrics();
    const bridge = new UplinkBridge({
      nc,
      mqttUrl: url(),
      clientId: `b-${uuidv7()}`,
      projectOf: () => PROJECT,
      log: silentLogger(),
      metrics,
    });
    await bridge.start();
    const workers = await startWorkers(1, metrics);
    const dev = `gw-${uuidv7().slice(-8)}`;
    const device = await mqtt.connectAsync(url(), { clientId: dev, protocolVersion: 4 });
    const topic = `hostile/${dev}/sync/rows/batch`;
    const good = rowBatch([1], uuidv7());
    const hostile: [string, string | Buffer][] = [
      ['invalid_json', JSON.stringify(good).slice(0, 40)],
      ['invalid_payload', `{"__proto__":{"admin":true},${JSON.stringify(good).slice(1)}`],
      ['invalid_json', JSON.stringify(good).replace('"v1"', 'NaN')],
      ['payload_too_large', Buffer.alloc(5 * 1024 * 1024, 0x7b)],
      ['invalid_payload', '['.repeat(10_000) + ']'.repeat(10_000)],
      ['invalid_number_encoding', JSON.stringify(good).replace('"v1"', '1e400')],
      ['envelope_unstripped_tenant_fields', JSON.stringify({ ...good, project_id: PROJECT })],
    ];
    for (const [, body] of hostile) await device.publishAsync(topic, body, { qos: 1 });
    for (const code of new Set(hostile.map(([c]) => c))) {
      const expected = hostile.filter(([c]) => c === code).length;
      await waitFor(async () => (await rejections(metrics, code)) >= expected, {
        message: `${code} x${expected}`,
      });
    }
    expect(await lineageEvents('hostile', dev)).toEqual([]);
    // Still serving: a valid batch from another device (its name holding a dot where the broker allows it).
    const dotted = `${dev}${suffix || '-next'}`;
    const d2 = await mqtt.connectAsync(url(), { clientId: dotted.replace('.', '-'), protocolVersion: 4 });
    await d2.publishAsync(`hostile/${dotted}/sync/rows/batch`, JSON.stringify(good), { qos: 1 });
    await waitFor(async () => (await lineageEvents('hostile', dotted)).some((e) => e.type === 'RowsStaged'), {
      message: 'valid batch staged',
    });
    await device.endAsync();
    await d2.endAsync();
    await workers.stop();
    await bridge.stop();
  });
});

describe('ingest pipeline', () => {
  it('takes telemetry through the same governance, with its receipt carrying batch_seq', async () => {
    const metrics = createMetrics();
    const bridge = new UplinkBridge({
      nc,
      mqttUrl: nats.mqttUrl,
      clientId: `b-${uuidv7()}`,
      projectOf: () => PROJECT,
      log: silentLogger(),
      metrics,
    });
    await bridge.start();
    const workers = await startWorkers(1, metrics);
    const dev = `tele-${uuidv7().slice(-8)}`;
    const device = await mqtt.connectAsync(nats.mqttUrl, { clientId: dev, protocolVersion: 4 });
    const receipts: { batch_seq?: number }[] = [];
    device.on('message', (_t, p) => receipts.push(JSON.parse(p.toString())));
    await device.subscribeAsync(`t/${dev}/sync/ingest/receipt`, { qos: 1 });
    const tb = (seq: number, id = uuidv7()) => ({
      format_version: 1,
      capture_strategy: 'sqlite_telemetry_batch_v1',
      batch_id: id,
      batch_seq: seq,
      source_table: 'temps',
      schema_hash: schemaHash(TEMPS),
      schema_columns: TEMPS,
      cursor_start_ts: '2026-04-28T09:00:00Z',
      cursor_end_ts: '2026-04-28T09:00:10Z',
      row_count: 1,
      rows: [{ ts: '2026-04-28T09:00:01Z', row_id: uuidv7(), fields: { value_c: 20 + seq } }],
    });
    await device.publishAsync(`t/${dev}/sync/telemetry/batch`, JSON.stringify(tb(1)), { qos: 1 });
    await device.publishAsync(`t/${dev}/sync/telemetry/batch`, JSON.stringify(tb(2)), { qos: 1 });
    await device.publishAsync(`t/${dev}/sync/telemetry/batch`, JSON.stringify(tb(2)), { qos: 1 }); // new id, used seq
    await waitFor(async () => (await rejections(metrics, 'duplicate_batch_seq')) === 1, {
      message: 'duplicate_batch_seq',
    });
    const events = await lineageEvents('t', dev, 'temps');
    expect(events.map((e) => e.type)).toEqual([
      'LineageRegistered',
      'SchemaVersionObserved',
      'SchemaReviewQueued',
      'LineagePaused',
      'TelemetryStaged',
      'TelemetryStaged',
    ]);
    expect(events[0]).toMatchObject({ data: { kind: 'telemetry' } });
    await waitFor(() => receipts.length >= 2, { message: 'receipts' });
    expect(receipts.map((r) => r.batch_seq).slice(0, 2)).toEqual([1, 2]);
    await device.endAsync();
    await workers.stop();
    await bridge.stop();
  });

  it('applies a batch once when it comes back after the dedupe window (a different ingress message)', async () => {
    const metrics = createMetrics();
    const workers = await startWorkers(1, metrics);
    const js = jetstream(nc);
    const dev = `late-${uuidv7().slice(-8)}`;
    const batch = rowBatch([1, 2, 3], uuidv7());
    const message = (suffix: string): [string, Uint8Array, string] => [
      subjects.ingress('rows', `late/${dev}`),
      encodeJson({
        kind: 'rows',
        payload: batch,
        project_id: PROJECT,
        topic_slug: 'late',
        device_name: dev,
        device_key: `late/${dev}`,
        received_at: new Date().toISOString(),
      } satisfies IngressMessage),
      `late/${dev}:${batch.batch_id}${suffix}`,
    ];
    // Outside JetStream's window the same batch is simply a new message: publish it twice with distinct ids.
    for (const suffix of ['', ':after-window']) {
      const [subject, data, msgID] = message(suffix);
      const ack = await js.publish(subject, data, { msgID });
      expect(ack.duplicate).toBe(false);
    }
    const [subject, data, msgID] = message('');
    expect((await js.publish(subject, data, { msgID })).duplicate).toBe(true); // inside the window
    // A work queue keeps a message until it is acked: an empty stream is every message decided.
    await waitFor(async () => (await ingressBacklog(await jetstreamManager(nc))) === 0, {
      message: 'ingress drained and acked',
    });
    const events = await lineageEvents('late', dev);
    const staged = events.flatMap((e) =>
      e.type === 'RowsStaged' ? e.data.rows.map((r) => r.commit_seq) : [],
    );
    expect(staged).toEqual([1, 2, 3]);
    await workers.stop();
  });

  it('gives the same result with two workers as with one', async () => {
    const metrics = createMetrics();
    const workers = await startWorkers(2, metrics);
    const js = jetstream(nc);
    const devices = ['a', 'b', 'c'].map((x) => `pair-${x}-${uuidv7().slice(-6)}`);
    const epoch = uuidv7();
    const sends: Promise<unknown>[] = [];
    for (const dev of devices) {
      for (let b = 0; b < 20; b++) {
        const batch = rowBatch([b * 5 + 1, b * 5 + 2, b * 5 + 3, b * 5 + 4, b * 5 + 5], epoch);
        const body = encodeJson({
          kind: 'rows',
          payload: batch,
          project_id: PROJECT,
          topic_slug: 'pair',
          device_name: dev,
          device_key: `pair/${dev}`,
          received_at: new Date().toISOString(),
        } satisfies IngressMessage);
        sends.push(
          js.publish(subjects.ingress('rows', `pair/${dev}`), body, {
            msgID: `pair/${dev}:${batch.batch_id}`,
          }),
        );
        // and a retry of every fifth batch, as a device whose receipt was lost would send it
        if (b % 5 === 0)
          sends.push(
            js.publish(subjects.ingress('rows', `pair/${dev}`), body, {
              msgID: `pair/${dev}:${batch.batch_id}:retry`,
            }),
          );
      }
    }
    await Promise.all(sends);
    for (const dev of devices) {
      const events = await waitFor(
        async () => {
          const ev = await lineageEvents('pair', dev);
          return ev.flatMap((e) => (e.type === 'RowsStaged' ? e.data.rows : [])).length >= 100
            ? ev
            : undefined;
        },
        { message: `all rows of ${dev}` },
      );
      const seqs = events.flatMap((e) =>
        e.type === 'RowsStaged' ? e.data.rows.map((r) => r.commit_seq) : [],
      );
      expect([...seqs].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      expect(events.filter((e) => e.type === 'LineageRegistered')).toHaveLength(1);
      expect(events.filter((e) => e.type === 'SchemaReviewQueued')).toHaveLength(1);
      expect(events.filter((e) => e.type === 'LineagePaused')).toHaveLength(1);
    }
    await workers.stop();
  });
});
