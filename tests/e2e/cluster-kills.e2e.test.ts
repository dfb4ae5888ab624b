import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { KV_BUCKETS } from '../../infra/nats/names';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { type Managed, startProcess, tempDir } from '../support/proc';
import { type AgentProcess, ROOT, TEST_PROJECT, startAgentProcess } from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICES = 3;
/** Visible progress is sampled this often; the longest gap between two increases is the stall. */
const SAMPLE_MS = 250;

/**
 * The whole scale-out story on a 3-node cluster (R3 streams): agents stream through one bridge,
 * two workers and two projectors share the partitions over a PostgreSQL read store. Then, one
 * after the other: kill -9 of the nats-server node every agent and role connected to first, of a
 * worker, and of a projector. Every row each application wrote ends up staged exactly once in the
 * read store, the survivors hold every partition, and the longest stall of the visible row count
 * is reported (goal ≤ 10 s).
 */
describe('kills on a 3-node cluster with two workers and two projectors', () => {
  let cluster: NatsCluster;
  let database: TestDatabase;
  const procs: Managed[] = [];
  const agents: AgentProcess[] = [];
  beforeAll(async () => {
    [cluster, database] = await Promise.all([startNatsCluster(), createTestDatabase('kills')]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([...agents, ...procs].map((p) => p.kill()));
    await cluster?.stop();
    await database?.drop();
  });

  it('loses nothing, doubles nothing, and the survivors take every partition over', async () => {
    const env = {
      ...process.env,
      SLUICE_NATS_URL: cluster.urls,
      SLUICE_MQTT_URL: cluster.mqttUrls,
      SLUICE_READ_STORE: database.url,
      SLUICE_PROJECT_ID: TEST_PROJECT,
      SLUICE_STREAM_REPLICAS: '3',
      SLUICE_BRIDGE_CLIENT_ID: '',
      SLUICE_BRIDGE_ID: 'kills',
      SLUICE_LOG_LEVEL: 'info',
    };
    const role = (name: string, extra: Record<string, string> = {}): Managed => {
      const p = startProcess(join(ROOT, 'bin', 'sluice'), [name], { env: { ...env, ...extra } });
      procs.push(p);
      return p;
    };
    const bridge = role('bridge');
    await waitFor(() => bridge.output().includes('bridge connected'), {
      timeoutMs: 60_000,
      message: 'bridge connected',
    });
    const workers = [role('worker', { SLUICE_WORKER_ID: 'w1' }), role('worker', { SLUICE_WORKER_ID: 'w2' })];
    const projectors = [
      role('projector', { SLUICE_PROJECTOR_ID: 'p1' }),
      role('projector', { SLUICE_PROJECTOR_ID: 'p2' }),
    ];
    for (const p of [...workers, ...projectors])
      await waitFor(() => /"msg":"(worker|projector) started/.test(p.output()), {
        timeoutMs: 60_000,
        message: 'workers and projectors started',
      });

    // Applications writing one row per transaction, every 20 ms.
    const apps = Array.from({ length: DEVICES }, (_, i) => {
      const dir = tempDir(`kills-${i}`);
      const file = join(dir, 'app.db');
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      agents.push(
        startAgentProcess({ mqttUrl: cluster.mqttUrls, sourceDb: file, device: `gw-kill-${i}`, dir }),
      );
      return { db, insert: db.prepare('INSERT INTO readings (id, v) VALUES (?, ?)'), written: 0 };
    });
    let writing = true;
    const writers = apps.map(async (a) => {
      while (writing) {
        a.written++;
        a.insert.run(a.written, `reading ${a.written}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    });

    const read = new pg.Client({ connectionString: database.url });
    await read.connect();
    const staged = async (): Promise<number> => {
      const r = await read
        .query<{ n: string }>('SELECT count(*) AS n FROM edge_staged_rows')
        .catch(() => ({ rows: [{ n: '0' }] }));
      return Number(r.rows[0]!.n);
    };
    // Visible progress per device, sampled: the longest time a device's staged rows stood still
    // while its application kept writing.
    const last = new Map<string, { n: number; at: number }>();
    let longest = { ms: 0, during: '', device: '' };
    let phase = 'steady';
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const r = await read
          .query<{ lineage_id: string; n: string }>(
            'SELECT lineage_id, count(*) AS n FROM edge_staged_rows GROUP BY lineage_id',
          )
          .catch(() => ({ rows: [] }));
        const now = Date.now();
        for (const { lineage_id, n } of r.rows) {
          const prev = last.get(lineage_id);
          if (prev && Number(n) <= prev.n) continue;
          if (prev && now - prev.at > longest.ms)
            longest = { ms: now - prev.at, during: phase, device: lineage_id };
          last.set(lineage_id, { n: Number(n), at: now });
        }
        await new Promise((r) => setTimeout(r, SAMPLE_MS));
      }
    })();
    /** Until every device's staged rows moved on after the kill; logs how long that took. */
    const stallSince = async (what: string, from: number) => {
      const before = new Map([...last].map(([id, v]) => [id, v.n]));
      await waitFor(() => [...before].every(([id, n]) => (last.get(id)?.n ?? 0) > n), {
        timeoutMs: 120_000,
        message: `every device's rows staged again after ${what}`,
      });
      console.log(
        `${what}: every device's rows visible again ${((Date.now() - from) / 1000).toFixed(1)} s after it`,
      );
      // A moment of steady flow before the next kill.
      await new Promise((r) => setTimeout(r, 5_000));
    };

    try {
      await waitFor(async () => (await staged()) >= DEVICES * 20, {
        timeoutMs: 120_000,
        message: 'rows flowing into the read store',
      });

      phase = 'node 0 killed';
      let at = Date.now();
      await cluster.kill(0);
      await stallSince('kill -9 of node 0', at);

      phase = 'worker w1 killed';
      at = Date.now();
      await workers[0]!.kill();
      await stallSince('kill -9 of worker w1', at);

      phase = 'projector p1 killed';
      at = Date.now();
      await projectors[0]!.kill();
      await stallSince('kill -9 of projector p1', at);

      phase = 'steady';
      writing = false;
      await Promise.all(writers);
      const written = apps.reduce((n, a) => n + a.written, 0);
      let perDevice = '';
      await waitFor(
        async () => {
          const r = await read.query<{ device: string; n: string }>(
            `SELECT l.device_name AS device, count(*) AS n FROM edge_staged_rows s
               JOIN edge_staged_lineages l ON l.lineage_id = s.lineage_id GROUP BY l.device_name ORDER BY 1`,
          );
          perDevice = `${r.rows.map((x) => `${x.device}=${x.n}`).join(' ')} of ${apps.map((a) => a.written).join(' ')}`;
          return (await staged()) >= written;
        },
        {
          timeoutMs: 90_000,
          message: () =>
            `all ${written} rows staged (${perDevice}); applications hold ` +
            apps
              .map((a) =>
                JSON.stringify(a.db.prepare('SELECT count(*) AS n, max(id) AS hi FROM readings').get()),
              )
              .join(' ') +
            '\n' +
            agents.map((p) => p.output().slice(-6000)).join('\n----\n'),
        },
      );
      sampling = false;
      await sampler;
      console.log(
        `${written} rows from ${DEVICES} devices; longest stall of a device's visible rows ${(longest.ms / 1000).toFixed(1)} s (${longest.during})`,
      );

      // Exactly once: per device, every id from 1 to what its application wrote, none twice.
      const rows = await read.query<{ device: string; n: string; ids: string; lo: string; hi: string }>(
        `SELECT l.device_name AS device, count(*) AS n, count(DISTINCT s.pk) AS ids,
                min((s.pk::json->>'id')::int) AS lo, max((s.pk::json->>'id')::int) AS hi
           FROM edge_staged_rows s JOIN edge_staged_lineages l ON l.lineage_id = s.lineage_id
          GROUP BY l.device_name ORDER BY l.device_name`,
      );
      expect(
        rows.rows.map((r) => ({ device: r.device, n: +r.n, ids: +r.ids, lo: +r.lo, hi: +r.hi })),
      ).toEqual(
        apps.map((a, i) => ({ device: `gw-kill-${i}`, n: a.written, ids: a.written, lo: 1, hi: a.written })),
      );

      // The survivors hold every partition.
      const nc = await connect({ servers: cluster.nodes.slice(1).map((n) => n.url) });
      try {
        const kv = await new Kvm(nc).open(KV_BUCKETS.leases);
        const holders = async (prefix: string, n: number) =>
          Promise.all(
            Array.from({ length: n }, async (_, p) => (await kv.get(`${prefix}.p.${p}`))?.string() ?? null),
          );
        await waitFor(async () => (await holders('worker', 16)).every((h) => h === 'w2'), {
          timeoutMs: 30_000,
          message: 'w2 holding every ingress partition',
        });
        await waitFor(async () => (await holders('projector', 16)).every((h) => h === 'p2'), {
          timeoutMs: 30_000,
          message: 'p2 holding every projection partition',
        });
      } finally {
        await nc.close();
      }
    } finally {
      writing = false;
      sampling = false;
      await Promise.all(writers);
      await sampler;
      await read.end();
      for (const a of apps) a.db.close();
    }
  }, 600_000);
});
