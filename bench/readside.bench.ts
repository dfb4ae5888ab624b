/**
 * Read-side benchmark (not a test):
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/readside.bench.ts [--quick]
 *
 * On one machine, in one run, with a private PostgreSQL cluster and nats-server:
 * 1. materialize: RowsAccepted events (1,000 rows each) are appended to JetStream, then the mirror
 *    projection folds them into PostgreSQL from sequence 1 (rows/s from start to caught up);
 * 2. rebuild: `rebuild('mirror')` drops the mirror and refolds the same events;
 * 3. raw: the same rows, in the same order, upserted straight into an identical table with
 *    `INSERT … SELECT * FROM unnest(…) ON CONFLICT (id) DO UPDATE … WHERE source_commit_seq <
 *    excluded.source_commit_seq`, 1,000 rows per statement: what PostgreSQL alone can do.
 * Half of the changes insert new keys, the other half update them (both paths of the upsert).
 * BENCH_ROWS sets the number of changes (default 200,000; 20,000 with --quick).
 */
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { uuidv7 } from 'uuidv7';
import type { RowChange } from '../domain/protocol/contracts';
import type { SchemaColumns } from '../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { ensureStreams } from '../infra/nats/streams';
import { listMirrorRows, migrate, openReadStore, startProjector } from '../projections';
import { bindAll, TestLineage } from '../projections/test-support/lineage';
import { startNats } from '../tests/support/nats';

type Cluster = { url: string; dir: string; stop: () => void };
const { startCluster } = createRequire(__filename)('../tests/support/postgres-cluster.js') as {
  startCluster: () => Promise<Cluster>;
};

const quick = process.argv.includes('--quick');
const ROWS = Number(process.env.BENCH_ROWS ?? (quick ? 20_000 : 200_000));
const PER_BATCH = 1_000;
const KEYS = Math.max(PER_BATCH, Math.floor(ROWS / 2));
const PROJECT = '0190a000-0000-7000-8000-0000000000be';

const SCHEMA: SchemaColumns = {
  table_name: 'stock',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'site', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'qty', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
    { name: 'price', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};

/** Change `seq` (1-based): the first KEYS insert keys 1..KEYS, the rest update them in turn. */
function change(seq: number): RowChange {
  const id = ((seq - 1) % KEYS) + 1;
  const row = { id, site: `site-${id % 17}`, qty: seq, price: (seq % 1000) / 4, note: `note ${seq}` };
  return { commit_seq: seq, op: seq <= KEYS ? 'insert' : 'update', pk: { id }, row };
}

async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`CREATE DATABASE "${name}"`);
  await c.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/** The baseline: PostgreSQL alone, the same rows into the same table shape, 1,000 per statement. */
async function rawUpsert(url: string, deviceId: string, epoch: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(
    `CREATE TABLE stock (id bigint NOT NULL, site text COLLATE "C" NOT NULL, qty bigint, price double precision,
       note text COLLATE "C", device_id text COLLATE "C" NOT NULL, source_commit_seq bigint NOT NULL,
       source_journal_epoch text COLLATE "C" NOT NULL, source_epoch_ordinal bigint NOT NULL, PRIMARY KEY (id))`,
  );
  const sql =
    'INSERT INTO stock (id, site, qty, price, note, device_id, source_commit_seq, source_journal_epoch, source_epoch_ordinal) ' +
    'SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bigint[]) ' +
    'ON CONFLICT (id) DO UPDATE SET site = excluded.site, qty = excluded.qty, price = excluded.price, note = excluded.note, ' +
    'device_id = excluded.device_id, source_commit_seq = excluded.source_commit_seq, ' +
    'source_journal_epoch = excluded.source_journal_epoch, source_epoch_ordinal = excluded.source_epoch_ordinal ' +
    'WHERE stock.source_commit_seq < excluded.source_commit_seq';
  const t0 = process.hrtime.bigint();
  for (let first = 1; first <= ROWS; first += PER_BATCH) {
    const rows = Array.from({ length: Math.min(PER_BATCH, ROWS - first + 1) }, (_, i) => change(first + i));
    const col = (f: (r: RowChange) => unknown) => rows.map(f);
    await c.query(sql, [
      col((r) => r.row!.id),
      col((r) => r.row!.site),
      col((r) => r.row!.qty),
      col((r) => r.row!.price),
      col((r) => r.row!.note),
      col(() => deviceId),
      col((r) => r.commit_seq),
      col(() => epoch),
      col(() => 1),
    ]);
  }
  const s = seconds(t0);
  const n = await c.query<{ n: string }>('SELECT count(*) AS n FROM stock');
  if (Number(n.rows[0]!.n) !== KEYS) throw new Error(`raw upsert left ${n.rows[0]!.n} rows, not ${KEYS}`);
  await c.end();
  return s;
}

async function main(): Promise<void> {
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  console.log(
    `read-side benchmark: ${fmt(ROWS)} changes (${fmt(KEYS)} keys: inserts, then updates), ` +
      `${fmt(PER_BATCH)} rows per event / statement${quick ? ' (--quick)' : ''}`,
  );
  const cluster = await startCluster();
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    await ensureStreams(await jetstreamManager(nc));
    const events = await JetStreamEventStore.create(nc);
    const deviceId = uuidv7();
    const l = new TestLineage(events, {
      project_id: PROJECT,
      device_id: deviceId,
      device_name: 'bench-device',
      source_table: SCHEMA.table_name,
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(SCHEMA), l.queued(review, SCHEMA), l.paused('schema_review'));
    await l.append(l.claimed(review));
    await l.append(l.approved(review, SCHEMA, bindAll(SCHEMA)), l.resumed('schema_review'));
    const epoch = uuidv7();
    let t0 = process.hrtime.bigint();
    for (let first = 1; first <= ROWS; first += PER_BATCH) {
      const rows = Array.from({ length: Math.min(PER_BATCH, ROWS - first + 1) }, (_, i) => change(first + i));
      await l.append(l.accepted(epoch, rows));
    }
    const appendS = seconds(t0);

    const store = openReadStore({ kind: 'postgres', url: await createDatabase(cluster.url, 'bench_mirror') });
    await migrate(store);
    const count = async () => {
      const page = await listMirrorRows(store.db, {
        project_id: PROJECT,
        lineage_id: l.lineage_id,
        limit: 1,
      });
      if (page.total !== KEYS) throw new Error(`the mirror holds ${page.total} rows, not ${KEYS}`);
    };
    t0 = process.hrtime.bigint();
    const projector = await startProjector({ nc, store, only: ['mirror'] });
    await projector.waitForCaughtUp(undefined, { timeoutMs: 3_600_000 });
    const foldS = seconds(t0);
    await count();
    t0 = process.hrtime.bigint();
    await projector.rebuild('mirror');
    const rebuildS = seconds(t0);
    await count();
    await projector.stop();
    await store.close();

    const rawS = await rawUpsert(await createDatabase(cluster.url, 'bench_raw'), deviceId, epoch);

    const rate = (s: number) => ROWS / s;
    const table = [
      ['append to JetStream (RowsAccepted)', appendS],
      ['mirror projection → PostgreSQL', foldS],
      ['mirror rebuild (drop + refold)', rebuildS],
      ['raw unnest upsert (baseline)', rawS],
    ] as const;
    console.log('');
    console.log(`| ${'measure'.padEnd(36)} | ${'seconds'.padStart(8)} | ${'rows/s'.padStart(9)} | vs raw |`);
    console.log(`|${'-'.repeat(38)}|${'-'.repeat(10)}|${'-'.repeat(11)}|--------|`);
    for (const [name, s] of table) {
      console.log(
        `| ${name.padEnd(36)} | ${s.toFixed(2).padStart(8)} | ${fmt(rate(s)).padStart(9)} | ${(rate(s) / rate(rawS)).toFixed(2).padStart(6)} |`,
      );
    }
    console.log('');
    console.log(
      `ratios: materialize/raw ${(rawS / foldS).toFixed(2)}, rebuild/raw ${(rawS / rebuildS).toFixed(2)}, ` +
        `rebuild/materialize ${(foldS / rebuildS).toFixed(2)}`,
    );
  } finally {
    await nc.close();
    await nats.stop();
    cluster.stop();
    rmSync(cluster.dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
