import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { Registry } from '../../infra/nats/registry';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster';
import { tempDir } from '../support/proc';
import {
  type AgentProcess,
  type CloudProcess,
  TEST_PROJECT,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

type Receipt = { batch_id: string; last_commit_seq: number };

/**
 * A node of a 3-node cluster dies (kill -9) under the agent and the bridge: both move to another
 * node's MQTT listener from their URL lists, batches keep flowing, and at the end every row the
 * application wrote is in its lineage once.
 */
describe('broker failover on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  beforeAll(async () => {
    cluster = await startNatsCluster();
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await cloud?.stop();
    await cluster?.stop();
  });

  it('keeps batches flowing through the other nodes when the one in use is killed; nothing lost or doubled', async () => {
    const [a] = cluster.nodes;
    // Everyone starts on node 0: first in every list.
    cloud = await startCloudProcess({
      natsUrl: cluster.urls,
      mqttUrl: cluster.mqttUrls,
      env: { SLUICE_STREAM_REPLICAS: '3', SLUICE_BRIDGE_CLIENT_ID: '', SLUICE_BRIDGE_ID: 'failover' },
    });
    const dir = tempDir('failover');
    const appDb = join(dir, 'app.db');
    const db = new Database(appDb);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    agent = startAgentProcess({ mqttUrl: cluster.mqttUrls, sourceDb: appDb, device: 'gw-failover', dir });
    await waitFor(() => agent!.output().includes(`"broker":"127.0.0.1:${a!.mqttPort}"`), {
      timeoutMs: 30_000,
      message: () => `agent connected to node 0 (${agent!.output().slice(-1000)})`,
    });
    expect(cloud.output()).toContain(
      `"clientId":"sluice-bridge-failover","broker":"127.0.0.1:${a!.mqttPort}"`,
    );
    expect(cloud.output()).toContain('"uplinks":"jetstream"');

    // Receipts as the device gets them, watched from a node that stays up.
    const watcher = await mqtt.connectAsync(cluster.nodes[2]!.mqttUrl, {
      clientId: `watch-${uuidv7()}`,
      protocolVersion: 4,
    });
    const receipts: { at: number; r: Receipt }[] = [];
    watcher.on('message', (_t, p) =>
      receipts.push({ at: Date.now(), r: JSON.parse(p.toString()) as Receipt }),
    );
    await watcher.subscribeAsync('e2e/gw-failover/sync/ingest/receipt', { qos: 0 });

    let written = 0;
    let writing = true;
    const insert = db.prepare('INSERT INTO readings (id, v) VALUES (?, ?)');
    const writer = (async () => {
      while (writing) {
        written++;
        insert.run(written, `reading ${written}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitFor(() => receipts.length >= 10, { timeoutMs: 60_000, message: 'batches flowing' });

    const seenBefore = Math.max(...receipts.map((x) => x.r.last_commit_seq));
    const killedAt = Date.now();
    await cluster.kill(0);
    const next = await waitFor(
      () => receipts.find((x) => x.at >= killedAt && x.r.last_commit_seq > seenBefore),
      {
        timeoutMs: 120_000,
        message: () => `a batch after the kill (agent: ${agent!.output().slice(-1500)})`,
      },
    );
    const stallS = (next.at - killedAt) / 1000;
    console.log(`node 0 killed: next batch receipt after ${stallS.toFixed(2)} s`);
    // More batches after the first one through the new node.
    const after = receipts.length;
    await waitFor(() => receipts.length >= after + 10, { timeoutMs: 60_000, message: 'more batches' });
    writing = false;
    await writer;
    db.close();
    const elsewhere = cluster.nodes.slice(1).map((n) => `"broker":"127.0.0.1:${n.mqttPort}"`);
    expect(elsewhere.some((b) => agent!.output().includes(b))).toBe(true);
    if (process.env.DBG) {
      for (const n of cluster.nodes)
        console.log(`${n.name} (MQTT ${n.mqttPort}):\n${n.output().slice(-5000)}`);
      console.log(`killed at ${new Date(killedAt).toISOString()}\n${agent.output()}\n${cloud.output()}`);
    }

    const nc = await connect({ servers: cluster.nodes.slice(1).map((n) => n.url) });
    try {
      const registry = await Registry.open(nc);
      const store = await JetStreamEventStore.create(nc);
      const dev = await registry.resolveDevice(TEST_PROJECT, 'e2e', 'gw-failover', uuidv7());
      const { lineageId } = await registry.resolveLineage(dev.device_id, 'readings', uuidv7());
      const ids = await waitFor(
        async () => {
          const { events } = await store.load(lineageId);
          const all = events.flatMap((e) =>
            e.type === 'RowsStaged' ? e.data.rows.map((r) => Number(r.pk.id)) : [],
          );
          return all.length >= written ? all : undefined;
        },
        { timeoutMs: 120_000, message: `all ${written} rows in the lineage` },
      );
      expect(ids).toHaveLength(written); // none doubled
      expect(new Set(ids)).toEqual(new Set(Array.from({ length: written }, (_, i) => i + 1))); // none lost
    } finally {
      await nc.close();
      await watcher.endAsync();
    }
  }, 400_000);
});
