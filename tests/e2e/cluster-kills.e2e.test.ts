import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { KV_BUCKETS } from '../../infra/nats/names';
import { INGRESS_PARTITIONS, partitionOf } from '../../infra/nats/partitions';
import { devicePartition, PROJECTION_PARTITIONS } from '../../projections/runner/partitions';
import type { Page } from '../../projections';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { rng } from '../support/prng';
import { type Managed, tempDir } from '../support/proc';
import {
  approveReview,
  findLineage,
  type MirrorItem,
  mirrorRows,
  type RoleEnv,
  seedFromEnv,
  shutdown,
  startRole,
  startWriter,
  waitForTriggers,
  waitReady,
  type Writer,
} from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICES = ['gw-ck-a', 'gw-ck-b'] as const;
/** Rows that must become visible after a fault before the next one: the pipeline moved on. */
const PROGRESS_ROWS = 60;

type Device = {
  name: string;
  app: Database.Database;
  agent: AgentProcess;
  writer: Writer;
  /** Rows the application has committed so far (ids 1..written). */
  written: number;
  lineageId: string;
};

/**
 * The cloud split over a 3-node JetStream cluster (R3 streams) as it would be deployed: a bridge,
 * an API, two workers and two projectors sharing partitions, PostgreSQL as the read store, two
 * devices streaming. Then, one after the other: kill -9 of the nats-server node every agent and
 * role is connected to, of the worker that owns the first device's ingress partition, and of the
 * projector that owns its mirror partition. The survivors take every partition over, the mirrors
 * end up exactly the devices' tables (lost 0, doubled 0), and the longest stall of the read side
 * is reported.
 */
describe('a 3-node cluster under kills', () => {
  let cluster: NatsCluster | undefined;
  let pg: TestDatabase | undefined;
  let nc: NatsConnection | undefined;
  let api: CloudProcess | undefined;
  const roles = new Map<string, Managed>();
  const devices: Device[] = [];

  afterAll(async () => {
    for (const d of devices) await d.writer.stop().catch(() => undefined);
    await Promise.all(devices.map((d) => shutdown(d.agent)));
    await Promise.all([...roles.values(), api].map((p) => shutdown(p)));
    for (const d of devices) d.app.close();
    await nc?.close();
    await cluster?.stop();
    await pg?.drop();
  });

  it('loses and doubles nothing; the survivors own every partition; the stalls are reported', async () => {
    const seed = seedFromEnv();
    const random = rng(seed);
    cluster = await startNatsCluster();
    pg = await createTestDatabase('cluster_kills');
    const env = (extra: Record<string, string> = {}): RoleEnv => ({
      natsUrl: cluster!.urls,
      mqttUrl: cluster!.mqttUrls,
      readStore: pg!.url,
      bridgeClientId: 'bridge-cluster-kills',
      extra: { SLUICE_STREAM_REPLICAS: '3', ...extra },
    });
    const start = (
      name: string,
      role: 'bridge' | 'worker' | 'projector',
      extra: Record<string, string> = {},
    ) => {
      const p = startRole(role, env(extra));
      roles.set(name, p);
      return waitReady(p, role, 60_000);
    };
    await start('bridge', 'bridge');
    await Promise.all([
      start('w1', 'worker', { SLUICE_WORKER_ID: 'w1' }),
      start('w2', 'worker', { SLUICE_WORKER_ID: 'w2' }),
      start('p1', 'projector', { SLUICE_PROJECTOR_ID: 'p1' }),
      start('p2', 'projector', { SLUICE_PROJECTOR_ID: 'p2' }),
    ]);
    api = await startCloudProcess({
      natsUrl: cluster.urls,
      mqttUrl: cluster.mqttUrls,
      readStore: pg.url,
      args: ['api'],
      env: { SLUICE_STREAM_REPLICAS: '3' },
    });
    nc = await connect({ servers: cluster.nodes.slice(1).map((n) => n.url) });
    const leases = await new Kvm(nc).open(KV_BUCKETS.leases);

    for (const name of DEVICES) {
      const dir = tempDir('cluster-kills');
      const app = new Database(join(dir, 'app.db'));
      app.pragma('journal_mode = WAL');
      app.pragma('busy_timeout = 5000');
      app.exec('CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      // Every URL list starts with node 0: it is the node every agent uses until it dies.
      const agent = startAgentProcess({
        mqttUrl: cluster.mqttUrls,
        sourceDb: join(dir, 'app.db'),
        device: name,
        dir,
      });
      await waitForTriggers(app, 'readings');
      const device = { name, app, agent, written: 0, lineageId: '' } as Device;
      device.writer = startWriter(
        app,
        random,
        (db) => {
          const n = device.written + 1;
          db.prepare('INSERT INTO readings (id, v) VALUES (?, ?)').run(n, `${name} reading ${n}`);
          device.written = n; // after the insert: only committed rows count as written
        },
        20,
      );
      device.lineageId = (await findLineage(api.base, name, 'readings', 60_000)).lineage_id;
      devices.push(device);
    }
    for (const d of devices) await approveReview(api.base, d.lineageId);

    // The read side, sampled: rows visible in each mirror over time.
    const samples: { at: number; rows: number[] }[] = [];
    const visible = async () => {
      const rows: number[] = [];
      for (const d of devices) {
        const r = await getJson<Page<MirrorItem>>(
          `${api!.base}/lineages/${d.lineageId}/mirror-rows?limit=1&count=true`,
        );
        if (r.status !== 200) return undefined;
        rows.push(r.body.total);
      }
      return rows;
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const rows = await visible().catch(() => undefined);
        if (rows !== undefined) samples.push({ at: Date.now(), rows });
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const latest = () => samples.at(-1)?.rows ?? devices.map(() => 0);
    /**
     * Until every device's rows written after `from` are visible (PROGRESS_ROWS past what it had
     * written then): the window then holds the whole outage, not just what was already in flight.
     */
    const progressed = async (what: string) => {
      const target = devices.map((d) => d.written + PROGRESS_ROWS);
      await waitFor(() => latest().every((n, i) => n >= target[i]!), {
        timeoutMs: 120_000,
        intervalMs: 100,
        message: () => `rows visible again after ${what} (${latest().join(', ')} of ${target.join(', ')})`,
      });
    };
    /** The longest time one device's visible rows did not grow, from `from` on. */
    const longestStall = (from: number, to: number) => {
      let longest = 0;
      devices.forEach((_, i) => {
        let last = from;
        // From what was visible when the fault began: a sample that waited through the fault counts.
        let rows = samples.filter((s) => s.at < from).at(-1)?.rows[i] ?? 0;
        for (const s of samples.filter((x) => x.at >= from && x.at <= to)) {
          if (s.rows[i]! > rows) {
            longest = Math.max(longest, s.at - last);
            last = s.at;
            rows = s.rows[i]!;
          }
        }
      });
      return longest;
    };
    const ownersOf = async (group: string): Promise<Map<string, number>> => {
      const owners = new Map<string, number>();
      for await (const key of await leases.keys(`${group}.p.*`)) {
        const e = await leases.get(key);
        if (e?.operation === 'PUT') owners.set(e.string(), (owners.get(e.string()) ?? 0) + 1);
      }
      return owners;
    };
    const ownerOf = async (group: string, p: number) => (await leases.get(`${group}.p.${p}`))?.string();
    /** Every partition of the group held by `member` alone. */
    const reowned = (group: string, member: string, partitions: number) => {
      let seen = new Map<string, number>();
      return waitFor(
        async () => {
          seen = await ownersOf(group);
          return seen.size === 1 && seen.get(member) === partitions ? seen : undefined;
        },
        {
          timeoutMs: 60_000,
          intervalMs: 250,
          message: () => `${member} owns every ${group} partition (owners: ${JSON.stringify([...seen])})`,
        },
      );
    };

    const stalls: string[] = [];
    await progressed('start');
    const t0 = Date.now();

    // 1. The node every agent and role is connected to.
    let at = Date.now();
    await cluster.kill(0);
    await progressed('the kill of node 0');
    stalls.push(`node 0 ${longestStall(at, Date.now())} ms`);
    await cluster.start(0);

    // 2. The worker that owns the first device's ingress partition.
    const ingress = partitionOf(`e2e/${DEVICES[0]}`);
    const worker = await waitFor(() => ownerOf('worker', ingress), {
      message: `an owner of ingress partition ${ingress}`,
    });
    const survivingWorker = worker === 'w1' ? 'w2' : 'w1';
    at = Date.now();
    await roles.get(worker)!.kill();
    await reowned('worker', survivingWorker, INGRESS_PARTITIONS);
    await progressed(`the kill of worker ${worker}`);
    stalls.push(`worker ${longestStall(at, Date.now())} ms`);

    // 3. The projector that owns the first device's mirror partition.
    const [first] = await waitFor(async () => {
      const rows = await getJson<Page<MirrorItem & { device_id: string }>>(
        `${api!.base}/lineages/${devices[0]!.lineageId}/mirror-rows?limit=1`,
      );
      return rows.body.items.length ? rows.body.items : undefined;
    });
    const partition = devicePartition(first!.device_id);
    const projector = await waitFor(() => ownerOf('projector', partition), {
      message: `an owner of projection partition ${partition}`,
    });
    const survivingProjector = projector === 'p1' ? 'p2' : 'p1';
    at = Date.now();
    await roles.get(projector)!.kill();
    await reowned('projector', survivingProjector, PROJECTION_PARTITIONS);
    await progressed(`the kill of projector ${projector}`);
    stalls.push(`projector ${longestStall(at, Date.now())} ms`);
    const globals = await ownersOf('projector-global');
    expect([...globals.keys()]).toEqual([survivingProjector]);
    const faultsMs = Date.now() - t0;

    // Writing stops; every row written reaches its mirror exactly once with its value.
    const written = new Map<string, number>();
    for (const d of devices) written.set(d.name, await d.writer.stop());
    const total = [...written.values()].reduce((a, b) => a + b, 0);
    await waitFor(() => latest().reduce((a, b) => a + b, 0) >= total, {
      timeoutMs: 120_000,
      intervalMs: 250,
      message: () => `all ${total} rows visible (${latest().join(', ')})`,
    });
    sampling = false;
    await sampler;
    for (const d of devices) {
      const n = written.get(d.name)!;
      const mirror = await mirrorRows(api.base, d.lineageId);
      const ids = mirror.map((m) => Number(m.key.id));
      expect({ device: d.name, rows: ids.length, distinct: new Set(ids).size }).toEqual({
        device: d.name,
        rows: n,
        distinct: n,
      });
      expect(mirror.filter((m) => m.row.v !== `${d.name} reading ${String(m.key.id)}`)).toEqual([]);
      expect(Math.max(...ids)).toBe(n);
    }
    console.log(
      `[cluster-kills] seed ${seed}: ${total} rows from ${devices.length} devices, lost 0, doubled 0; ` +
        `longest stall of the read side after each kill: ${stalls.join(', ')}; faults ${faultsMs} ms; ` +
        `worker ${worker} → ${survivingWorker}, projector ${projector} → ${survivingProjector}`,
    );
  }, 600_000);
});
