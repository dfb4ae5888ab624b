import Database from 'better-sqlite3';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseReadStore } from '../../infra/config/env';
import { openReadStore, type ReadStore } from '../../projections';
import { startNats, type NatsServer } from '../support/nats';
import { createTestDatabase } from '../support/postgres';
import { rng } from '../support/prng';
import { type Managed, tempDir } from '../support/proc';
import {
  agentBacklog,
  approveReview,
  delay,
  rowsDomainState,
  findLineage,
  lineage,
  mirrorRows,
  projectionsCaughtUp,
  type RoleEnv,
  seedFromEnv,
  type Writer,
  shutdown,
  stagedTotal,
  startRole,
  startWriter,
  waitForTriggers,
  waitReady,
} from '../support/readside';
import { type AgentProcess, type CloudProcess, startAgentProcess, startCloudProcess } from '../support/stack';
import { waitFor } from '../support/wait';
import { wireOf, wireRows } from '../support/exact';

const KILLS = Number(process.env.SLUICE_KILLS ?? 10);
/** Longest random wait between "the projector is up" and its kill -9. */
const MAX_KILL_DELAY_MS = 1_200;
const SITES = ['north', 'south', 'east'] as const;
const BINS = 150;

/**
 * One transaction of the application: inserts, updates, deletes and key changes on a table with
 * a composite key, chosen by the seeded PRNG.
 */
function stockStep(app: Database.Database, random: () => number): void {
  const ops = 1 + Math.floor(random() * 6);
  for (let i = 0; i < ops; i++) {
    const site = SITES[Math.floor(random() * SITES.length)]!;
    const bin = 1 + Math.floor(random() * BINS);
    const price = random() < 0.1 ? null : Math.round(random() * 100_000) / 100;
    const exists = app.prepare('SELECT 1 FROM stock WHERE site = ? AND bin = ?').get(site, bin);
    if (!exists) {
      app
        .prepare('INSERT INTO stock (site, bin, qty, price, note) VALUES (?, ?, ?, ?, ?)')
        .run(site, bin, Math.floor(random() * 1000), price, `n${Math.floor(random() * 1e6)}`);
      continue;
    }
    const r = random();
    if (r < 0.6) {
      app
        .prepare('UPDATE stock SET qty = qty + ?, price = ?, note = ? WHERE site = ? AND bin = ?')
        .run(1 + Math.floor(random() * 10), price, `u${Math.floor(random() * 1e6)}`, site, bin);
    } else if (r < 0.85) {
      app.prepare('DELETE FROM stock WHERE site = ? AND bin = ?').run(site, bin);
    } else {
      // A key change: the agent journals it as a delete of the old key and an insert of the new.
      const to = 1 + Math.floor(random() * BINS);
      const free = !app.prepare('SELECT 1 FROM stock WHERE site = ? AND bin = ?').get(site, to);
      if (free) app.prepare('UPDATE stock SET bin = ? WHERE site = ? AND bin = ?').run(to, site, bin);
    }
  }
}

type StoreFactory = () => Promise<{ url: string; drop: () => Promise<void> }>;

const stores: [string, StoreFactory][] = [
  ['SQLite', async () => ({ url: `sqlite:${join(tempDir('readstore'), 'read.db')}`, drop: async () => {} })],
  [
    'PostgreSQL',
    async () => {
      const db = await createTestDatabase('projector_crash');
      return { url: db.url, drop: db.drop };
    },
  ],
];

/**
 * The projector is killed with SIGKILL at random points while an application keeps writing and
 * the real agent, bridge, worker and API run as their own processes. Afterwards the mirror must be
 * exactly the device's table: the checkpoint commits with the rows it covers, so a kill can lose
 * no fold and repeat none, and an interrupted replay is confirmed to the domain after restart.
 */
describe.each(stores)('projector kill -9 under load (%s read store)', (storeName, makeStore) => {
  let nats: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  let readStore: ReadStore | undefined;
  let dropStore: () => Promise<void> = async () => {};
  let api: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let app: Database.Database | undefined;
  let writer: Writer | undefined;
  const procs: Partial<Record<'bridge' | 'worker' | 'projector', Managed>> = {};

  afterAll(async () => {
    await writer?.stop().catch(() => undefined);
    await shutdown(agent);
    await Promise.all([shutdown(procs.projector), shutdown(api), shutdown(procs.worker)]);
    await shutdown(procs.bridge);
    app?.close();
    await readStore?.close();
    await nc?.close();
    await nats?.stop();
    await dropStore();
  });

  it(`mirrors the device's table row for row after ${KILLS} kills`, async () => {
    const seed = seedFromEnv();
    // Separate streams for the application and the kill points: the kill delays replay exactly
    // from the seed however the writer's pace interleaves with them.
    const random = rng(seed);
    const killRandom = rng(seed ^ 0x9e3779b9);
    const t0 = Date.now();
    try {
      nats = await startNats();
      const store = await makeStore();
      dropStore = store.drop;
      const env: RoleEnv = { natsUrl: nats.url, mqttUrl: nats.mqttUrl, readStore: store.url };
      procs.bridge = startRole('bridge', env);
      procs.worker = startRole('worker', env);
      procs.projector = startRole('projector', env);
      await Promise.all([
        waitReady(procs.bridge, 'bridge'),
        waitReady(procs.worker, 'worker'),
        waitReady(procs.projector, 'projector'),
      ]);
      // The API starts after the projector migrated the store, and serves what it folds.
      api = await startCloudProcess({
        natsUrl: nats.url,
        mqttUrl: nats.mqttUrl,
        readStore: store.url,
        args: ['api'],
      });
      nc = await connect({ servers: nats.url });
      readStore = openReadStore(parseReadStore(store.url));

      const dir = tempDir('projector-crash');
      const device = `gw-crash-${storeName.toLowerCase()}`;
      app = new Database(join(dir, 'app.db'));
      app.pragma('journal_mode = WAL');
      app.pragma('busy_timeout = 5000');
      app.exec(
        'CREATE TABLE stock (site TEXT NOT NULL, bin INTEGER NOT NULL, qty INTEGER NOT NULL, price REAL, note TEXT, PRIMARY KEY (site, bin))',
      );
      agent = startAgentProcess({ mqttUrl: nats.mqttUrl, sourceDb: join(dir, 'app.db'), device });
      await waitForTriggers(app, 'stock');
      writer = startWriter(app, random, stockStep);

      // Rows stage while the schema waits for review; approval replays them, then they flow live.
      const { lineage_id } = await findLineage(api.base, device, 'stock');
      await approveReview(api.base, lineage_id, [
        { column: 'note', action: 'ignore' },
        { column: 'qty', action: 'mirror', mirror_column_name: 'quantity' },
      ]);

      const killedAfter: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        await waitReady(procs.projector, 'projector');
        const wait = Math.round(killRandom() * MAX_KILL_DELAY_MS);
        await delay(wait);
        await procs.projector.kill();
        killedAfter.push(wait);
        procs.projector = startRole('projector', env);
      }
      await waitReady(procs.projector, 'projector');
      const transactions = await writer.stop();

      // Everything the application wrote reaches the lineage…
      const { seq } = await waitFor(
        async () => {
          const backlog = agentBacklog(app!, 'stock');
          if (backlog.journal > 0) return undefined;
          const s = await rowsDomainState(nc!, lineage_id);
          return s.last_commit_seq === backlog.seq ? backlog : undefined;
        },
        { timeoutMs: 45_000, intervalMs: 250, message: 'the agent delivered every change' },
      );
      // …and every projection folds it, the replay confirmed, nothing left in staging.
      const domain = await waitFor(
        async () => {
          if (!(await projectionsCaughtUp(nc!, readStore!))) return undefined;
          const s = await rowsDomainState(nc!, lineage_id);
          if (s.staged_rows !== 0 || s.replaying_rows !== 0) return undefined;
          return (await projectionsCaughtUp(nc!, readStore!)) ? s : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 250, message: 'projections caught up and the replay confirmed' },
      );

      // The read side agrees with the events.
      const view = await lineage(api.base, lineage_id);
      expect({
        status: view.status,
        pause_reasons: view.pause_reasons,
        staged_rows: view.staged_rows,
        replaying_rows: view.replaying_rows,
        materialized_rows: view.materialized_rows,
        last_commit_seq: view.last_commit_seq,
        materialization_errors: view.materialization_errors,
      }).toEqual({
        status: 'active',
        pause_reasons: [],
        staged_rows: domain.staged_rows,
        replaying_rows: domain.replaying_rows,
        materialized_rows: domain.materialized_rows,
        last_commit_seq: domain.last_commit_seq,
        materialization_errors: 0,
      });
      expect(domain.materialized_rows).toBe(seq); // every change once: none staged for good, none twice
      expect(await stagedTotal(api.base, lineage_id)).toBe(0);

      // The mirror is the device's table, row for row, in the approved columns.
      const device_rows = wireRows(app, 'SELECT site, bin, qty, price FROM stock');
      const mirror = await mirrorRows(api.base, lineage_id);
      const keyOf = (site: unknown, bin: unknown) => `${String(site)}|${String(bin)}`;
      expect(new Set(mirror.map((m) => keyOf(m.key.site, m.key.bin))).size).toBe(mirror.length);
      const want = new Map(
        device_rows.map((r) => [
          keyOf(r.site, r.bin),
          { site: r.site, bin: r.bin, quantity: r.qty, price: r.price },
        ]),
      );
      const got = new Map(mirror.map((m) => [keyOf(m.key.site, m.key.bin), wireOf(m.row)]));
      expect(got.size).toBe(want.size);
      expect(Object.fromEntries(got)).toEqual(Object.fromEntries(want));

      console.log(
        `[projector-crash ${storeName}] seed ${seed}: ${KILLS} kills after ${killedAfter.join('/')} ms, ` +
          `${transactions} transactions, ${seq} changes, ${want.size} rows, ${Date.now() - t0} ms`,
      );
    } catch (err) {
      console.error(
        `[projector-crash ${storeName}] failed with seed ${seed}; rerun with SLUICE_SEED=${seed}`,
      );
      const e = err as Error;
      e.message =
        `seed ${seed} (rerun with SLUICE_SEED=${seed}): ${e.message}\n` +
        `projector log: ${procs.projector?.output().slice(-3000)}\nworker log: ${procs.worker?.output().slice(-1500)}`;
      throw e;
    }
  });
});
