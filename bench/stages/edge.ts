/**
 * The edge and the ingest path: the agent publishing a journal to a receipting cloud, and the
 * bridge (MQTT → validated ingress) and the worker (ingress → decided lineage events) alone.
 */
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import mqtt from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { reconcile } from '../../edge-agent/capture/install';
import { silentLogger } from '../../infra/log';
import { startAgent } from '../../edge-agent/main';
import { FakeCloud } from '../../edge-agent/testing/fake-cloud';
import { writeTestConfig } from '../../edge-agent/testing/fixtures';
import { createMetrics } from '../../infra/metrics';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { STREAMS } from '../../infra/nats/names';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { LineageCommandHandler } from '../../worker/handler';
import { IngressWorker } from '../../worker/ingress-worker';
import { ingressBacklog } from '../../worker/ingress-partitions';
import { type Ctx, natsTracked, type StageResult, startNatsFor } from '../lib/context';
import { items, wireBatches } from '../lib/data';
import { onCleanup } from '../lib/cleanup';
import { measure, type Run, seconds, sleep, windowed } from '../lib/measure';
import { appWriter, openAppDb } from './raw';

/** rows/s from a pre-filled journal to a cloud that receipts at once (no pipeline behind it). */
export async function agentPublish(
  ctx: Ctx,
  broker: 'nats' | 'mosquitto',
  size: number,
): Promise<StageResult> {
  const url = broker === 'nats' ? ctx.nats.mqttUrl : ctx.mosq.url;
  const rows = items(ctx.sizes.agentRows, size, ctx.sizes.keys);
  return measure(
    ctx,
    {
      group: 'edge',
      stage: `edge.agent.${broker}`,
      label: `agent publish → receipt, ${broker === 'nats' ? 'NATS MQTT' : 'Mosquitto'}`,
      row_bytes: size,
      note: 'journal pre-filled; receipt delivery, 4 batches in flight',
    },
    async (run): Promise<Run> => {
      const dir = tempDir('bench-agent');
      const app = openAppDb(join(dir, 'app.db'), ctx.sqliteSync);
      reconcile(app, { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: uuidv7 });
      appWriter(app)(rows, 1000);
      const cloud = await FakeCloud.connect(url);
      const { config } = writeTestConfig({
        dir,
        serverUrl: url,
        deviceId: `bench-${broker}-${size}-${run}`,
        sourceDb: join(dir, 'app.db'),
      });
      const t0 = process.hrtime.bigint();
      const agent = await startAgent(config, { logger: silentLogger() });
      await waitFor(() => agent.stats().confirmedRows >= rows.length, {
        timeoutMs: 300_000,
        intervalMs: 10,
        message: 'the agent to have every row confirmed',
      });
      const s = seconds(t0);
      await agent.stop();
      await cloud.close();
      app.close();
      return { rows: rows.length, seconds: s };
    },
  );
}

/** The bridge and the worker alone, in this process, on the profile's nats-server. */
export async function ingest(ctx: Ctx, size: number): Promise<StageResult[]> {
  // A nats-server of its own: the lineages it creates must not be in the full system's streams.
  const nats = await startNatsFor(ctx.profile);
  const forget = onCleanup(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm);
  const registry = await Registry.open(nc);
  const store = await JetStreamEventStore.create(nc);
  const rows = items(ctx.sizes.rawRows, size, ctx.sizes.keys);
  const bridgeRuns: Run[] = [];
  const workerRuns: Run[] = [];
  const probe = ctx.rss.begin([natsTracked(nats)]);
  try {
    for (let run = 0; run < ctx.sizes.runs; run++) {
      // Ten devices, each its own lineage, so the worker's per-lineage work is realistic.
      const batches = Array.from({ length: 10 }, (_, d) =>
        wireBatches(
          rows.slice((d * rows.length) / 10, ((d + 1) * rows.length) / 10),
          size,
          `ing-${run}-${d}`,
        ),
      ).flat();
      const metrics = createMetrics();
      const bridge = new UplinkBridge({
        nc,
        mqttUrl: nats.mqttUrl,
        clientId: `bench-bridge-${uuidv7().slice(-8)}`,
        projectOf: () => '0190a000-0000-7000-8000-0000000000be',
        log: silentLogger(),
        metrics,
      });
      await bridge.start();
      const before = (await jsm.streams.info(STREAMS.ingress)).state.messages;
      const device = await mqtt.connectAsync(nats.mqttUrl, {
        clientId: `bench-dev-${uuidv7().slice(-8)}`,
        protocolVersion: 4,
      });
      let t0 = process.hrtime.bigint();
      await windowed(batches, 64, (b) => device.publishAsync(b.topic, b.body, { qos: 1 }));
      while ((await jsm.streams.info(STREAMS.ingress)).state.messages - before < batches.length)
        await sleep(5);
      bridgeRuns.push({ rows: rows.length, seconds: seconds(t0) });
      await device.endAsync();
      await bridge.stop();

      t0 = process.hrtime.bigint();
      const worker = new IngressWorker({
        nc,
        handler: new LineageCommandHandler(store),
        registry,
        log: silentLogger(),
        metrics,
      });
      await worker.start();
      for (;;) {
        if ((await ingressBacklog(jsm)) === 0) break;
        await sleep(5);
      }
      workerRuns.push({ rows: rows.length, seconds: seconds(t0) });
      await worker.stop();
    }
  } finally {
    await nc.close();
  }
  const rss = probe.end();
  const cpu = probe.cpu(); // bridge and worker runs together, in this process
  await nats.stop();
  forget();
  const summarize = (stage: string, label: string, runs: Run[], note: string) =>
    measure(ctx, { group: 'ingest', stage, label, row_bytes: size, note }, (i) => Promise.resolve(runs[i]!), {
      runs: runs.length,
    }).then((r) => ({ ...r, rss_mb: rss, cpu_s: cpu }));
  return [
    await summarize(
      'ingest.bridge',
      'bridge: MQTT → JetStream ingress',
      bridgeRuns,
      '10 devices, 64 publishes in flight',
    ),
    await summarize(
      'ingest.worker',
      'worker: ingress → lineage events',
      workerRuns,
      'new lineages: rows staged for review',
    ),
  ];
}
