import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { freePort, type Managed, portOpen, startProcess, tempDir, waitPort } from './proc';
import { waitFor } from './wait';

const NATS_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

export type ClusterNode = {
  name: string;
  url: string;
  mqttUrl: string;
  port: number;
  mqttPort: number;
  storeDir: string;
  running: () => boolean;
  output: () => string;
  /** The running process's id (benchmarks read its memory from /proc). */
  pid: () => number | undefined;
};

export type NatsCluster = {
  nodes: readonly ClusterNode[];
  /** Every node's client URL, comma-separated (SLUICE_NATS_URL accepts the list). */
  urls: string;
  /** Every node's MQTT listener, comma-separated (SLUICE_MQTT_URL / agent `server_url`). */
  mqttUrls: string;
  /** SIGKILL one node: no goodbye to its routes or clients, its store left as the crash left it. */
  kill: (i: number) => Promise<void>;
  /** Start a stopped node again on the same ports and store. */
  start: (i: number) => Promise<void>;
  /** Until JetStream answers through a connection to node `i` (a meta leader is elected). */
  waitReady: (i?: number) => Promise<void>;
  /** Stop every node and remove their stores. */
  stop: () => Promise<void>;
};

/**
 * Three nats-server processes in one cluster on free loopback ports, each with JetStream and an
 * MQTT listener whose own streams ($MQTT_msgs, sessions) are R3, as INFRA-NOTES describes.
 */
export async function startNatsCluster(opts: { size?: number } = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const dir = tempDir('nats-cluster');
  const ports = await Promise.all(
    Array.from({ length: size }, async () => ({
      client: await freePort(),
      route: await freePort(),
      mqtt: await freePort(),
    })),
  );
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`);
  const procs: (Managed | undefined)[] = [];
  const nodes = ports.map((p, i): ClusterNode & { configFile: string } => {
    const name = `sluice_n${i}_${p.client}`;
    const storeDir = join(dir, `n${i}`, 'js');
    const configFile = join(dir, `n${i}.conf`);
    writeFileSync(
      configFile,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${p.client}`,
        'max_payload: 8MB',
        `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
        `cluster { name: sluice_test, listen: 127.0.0.1:${p.route}, routes: [${routes.filter((_, j) => j !== i).join(', ')}] }`,
        `mqtt { listen: 127.0.0.1:${p.mqtt}, stream_replicas: ${Math.min(size, 3)} }`,
      ].join('\n'),
    );
    return {
      name,
      url: `nats://127.0.0.1:${p.client}`,
      mqttUrl: `mqtt://127.0.0.1:${p.mqtt}`,
      port: p.client,
      mqttPort: p.mqtt,
      storeDir,
      configFile,
      running: () => {
        const c = procs[i]?.child;
        return c !== undefined && c.exitCode === null && c.signalCode === null;
      },
      output: () => procs[i]?.output() ?? '',
      pid: () => procs[i]?.child.pid,
    };
  });

  const start = async (i: number) => {
    const node = nodes[i]!;
    procs[i] = startProcess(NATS_BIN, ['-c', node.configFile]);
    await waitPort(node.port, `${node.name}`);
  };
  const waitReady = async (i?: number) => {
    const targets = i === undefined ? nodes.filter((n) => n.running()) : [nodes[i]!];
    for (const node of targets) {
      let nc: NatsConnection | undefined;
      try {
        await waitFor(
          async () => {
            nc ??= await connect({ servers: node.url, maxReconnectAttempts: 0 });
            const info = await (await jetstreamManager(nc, { timeout: 2_000 })).getAccountInfo();
            return info !== undefined;
          },
          { timeoutMs: 60_000, message: `JetStream ready through ${node.name}` },
        );
        // The MQTT listener opens once the node has created or found its R3 streams.
        await waitPort(node.mqttPort, `${node.name} MQTT listener`, 60_000);
      } finally {
        await nc?.close().catch(() => undefined);
      }
    }
  };

  await Promise.all(nodes.map((_, i) => start(i)));
  await waitReady();
  return {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    mqttUrls: nodes.map((n) => n.mqttUrl).join(','),
    kill: async (i) => {
      await procs[i]?.kill();
      await waitFor(async () => !(await portOpen(nodes[i]!.port)), { message: `${nodes[i]!.name} gone` });
    },
    start: async (i) => {
      await start(i);
      await waitReady(i);
    },
    waitReady,
    stop: async () => {
      await Promise.all(procs.map((p) => p?.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Until every stream named has a leader and all its replicas are current (after a restart). */
export async function waitStreamsCurrent(jsm: JetStreamManager, streams: readonly string[]): Promise<void> {
  for (const name of streams) {
    await waitFor(
      async () => {
        const c = (await jsm.streams.info(name)).cluster;
        return c?.leader !== undefined && (c.replicas ?? []).every((r) => r.current && (r.lag ?? 0) === 0);
      },
      { timeoutMs: 60_000, message: `stream ${name} led and current on every replica` },
    );
  }
}
