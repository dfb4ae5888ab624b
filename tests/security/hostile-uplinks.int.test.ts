import fc from 'fast-check';
import mqtt from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { UPLINK_TOPICS, type UplinkKind } from '../../domain/protocol/contracts';
import { parseUplinkTopic, validateUplink } from '../../domain/protocol/uplink';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { STREAMS } from '../../infra/nats/names';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { silentLogger } from '../../infra/log';
import { createMetrics, type Metrics } from '../../infra/metrics';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import {
  FUZZ_RUNS,
  hostileJson,
  hostileTopic,
  replaceSomewhere,
  replacement,
  validRowBatch,
  validTelemetryBatch,
} from '../support/fuzz';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

/**
 * A sample of generated invalid uplinks through a real broker, bridge and worker: every one is
 * rejected and recorded, none creates a lineage or an event, and the bridge still serves.
 */
const PROJECT = '0190a000-0000-7000-8000-0000000000e7';
const SAMPLE = Math.min(FUZZ_RUNS, 400);

let nats: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
  await ensureStreams(jsm);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

/** The bridge's own uplink connection, with the short pings the `bridge` role gives it. */
const uplinkConnection = () => connect({ servers: nats.url, pingInterval: 1_000, maxPingOut: 2 });

/** A bridge (with its own uplink connection) and a worker on the test server, sharing metrics. */
async function startPipeline() {
  const metrics = createMetrics();
  const registry = await Registry.open(nc);
  const store = await JetStreamEventStore.create(nc);
  const bridge = new UplinkBridge({
    nc,
    mqttUrl: nats.mqttUrl,
    clientId: `b-${uuidv7()}`,
    projectOf: () => PROJECT,
    uplinkConnection,
    log: silentLogger(),
    metrics,
  });
  await bridge.start();
  const worker = new IngressWorker({
    nc,
    handler: new LineageCommandHandler(store),
    registry,
    log: silentLogger(),
    metrics,
  });
  await worker.start();
  return { metrics, registry, store, bridge, worker };
}

/** Rejections the bridge counted: all of them, or those with one code. */
async function rejections(metrics: Metrics, code?: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('sluice_rejections_total');
  if (code) return Number(new RegExp(`code="${code}"} (\\d+)`).exec(text)?.[1] ?? 0);
  return [...text.matchAll(/} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

const lineageSubjects = async (): Promise<Record<string, number>> =>
  (await jsm.streams.info(STREAMS.lineage, { subjects_filter: '>' })).state.subjects ?? {};

it('rejects every generated invalid uplink without a lineage or an event, and keeps serving', async () => {
  const { metrics, registry, store, bridge, worker } = await startPipeline();
  const device = `fuzz-${uuidv7().slice(-8)}`;
  const client = await mqtt.connectAsync(nats.mqttUrl, { clientId: device, protocolVersion: 4 });
  try {
    const kinds = Object.keys(UPLINK_TOPICS) as UplinkKind[];
    const payload = fc.oneof(
      fc
        .tuple(validRowBatch, replacement)
        .map(([b, r]) => JSON.stringify(replaceSomewhere(b, r.path, r.value, r.remove)) ?? ''),
      fc
        .tuple(validTelemetryBatch, replacement)
        .map(([b, r]) => JSON.stringify(replaceSomewhere(b, r.path, r.value, r.remove)) ?? ''),
      validRowBatch.map((b) => JSON.stringify({ ...b, project_id: PROJECT })),
      hostileJson.map((v) => JSON.stringify(v) ?? ''),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a).toString('latin1')),
    );
    // Topics the NATS MQTT listener lets a client publish (no wildcards, dots or NUL), but that are
    // no Sluice uplink. Tabs, CRs and LFs have their own case below: here they would only add the
    // 30 s ack wait of the uplinks pulled together with them (the listener refuses a space).
    const badTopic = hostileTopic.filter(
      (t) =>
        t.length > 0 &&
        !['+', '#', '.', '\u0000', ' ', '\t', '\r', '\n'].some((c) => t.includes(c)) &&
        !t.startsWith('$') &&
        t.isWellFormed() &&
        !parseUplinkTopic(t).ok,
    );
    const sample: [string, string][] = fc.sample(
      fc.oneof(
        {
          weight: 4,
          arbitrary: fc
            .tuple(fc.constantFrom(...kinds), payload)
            .filter(([k, p]) => !validateUplink(k, p).ok)
            .map(([k, p]): [string, string] => [`hostile/${device}/${UPLINK_TOPICS[k]}`, p]),
        },
        {
          weight: 1,
          arbitrary: fc
            .tuple(badTopic, validRowBatch)
            .map(([t, b]): [string, string] => [t, JSON.stringify(b)]),
        },
      ),
      SAMPLE,
    );
    // The bridge subscribes to `+/+/<uplink>` only: other topics never reach it (nor anything else).
    const suffixes = new Set(Object.values(UPLINK_TOPICS));
    const reachesBridge = (t: string) => suffixes.has(t.split('/').slice(2).join('/'));
    const expected = sample.filter(([t]) => reachesBridge(t)).length;
    expect(expected).toBeGreaterThan(SAMPLE / 2);
    const before = await lineageSubjects();
    for (const [topic, body] of sample) await client.publishAsync(topic, body, { qos: 1 });
    const rejected = () => rejections(metrics);
    // Every one is refused and recorded (the bridge's only other outcome would be an ingress append).
    await waitFor(async () => (await rejected()) === expected, {
      message: `${expected} rejections`,
      timeoutMs: 60_000,
    });
    const recorded = await jsm.streams.info(STREAMS.rejections);
    expect(recorded.state.messages).toBeGreaterThanOrEqual(expected);
    expect(await lineageSubjects()).toEqual(before);

    // Still serving: a valid batch from the same device is staged.
    const good = fc.sample(validRowBatch, { numRuns: 1, seed: 42 })[0]!;
    await client.publishAsync(`hostile/${device}/sync/rows/batch`, JSON.stringify(good), { qos: 1 });
    const d = await registry.resolveDevice(PROJECT, 'hostile', device, uuidv7());
    const { lineageId } = await registry.resolveLineage(d.device_id, good.source_table, uuidv7());
    await waitFor(async () => (await store.load(lineageId)).events.some((e) => e.type === 'RowsStaged'), {
      message: 'valid batch staged',
    });
    const after = await lineageSubjects();
    expect(Object.keys(after).filter((s) => !(s in before))).toEqual([`edge.lineage.${lineageId}`]);
  } finally {
    await client.endAsync();
    await worker.stop();
    await bridge.stop();
  }
});

it('rejects topics whose subject would break the NATS protocol line, and keeps serving', async () => {
  const { metrics, registry, store, bridge, worker } = await startPipeline();
  const device = `ws-${uuidv7().slice(-8)}`;
  const client = await mqtt.connectAsync(nats.mqttUrl, { clientId: device, protocolVersion: 4 });
  try {
    const batch = JSON.stringify(fc.sample(validRowBatch, { numRuns: 1, seed: 7 })[0]!);
    // The listener stores each under a subject with the control character in it. (It refuses a
    // space in a topic by closing the client's connection.)
    const poisoned = [
      `hos\ttile/${device}/sync/rows/batch`,
      `hostile/${device}\t/sync/rows/batch`,
      `hostile\r/${device}/sync/telemetry/batch`,
      `hostile/\n${device}/sync/ingest/ack`,
    ];
    for (const topic of poisoned) await client.publishAsync(topic, batch, { qos: 1 });
    await waitFor(async () => (await rejections(metrics)) === poisoned.length, {
      message: `${poisoned.length} rejections`,
      timeoutMs: 60_000,
    });
    expect(await rejections(metrics, 'invalid_topic')).toBe(poisoned.length);
    // None is left in the listener's stream to stall a bridge again.
    const left = await jsm.streams.info('$MQTT_msgs', { subjects_filter: '$MQTT.msgs.>' });
    expect(Object.keys(left.state.subjects ?? {}).filter((s) => /[ \t\r\n]/.test(s))).toEqual([]);

    // Still serving: a valid batch from the same device is staged.
    await client.publishAsync(`hostile/${device}/sync/rows/batch`, batch, { qos: 1 });
    const d = await registry.resolveDevice(PROJECT, 'hostile', device, uuidv7());
    const table = (JSON.parse(batch) as { source_table: string }).source_table;
    const { lineageId } = await registry.resolveLineage(d.device_id, table, uuidv7());
    await waitFor(async () => (await store.load(lineageId)).events.some((e) => e.type === 'RowsStaged'), {
      message: 'valid batch staged',
      timeoutMs: 60_000,
    });
  } finally {
    await client.endAsync();
    await worker.stop();
    await bridge.stop();
  }
});
