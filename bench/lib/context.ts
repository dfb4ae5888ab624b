import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import pg from 'pg';
import { type MosquittoServer, startMosquitto } from '../../tests/support/mosquitto';
import { type NatsServer, startNats } from '../../tests/support/nats';
import type { PeakRss } from './rss';
import { childPids, type Tracked } from './rss';
import type { Percentiles, Spread } from './stats';

type Cluster = { url: string; dir: string; dataDir: string; stop: () => void };
const { startCluster } = createRequire(__filename)('../../tests/support/postgres-cluster.js') as {
  startCluster: (opts?: { fsync?: boolean }) => Promise<Cluster>;
};

/**
 * Durability profiles. `default`: what the product runs with (nats-server's own JetStream flush
 * interval, SQLite WAL with synchronous=NORMAL, PostgreSQL's defaults: fsync and synchronous
 * commit on). `safe`: fsync everywhere (JetStream `sync_interval: always`, the application's
 * SQLite synchronous=FULL; PostgreSQL already commits synchronously).
 */
export type Profile = 'default' | 'safe';

export type StageResult = {
  group: 'raw' | 'edge' | 'ingest' | 'naive' | 'full' | 'rebuild' | 'drain' | 'api';
  stage: string;
  label: string;
  profile: Profile;
  row_bytes?: number;
  rows_per_run?: number;
  runs?: number[];
  rows_per_s?: Spread;
  latency_ms?: Percentiles;
  latency_of?: string;
  rss_mb: Record<string, number>;
  /** CPU seconds per process over the whole stage (all runs). */
  cpu_s?: Record<string, number>;
  note?: string;
  /** Where rows queued while the stage ran (full system, drain). */
  backlog?: unknown;
};

export type Sizes = Readonly<{
  rowSizes: readonly number[];
  runs: number;
  rawRows: number;
  keys: number;
  captureRows1: number;
  captureRows100: number;
  agentRows: number;
  naiveRows: number;
  fullRows: number;
  freshnessSeconds: number;
  fleetDevices: number;
  fleetRows: number;
  /** The simulated-device stage (`fleet1k`): devices, seconds per load step, first step, freshness window. */
  fleet1kDevices: number;
  fleet1kStepSeconds: number;
  fleet1kStartRate: number;
  fleet1kFreshSeconds: number;
  rebuildRows: number;
  drainRows: number;
  apiLineages: number;
  apiStaged: number;
  apiRequests: number;
}>;

export const QUICK: Sizes = {
  rowSizes: [256],
  runs: 3,
  rawRows: 20_000,
  keys: 5_000,
  captureRows1: 2_000,
  captureRows100: 20_000,
  agentRows: 10_000,
  naiveRows: 20_000,
  fullRows: 6_000,
  freshnessSeconds: 2,
  fleetDevices: 10,
  fleetRows: 2_500,
  fleet1kDevices: 100,
  fleet1kStepSeconds: 3,
  fleet1kStartRate: 250,
  fleet1kFreshSeconds: 3,
  rebuildRows: 30_000,
  drainRows: 8_000,
  apiLineages: 1_000,
  apiStaged: 20_000,
  apiRequests: 20,
};

export const FULL: Sizes = {
  rowSizes: [64, 256, 1024],
  runs: 3,
  rawRows: 100_000,
  keys: 20_000,
  captureRows1: 10_000,
  captureRows100: 100_000,
  agentRows: 50_000,
  naiveRows: 50_000,
  fullRows: 30_000,
  freshnessSeconds: 10,
  fleetDevices: 50,
  fleetRows: 25_000,
  fleet1kDevices: 1_000,
  fleet1kStepSeconds: 5,
  fleet1kStartRate: 250,
  fleet1kFreshSeconds: 10,
  rebuildRows: 1_000_000,
  drainRows: 100_000,
  apiLineages: 10_000,
  apiStaged: 1_000_000,
  apiRequests: 200,
};

export type Servers = {
  nats: NatsServer;
  mosq: MosquittoServer;
  pg: Cluster;
  tracked: Tracked[];
  stop: () => Promise<void>;
};

/** Where the stages reach NATS: one server, or a cluster's comma-separated node lists. */
export type NatsTarget = Pick<NatsServer, 'url' | 'mqttUrl'>;

export type Ctx = Readonly<{
  profile: Profile;
  quick: boolean;
  sizes: Sizes;
  nats: NatsTarget;
  /** Replicas of Sluice's streams (`SLUICE_STREAM_REPLICAS`): 3 on the cluster stage, else 1. */
  streamReplicas?: number;
  mosq: MosquittoServer;
  pgAdminUrl: string;
  rss: PeakRss;
  /** synchronous= of the application's SQLite database. */
  sqliteSync: 'NORMAL' | 'FULL';
  /** Directory for `--cpu-prof` profiles of the cloud roles and agents; off when undefined. */
  cpuProfDir: string | undefined;
  log: (msg: string) => void;
  createDatabase: (name: string) => Promise<string>;
  /** The deadline of the whole run: stages check it and stop early rather than overrun. */
  deadline: number;
}>;

/** nats-server ≥ 2.10 knows `jetstream { sync_interval: always }`; older ones refuse the config. */
export function natsSyncAlwaysSupported(): boolean {
  const r = spawnSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['--version'], { encoding: 'utf8' });
  const m = /v(\d+)\.(\d+)/.exec(r.stdout ?? '');
  return !!m && (Number(m[1]) > 2 || (Number(m[1]) === 2 && Number(m[2]) >= 10));
}

/** The servers a profile runs on: its own nats-server; Mosquitto and PostgreSQL are shared. */
export async function startNatsFor(profile: Profile): Promise<NatsServer> {
  return startNats({ syncAlways: profile === 'safe' && natsSyncAlwaysSupported() });
}

export async function startShared(): Promise<{ mosq: MosquittoServer; pg: Cluster; tracked: Tracked[] }> {
  const [mosq, cluster] = await Promise.all([startMosquitto(), startCluster({ fsync: true })]);
  const postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const tracked: Tracked[] = [
    { name: 'mosquitto', pids: () => [mosq.pid()].filter((p): p is number => p !== undefined) },
    // Backends, the checkpointer and the WAL writer; shared buffers count once touched.
    { name: 'postgres', pids: () => [postmaster, ...childPids(postmaster)] },
  ];
  return { mosq, pg: cluster, tracked };
}

export function natsTracked(nats: Pick<NatsServer, 'pid'>, name = 'nats-server'): Tracked {
  return { name, pids: () => [nats.pid()].filter((p): p is number => p !== undefined) };
}

let dbCounter = 0;
export function databaseFactory(adminUrl: string): (name: string) => Promise<string> {
  return async (name) => {
    const db = `bench_${name}_${dbCounter++}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE "${db}"`);
    } finally {
      await c.end();
    }
    const u = new URL(adminUrl);
    u.pathname = `/${db}`;
    return u.toString();
  };
}

export function removeCluster(cluster: Cluster): void {
  cluster.stop();
  rmSync(cluster.dir, { recursive: true, force: true });
}
