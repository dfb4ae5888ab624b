/**
 * The system under fault: a private nats-server, the MQTT broker of the scenario, the read store
 * (SQLite, or a PostgreSQL cluster of its own so it can be stopped without hurting other suites),
 * the cloud roles as child processes (`sluice all`, or each role alone so each can be killed), and
 * the device: an application database with the real `sluice-agent` next to it.
 */
import type Database from 'better-sqlite3';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { parseReadStore } from '../../infra/config/env';
import { STREAMS } from '../../infra/nats/names';
import { ensureStreams } from '../../infra/nats/streams';
import { openReadStore, type ReadStore } from '../../projections';
import { ingressConsumerConfig } from '../../worker/ingress-partitions';
import { INGRESS_PARTITIONS } from '../../infra/nats/partitions';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { type Managed, tempDir } from '../support/proc';
import { PyApp } from '../support/pyapp';
import { type CloudRole, shutdown, startRole, waitReady } from '../support/readside';
import { type AgentProcess, startAgentProcess, startCloudProcess } from '../support/stack';
import { waitFor } from '../support/wait';
import { AGENT_TABLE_STRATEGIES, createDeviceDb } from './workload';

// postgres-cluster.js is plain JS (jest's global setup loads it before any transform).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startCluster } = require('../support/postgres-cluster') as {
  startCluster: () => Promise<PgCluster>;
};
type PgCluster = {
  url: string;
  dataDir: string;
  dir: string;
  port: number;
  stop: () => void;
  run: (bin: string, args: string[]) => void;
  pgBin: (name: string) => string;
};

export type BrokerKind = 'nats' | 'mosquitto' | 'mosquitto-persistent';
export type RoleName = CloudRole | 'api' | 'all';

export type CloudOptions = Readonly<{
  broker: BrokerKind;
  store: 'sqlite' | 'postgres';
  /** `all`: one `sluice all`; `roles`: bridge, worker, projector and api as processes of their own. */
  layout: 'all' | 'roles';
  bridges?: number;
  workers?: number;
  /** The ingress consumer's ack wait, set before any worker starts (workers keep an existing one). */
  workerAckWaitMs?: number;
}>;

type Proc = { role: RoleName; index: number; proc: Managed; apiBase?: string };

/** A PostgreSQL cluster of the scenario's own: stopped and started without touching the suite's. */
export class DedicatedPostgres {
  private constructor(
    private readonly c: PgCluster,
    readonly url: string,
  ) {}

  static async start(): Promise<DedicatedPostgres> {
    const c = await startCluster();
    const admin = new pg.Client({ connectionString: c.url });
    await admin.connect();
    await admin.query('CREATE DATABASE faults');
    await admin.end();
    const url = new URL(c.url);
    url.pathname = '/faults';
    return new DedicatedPostgres(c, url.toString());
  }

  stop(): void {
    this.c.run(this.c.pgBin('pg_ctl'), ['-D', this.c.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  start(): void {
    this.c.run(this.c.pgBin('pg_ctl'), [
      '-D',
      this.c.dataDir,
      '-l',
      join(this.c.dir, 'pg.log'),
      '-w',
      '-o',
      `-p ${this.c.port} -k ${this.c.dir} -c listen_addresses=127.0.0.1 -c max_connections=300`,
      'start',
    ]);
  }

  destroy(): void {
    this.c.stop();
  }
}

export class Cloud {
  readonly procs: Proc[] = [];
  nc!: NatsConnection;
  store!: ReadStore;
  readStoreUrl!: string;
  private mosquitto: MosquittoServer | undefined;
  private constructor(
    readonly o: CloudOptions,
    readonly nats: NatsServer,
    readonly pg: DedicatedPostgres | undefined,
  ) {}

  static async start(o: CloudOptions): Promise<Cloud> {
    // One after the other: each picks free ports, and two picking at once could pick the same one.
    const pgc = o.store === 'postgres' ? await DedicatedPostgres.start() : undefined;
    const nats = await startNats();
    const cloud = new Cloud(o, nats, pgc);
    try {
      if (o.broker !== 'nats')
        cloud.mosquitto = await startMosquitto({ persistence: o.broker === 'mosquitto-persistent' });
      cloud.readStoreUrl = pgc ? pgc.url : `sqlite:${join(tempDir('faults-store'), 'read.db')}`;
      cloud.nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      const jsm = await jetstreamManager(cloud.nc);
      await ensureStreams(jsm);
      // The workers keep consumers that exist: these carry the scenario's ack wait.
      if (o.workerAckWaitMs)
        for (let p = 0; p < INGRESS_PARTITIONS; p++)
          await jsm.consumers.add(STREAMS.ingress, ingressConsumerConfig(p, o.workerAckWaitMs));
      if (o.layout === 'all') await cloud.startRole('all', 0);
      else {
        for (let i = 0; i < (o.bridges ?? 1); i++) await cloud.startRole('bridge', i, false);
        for (let i = 0; i < (o.workers ?? 1); i++) await cloud.startRole('worker', i, false);
        await cloud.startRole('projector', 0, false);
        await Promise.all(cloud.procs.map((p) => waitReady(p.proc, p.role as CloudRole)));
        await cloud.startRole('api', 0);
      }
      cloud.store = openReadStore(parseReadStore(cloud.readStoreUrl));
      return cloud;
    } catch (err) {
      await cloud.stop();
      throw err;
    }
  }

  /** After a nats-server restart: JetStream answers this test's connection again. */
  async jetstreamReady(): Promise<void> {
    await waitFor(
      async () => {
        const jsm = await jetstreamManager(this.nc, { timeout: 2_000 });
        return (await jsm.getAccountInfo()).streams >= 3;
      },
      { timeoutMs: 60_000, intervalMs: 250, message: 'JetStream back after the restart' },
    );
  }

  get mqttUrl(): string {
    return this.mosquitto?.url ?? this.nats.mqttUrl;
  }

  /** The MQTT broker: the NATS listener (so the whole nats-server) or Mosquitto. */
  get broker(): { kill: () => Promise<void>; stop: () => Promise<void>; start: () => Promise<void> } {
    return this.mosquitto ?? this.nats;
  }

  private env(index: number): Record<string, string> {
    return {
      SLUICE_NATS_URL: this.nats.url,
      SLUICE_MQTT_URL: this.mqttUrl,
      SLUICE_READ_STORE: this.readStoreUrl,
      SLUICE_BRIDGE_CLIENT_ID: `faults-bridge-${index}`,
      SLUICE_WORKER_ID: `faults-worker-${index}`,
    };
  }

  async startRole(role: RoleName, index: number, wait = true): Promise<Proc> {
    let p: Proc;
    if (role === 'all' || role === 'api') {
      const c = await startCloudProcess({
        natsUrl: this.nats.url,
        mqttUrl: this.mqttUrl,
        readStore: this.readStoreUrl,
        args: [role],
        env: this.env(index),
      });
      p = { role, index, proc: c, apiBase: c.base };
    } else {
      const proc = startRole(role, {
        natsUrl: this.nats.url,
        mqttUrl: this.mqttUrl,
        readStore: this.readStoreUrl,
        bridgeClientId: `faults-bridge-${index}`,
      });
      p = { role, index, proc };
      if (wait) await waitReady(proc, role, 60_000);
    }
    const at = this.procs.findIndex((x) => x.role === role && x.index === index);
    if (at >= 0) this.procs[at] = p;
    else this.procs.push(p);
    return p;
  }

  proc(role: RoleName, index = 0): Proc {
    const p = this.procs.find((x) => x.role === role && x.index === index);
    if (!p) throw new Error(`no ${role} #${index} in this cloud`);
    return p;
  }

  /** kill -9 a role's process and start it again (waiting until it serves). */
  async killAndRestart(role: RoleName, index = 0): Promise<void> {
    await this.proc(role, index).proc.kill();
    await this.startRole(role, index);
  }

  get apiBase(): string {
    return (this.procs.find((p) => p.apiBase)?.apiBase ?? '') as string;
  }

  /** Every role's recent output, for a failure message. */
  logs(chars = 1500): string {
    return this.procs.map((p) => `--- ${p.role}#${p.index}\n${p.proc.output().slice(-chars)}`).join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => shutdown(p.proc)));
    await this.store?.close().catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
    await this.mosquitto?.stop();
    await this.nats.stop();
    this.pg?.destroy();
  }
}

export type DeviceOptions = Readonly<{
  /**
   * Who writes the application's tables: better-sqlite3 (its bundled SQLite, the default) or
   * python3's sqlite3 module (the system's SQLite). The harness reads the database with
   * better-sqlite3 either way.
   */
  app?: 'better-sqlite3' | 'python3';
  receiptTimeout?: string;
  maxBatchRows?: number;
  /** The agent's state dir (state.db); a temp dir of its own when not given. */
  stateDir?: string;
}>;

/** The device: the application's database and the real agent as a child process. */
export class Device {
  agent: AgentProcess | undefined;
  /** The python3 application, when it is the writer (`app: 'python3'`). */
  py: PyApp | undefined;
  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly app: Database.Database,
    private readonly mqttUrl: string,
    private readonly o: DeviceOptions,
  ) {}

  static start(name: string, mqttUrl: string, o: DeviceOptions = {}): Device {
    const dir = tempDir('faults-device');
    const app = createDeviceDb(join(dir, 'app.db'));
    const d = new Device(name, dir, app, mqttUrl, o);
    if (o.app === 'python3') d.py = PyApp.open(join(dir, 'app.db'));
    d.startAgent();
    return d;
  }

  get stateDir(): string {
    return this.o.stateDir ?? this.dir;
  }

  startAgent(): AgentProcess {
    this.agent = startAgentProcess({
      mqttUrl: this.mqttUrl,
      sourceDb: join(this.dir, 'app.db'),
      device: this.name,
      slug: 'faults',
      flushInterval: '100ms',
      dir: this.stateDir,
      extraYaml: [
        `  receipt_timeout: ${this.o.receiptTimeout ?? '2s'}`,
        `  max_batch_rows: ${this.o.maxBatchRows ?? 500}`,
        `  ${AGENT_TABLE_STRATEGIES}`,
      ].join('\n'),
    });
    // Every run's whole log, for the post-mortem of a failed check (the process keeps only a tail).
    const file = createWriteStream(join(this.dir, 'agent.log'), { flags: 'a' });
    this.agent.child.stdout?.pipe(file);
    this.agent.child.stderr?.pipe(file);
    return this.agent;
  }

  /** The agent logs its first `started` line once capture is installed. */
  async waitStarted(): Promise<void> {
    const a = this.agent!;
    await waitFor(
      () => {
        if (a.child.exitCode !== null) throw new Error(`agent exited: ${a.output().slice(-2000)}`);
        return a.output().includes('sluice-agent started');
      },
      { timeoutMs: 60_000, message: 'agent started' },
    );
  }

  async killAndRestart(): Promise<void> {
    await this.agent?.kill();
    this.startAgent();
    await this.waitStarted();
  }

  async stop(): Promise<void> {
    await shutdown(this.agent);
    await this.py?.close();
    this.app.close();
  }
}
