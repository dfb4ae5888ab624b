import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { schemaHash } from '../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { type IngressMessage, encodeJson } from '../infra/nats/ingress';
import { STREAMS, subjects } from '../infra/nats/names';
import { INGRESS_PARTITIONS, partitionOf } from '../infra/nats/partitions';
import { Registry } from '../infra/nats/registry';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { type Metrics, createMetrics } from '../infra/metrics';
import { startNats, type NatsServer } from '../tests/support/nats';
import { waitFor } from '../tests/support/wait';
import { LineageCommandHandler } from './handler';
import { IngressWorker } from './ingress-worker';
import { ingressBacklog, ingressConsumerConfig, workerConsumer } from './ingress-partitions';

const PROJECT = '0190a000-0000-7000-8000-00000000000f';
const schema = {
  table_name: 'state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'v', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};

let nats: NatsServer;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

/** A worker process of its own: connection, event store, registry, metrics. */
async function worker() {
  const own = await connect({ servers: nats.url });
  const metrics = createMetrics();
  const w = new IngressWorker({
    nc: own,
    handler: new LineageCommandHandler(await JetStreamEventStore.create(own), { metrics }),
    registry: await Registry.open(own),
    log: silentLogger(),
    metrics,
  });
  await w.start();
  return { w, nc: own, metrics };
}

const counter = async (m: Metrics, name: string) =>
  Number(/ (\d+)$/m.exec(await m.registry.getSingleMetricAsString(name))?.[1] ?? 0);

/** Each device sends `batches` batches of 5 rows, commit_seq continuing from `from`. */
async function send(devices: readonly string[], batches: number, from: number) {
  const js = jetstream(nc);
  const epoch = '0190a000-0000-7000-8000-0000000000e0';
  const acks: Promise<unknown>[] = [];
  for (let b = 0; b < batches; b++)
    for (const name of devices) {
      const seqs = Array.from({ length: 5 }, (_, i) => from + b * 5 + i + 1);
      const payload = {
        format_version: 1,
        capture_strategy: 'sqlite_row_batch_v1',
        batch_id: uuidv7(),
        journal_epoch: epoch,
        source_table: 'state',
        schema_hash: schemaHash(schema),
        schema_columns: schema,
        first_commit_seq: seqs[0]!,
        last_commit_seq: seqs.at(-1)!,
        rows: seqs.map((s) => ({ commit_seq: s, op: 'insert', pk: { id: s }, row: { id: s, v: `${s}` } })),
      };
      const key = `part/${name}`;
      const msg = {
        kind: 'rows',
        payload,
        project_id: PROJECT,
        topic_slug: 'part',
        device_name: name,
        device_key: key,
        received_at: new Date().toISOString(),
      } as IngressMessage;
      acks.push(
        js.publish(subjects.ingress('rows', key), encodeJson(msg), { msgID: `${key}:${payload.batch_id}` }),
      );
    }
  await Promise.all(acks);
}

/** The commit_seqs staged per device, in the order the lineage decided them. */
async function staged(devices: readonly string[]): Promise<Map<string, number[]>> {
  const registry = await Registry.open(nc);
  const store = await JetStreamEventStore.create(nc);
  const out = new Map<string, number[]>();
  for (const name of devices) {
    const d = await registry.resolveDevice(PROJECT, 'part', name, uuidv7());
    const { lineageId } = await registry.resolveLineage(d.device_id, 'state', uuidv7());
    const events = (await store.load(lineageId)).events;
    out.set(
      name,
      events.flatMap((e) => (e.type === 'RowsStaged' ? e.data.rows.map((r) => r.commit_seq) : [])),
    );
  }
  return out;
}

/**
 * The ingress backlog counts what the partition consumers still have to deliver or see acked, not
 * the stream's message count: a nats-server killed -9 can keep messages in the work queue whose
 * acks its consumer already recorded, and those are never delivered again. Here such messages are
 * stood in for by messages on a partition number no consumer filters. First in this file, on an
 * empty stream.
 */
it('the backlog is what the partition consumers have not delivered or not seen acked', async () => {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const publish = (partition: number, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) => js.publish(`edge.ingress.${partition}.rows.dev${i}`, '{}')),
    );
  const streamMessages = async () => (await jsm.streams.info(STREAMS.ingress)).state.messages;

  // No worker has started: every message in the stream is waiting.
  await publish(0, 2);
  expect(await ingressBacklog(jsm)).toBe(2);
  for (let p = 0; p < INGRESS_PARTITIONS; p++)
    await jsm.consumers.add(STREAMS.ingress, ingressConsumerConfig(p));
  expect(await ingressBacklog(jsm)).toBe(2);

  // Messages no partition consumer will ever deliver (after a crash: acked, deletion lost).
  await publish(INGRESS_PARTITIONS, 3);
  expect(await streamMessages()).toBe(5);
  expect(await ingressBacklog(jsm)).toBe(2);

  const consumer = await js.consumers.get(STREAMS.ingress, workerConsumer(0));
  await (await consumer.next({ expires: 2_000 }))!.ackAck();
  // Delivered and not acked still counts.
  const held = await consumer.next({ expires: 2_000 });
  expect(held).not.toBeNull();
  expect(await streamMessages()).toBe(4);
  expect(await ingressBacklog(jsm)).toBe(1);
  await held!.ackAck();
  expect(await ingressBacklog(jsm)).toBe(0);
  expect(await streamMessages()).toBe(3);
});

it('two workers split the partitions and the messages; a dead one is taken over; nothing lost or doubled', async () => {
  const t0 = Date.now();
  const lap = (what: string) => process.env.DBG && console.log(what, Date.now() - t0);
  const a = await worker();
  const b = await worker();
  // Steady state: the leases settle into two disjoint halves.
  await waitFor(() => a.w.partitions.length === 8 && b.w.partitions.length === 8, {
    timeoutMs: 30_000,
    message: 'the partitions split in two',
  });
  expect(new Set([...a.w.partitions, ...b.w.partitions]).size).toBe(INGRESS_PARTITIONS);

  lap('split');
  // Three devices per partition, so any even split of the partitions is an even split of the work.
  const devices: string[] = [];
  const perPartition = new Array<number>(INGRESS_PARTITIONS).fill(0);
  for (let i = 0; devices.length < 3 * INGRESS_PARTITIONS; i++) {
    const p = partitionOf(`part/d${i}`);
    if (perPartition[p]! < 3) {
      perPartition[p]!++;
      devices.push(`d${i}`);
    }
  }
  await send(devices, 6, 0);
  const jsm = await jetstreamManager(nc);
  await waitFor(async () => (await ingressBacklog(jsm)) === 0, {
    timeoutMs: 60_000,
    message: 'ingress drained',
  });
  lap('drained');
  const handledA = await counter(a.metrics, 'sluice_ingress_messages_total');
  const handledB = await counter(b.metrics, 'sluice_ingress_messages_total');
  expect(handledA + handledB).toBeGreaterThanOrEqual(devices.length * 6);
  expect(handledA / (handledA + handledB)).toBeGreaterThanOrEqual(0.4);
  expect(handledB / (handledA + handledB)).toBeGreaterThanOrEqual(0.4);
  // Each lineage is decided by one process: no optimistic-concurrency conflicts between them.
  expect(await counter(a.metrics, 'sluice_append_conflicts_total')).toBe(0);
  expect(await counter(b.metrics, 'sluice_append_conflicts_total')).toBe(0);

  // B dies without giving its leases back; A takes its partitions once they expire.
  lap(`shares ${handledA} ${handledB}`);
  await b.nc.close();
  await send(devices, 2, 30);
  await waitFor(() => a.w.partitions.length === INGRESS_PARTITIONS, {
    timeoutMs: 30_000,
    message: "A holding B's partitions",
  });
  await waitFor(async () => (await ingressBacklog(jsm)) === 0, {
    timeoutMs: 60_000,
    message: 'ingress drained',
  });
  lap('taken over, drained');
  const all = await staged(devices);
  for (const [, seqs] of all) expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  await b.w.stop().catch(() => undefined);
  await a.w.stop();
  await a.nc.close();
}, 120_000);
