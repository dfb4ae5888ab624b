/**
 * Ingest benchmark: the bridge (MQTT → validate → JetStream ingress) and the worker (ingress →
 * decide → lineage events) against a raw JetStream publish of the same bytes, in one run on one
 * private nats-server. Ratios are what to compare across machines.
 *
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/ingest.bench.ts [--quick] [--out FILE]
 */
import { writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../bridge/uplink/bridge';
import { schemaHash } from '../domain/protocol/fingerprint';
import { silentLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { STREAMS } from '../infra/nats/names';
import { Registry } from '../infra/nats/registry';
import { ensureStreams } from '../infra/nats/streams';
import { LineageCommandHandler } from '../worker/handler';
import { IngressWorker, WORKER_CONSUMER } from '../worker/ingress-worker';
import { startNats } from '../tests/support/nats';

const quick = process.argv.includes('--quick');
const outIdx = process.argv.indexOf('--out');
const BATCHES = quick ? 300 : 2000;
const ROWS = 100;
const DEVICES = 10;
const RUNS = quick ? 1 : 3;

const schema = {
  table_name: 'readings',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'body', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};

function payloads(run: number): { topic: string; body: string }[] {
  const epoch = uuidv7();
  return Array.from({ length: BATCHES }, (_, b) => {
    const device = `bench-${run}-${b % DEVICES}`;
    const first = Math.floor(b / DEVICES) * ROWS + 1;
    const seqs = Array.from({ length: ROWS }, (_, i) => first + i);
    const body = JSON.stringify({
      format_version: 1,
      capture_strategy: 'sqlite_row_batch_v1',
      batch_id: uuidv7(),
      journal_epoch: epoch,
      source_table: 'readings',
      schema_hash: schemaHash(schema),
      schema_columns: schema,
      first_commit_seq: first,
      last_commit_seq: first + ROWS - 1,
      rows: seqs.map((s) => ({
        commit_seq: s,
        op: 'insert',
        pk: { id: s },
        row: { id: s, body: 'x'.repeat(40) },
      })),
    });
    return { topic: `bench/${device}/sync/rows/batch`, body };
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm);
  await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.raw.>'], storage: StorageType.File });
  const js = jetstream(nc);
  const registry = await Registry.open(nc);
  const store = await JetStreamEventStore.create(nc);
  const results = { raw: [] as number[], bridge: [] as number[], worker: [] as number[] };

  for (let run = 0; run < RUNS; run++) {
    const batch = payloads(run);
    const bytes = batch.reduce((n, p) => n + p.body.length, 0);

    // Raw: the same bytes straight into a JetStream stream, 256 publishes in flight.
    let t = performance.now();
    for (let i = 0; i < batch.length; i += 256) {
      await Promise.all(
        batch
          .slice(i, i + 256)
          .map((p, j) => js.publish(`bench.raw.${run}`, p.body, { msgID: `${run}:${i + j}` })),
      );
    }
    results.raw.push((BATCHES * ROWS) / ((performance.now() - t) / 1000));

    // Bridge: devices publish over MQTT (NATS MQTT listener); count until ingress holds them all.
    const metrics = createMetrics();
    const bridge = new UplinkBridge({
      nc,
      mqttUrl: nats.mqttUrl,
      clientId: `bench-bridge-${run}`,
      projectOf: () => '0190a000-0000-7000-8000-0000000000be',
      log: silentLogger(),
      metrics,
    });
    await bridge.start();
    const before = (await jsm.streams.info(STREAMS.ingress)).state.messages;
    const device = await mqtt.connectAsync(nats.mqttUrl, {
      clientId: `bench-dev-${run}`,
      protocolVersion: 4,
    });
    t = performance.now();
    for (let i = 0; i < batch.length; i += 64) {
      await Promise.all(batch.slice(i, i + 64).map((p) => device.publishAsync(p.topic, p.body, { qos: 1 })));
    }
    while ((await jsm.streams.info(STREAMS.ingress)).state.messages - before < BATCHES)
      await new Promise((r) => setTimeout(r, 5));
    results.bridge.push((BATCHES * ROWS) / ((performance.now() - t) / 1000));
    await device.endAsync();
    await bridge.stop();

    // Worker: drain the ingress, deciding every batch (new lineages: staged for review).
    t = performance.now();
    const worker = new IngressWorker({
      nc,
      handler: new LineageCommandHandler(store),
      registry,
      log: silentLogger(),
      metrics,
    });
    await worker.start();
    for (;;) {
      const info = await jsm.consumers.info(STREAMS.ingress, WORKER_CONSUMER);
      if (info.num_pending === 0 && info.num_ack_pending === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    results.worker.push((BATCHES * ROWS) / ((performance.now() - t) / 1000));
    await worker.stop();
    console.error(
      `run ${run + 1}/${RUNS}: ${BATCHES} batches x ${ROWS} rows, ${(bytes / 1e6).toFixed(1)} MB`,
    );
  }

  const row = (name: string, xs: number[]) => ({
    stage: name,
    'rows/s (median)': Math.round(median(xs)),
    'batches/s': Math.round(median(xs) / ROWS),
    'min-max': `${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))}`,
  });
  const table = [
    row('raw JetStream publish', results.raw),
    row('bridge (MQTT → ingress)', results.bridge),
    row('worker (ingress → decided)', results.worker),
  ];
  console.table(table);
  const ratios = {
    bridge_over_raw: +(median(results.bridge) / median(results.raw)).toFixed(3),
    worker_over_raw: +(median(results.worker) / median(results.raw)).toFixed(3),
  };
  console.log(`ratios: bridge/raw=${ratios.bridge_over_raw} worker/raw=${ratios.worker_over_raw}`);
  if (outIdx > 0)
    writeFileSync(
      process.argv[outIdx + 1]!,
      JSON.stringify({ table, ratios, batches: BATCHES, rows_per_batch: ROWS }, null, 2),
    );
  await nc.close();
  await nats.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
