/**
 * API read latency: the read store is seeded directly (bulk inserts into the projection tables):
 * lineages with a schema version and a review each, and the staged rows of one lineage. Then the
 * lineage list, a lineage's detail and staged-rows pages from the first to the deepest are timed
 * through the real Fastify app (`inject`, no socket), on SQLite and on PostgreSQL.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { uuidv7 } from 'uuidv7';
import { buildApp } from '../../api/app';
import { MANAGE, READ, TokenBook } from '../../api/auth/tokens';
import { createMetrics } from '../../infra/metrics';
import { type KeysetPage, type ReadStore, migrate, openReadStore } from '../../projections';
import { tempDir } from '../../tests/support/proc';
import type { CommandService } from '../../worker/commands';
import type { Ctx, StageResult } from '../lib/context';
import { percentiles } from '../lib/stats';

const PROJECT = '0190a000-0000-7000-8000-0000000be0c1';
export const BENCH_PROJECT = PROJECT;
const TOKEN = 'bench-token-0123456789abcdef';
const LIMIT = 50;

type Seeded = { detail: string; deep: string };

export async function seed(
  store: ReadStore,
  kind: 'sqlite' | 'postgres',
  LINEAGES: number,
  STAGED: number,
): Promise<Seeded> {
  const db = store.db;
  const at = '2026-04-28T09:00:00.000Z';
  const hash = 'a'.repeat(64);
  const schema = JSON.stringify({
    table_name: 'device_state',
    columns: [
      { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
      { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
      { name: 'setpoint', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    ],
  });
  const ids = Array.from({ length: LINEAGES }, () => uuidv7());
  const deep = ids[0]!;
  const device = (i: number) => `bench-gw-${String(Math.floor(i / 2)).padStart(5, '0')}`;
  for (let start = 0; start < ids.length; start += 500) {
    const chunk = ids.slice(start, start + 500).map((id, j) => ({ id, i: start + j }));
    await db
      .insertInto('edge_table_lineages')
      .values(
        chunk.map(({ id, i }) => ({
          lineage_id: id,
          project_id: PROJECT,
          device_id: `0190a000-0000-7000-8000-${String(Math.floor(i / 2)).padStart(12, '0')}`,
          device_name: device(i),
          source_table: i % 2 === 0 ? 'device_state' : 'order_events',
          kind: 'rows' as const,
          status: i % 3 === 0 ? ('active' as const) : ('paused' as const),
          pause_reasons: i % 3 === 0 ? '[]' : '["schema_review"]',
          current_schema_hash: hash,
          approved_schema_hash: i % 3 === 0 ? hash : null,
          staged_rows: id === deep ? STAGED : i % 3 === 0 ? 0 : 10,
          replaying_rows: 0,
          materialized_rows: i % 3 === 0 ? 100 : 0,
          duplicates_skipped: 0,
          journal_epochs: '["0190a000-0000-7000-8000-00000000e0c0"]',
          last_journal_epoch: '0190a000-0000-7000-8000-00000000e0c0',
          last_commit_seq: 100,
          last_batch_seq: null,
          replay_id: null,
          replay_state: 'none' as const,
          materialization_errors: 0,
          refused_rows: 0,
          recent_refusals: '[]',
          last_error: null,
          deleted_reason: null,
          created_at: new Date(Date.parse(at) + i * 1000).toISOString(),
          updated_at: at,
        })),
      )
      .execute();
    await db
      .insertInto('edge_schema_versions')
      .values(
        chunk.map(({ id }) => ({
          lineage_id: id,
          schema_hash: hash,
          project_id: PROJECT,
          classification: 'ambiguous',
          schema_columns: schema,
          first_seen_at: at,
          last_seen_at: at,
        })),
      )
      .execute();
    await db
      .insertInto('edge_schema_reviews')
      .values(
        chunk.map(({ id, i }) => ({
          review_id: uuidv7(),
          lineage_id: id,
          project_id: PROJECT,
          device_id: '0190a000-0000-7000-8000-000000000000',
          source_table: 'device_state',
          schema_hash: hash,
          classification: 'ambiguous',
          status: i % 3 === 0 ? ('approved' as const) : ('queued' as const),
          action_version: i % 3 === 0 ? 3 : 1,
          reason: null,
          claimed_by: null,
          decided_by: null,
          created_at: at,
          claimed_at: null,
          decided_at: null,
          updated_at: at,
        })),
      )
      .execute();
  }
  await db
    .insertInto('edge_staged_lineages')
    .values({
      lineage_id: deep,
      project_id: PROJECT,
      device_id: '0190a000-0000-7000-8000-000000000000',
      device_name: device(0),
      source_table: 'device_state',
      kind: 'rows',
    })
    .execute();
  // The staged_rows projection keeps each lineage's count beside its rows; seed it the same way.
  await db.insertInto('edge_staged_counts').values({ lineage_id: deep, row_count: STAGED }).execute();
  // The staged rows are generated inside the database: a million INSERTs from here would be the
  // benchmark of the client library, not of the read path.
  const epoch = '0190a000-0000-7000-8000-00000000e0c0';
  const cols = sql.raw(
    'lineage_id, project_id, device_id, source_table, journal_epoch, commit_seq, op, pk, pk_hash, row, reason, batch_id, schema_hash, staged_at',
  );
  if (kind === 'sqlite') {
    await sql`WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ${STAGED})
      INSERT INTO edge_staged_rows (${cols})
      SELECT ${deep}, ${PROJECT}, '0190a000-0000-7000-8000-000000000000', 'device_state', ${epoch}, x, 'insert',
        '{"id":' || x || '}', printf('%064x', x),
        '{"id":' || x || ',"mode":"cooling","setpoint":21.5,"updated_at":"2026-04-28T09:00:00Z"}',
        'schema_review', NULL, ${hash}, ${at}
      FROM g`.execute(db);
    await sql`ANALYZE`.execute(db);
  } else {
    await sql`INSERT INTO edge_staged_rows (${cols})
      SELECT ${deep}, ${PROJECT}, '0190a000-0000-7000-8000-000000000000', 'device_state', ${epoch}, g, 'insert',
        '{"id":' || g || '}', lpad(to_hex(g), 64, '0'),
        '{"id":' || g || ',"mode":"cooling","setpoint":21.5,"updated_at":"2026-04-28T09:00:00Z"}',
        'schema_review', NULL, ${hash}, ${at}
      FROM generate_series(1, ${STAGED}::bigint) AS g`.execute(db);
    await sql`VACUUM ANALYZE`.execute(db);
  }
  return { detail: ids[Math.floor(ids.length / 2)]!, deep };
}

async function time(
  app: FastifyInstance,
  url: string,
  check: (body: unknown) => boolean,
  RUNS: number,
): Promise<number[]> {
  const WARMUP = Math.max(5, Math.round(RUNS / 6));
  const out: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TOKEN}` } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.statusCode !== 200 || !check(r.json()))
      throw new Error(`GET ${url}: ${r.statusCode} ${r.body.slice(0, 300)}`);
    if (i >= WARMUP) out.push(ms);
  }
  return out;
}

async function bench(ctx: Ctx, name: 'sqlite' | 'postgres', store: ReadStore): Promise<StageResult[]> {
  const { apiLineages: LINEAGES, apiStaged: STAGED, apiRequests: RUNS } = ctx.sizes;
  const probe = ctx.rss.begin();
  await migrate(store);
  const t0 = Date.now();
  const { detail, deep } = await seed(store, name, LINEAGES, STAGED);
  ctx.log(
    `  ${name}: seeded ${LINEAGES} lineages and ${STAGED} staged rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  const app = await buildApp({
    store,
    // Read routes only: no command is sent and no event is read.
    commands: undefined as unknown as CommandService,
    events: { readCommits: async () => [] },
    metrics: createMetrics(),
    tokens: new TokenBook([{ token: TOKEN, project_id: PROJECT, permissions: [READ, MANAGE] }]),
  });
  const base = `/core/api/v1/projects/${PROJECT}/edge`;
  type P = KeysetPage<unknown>;
  const lastPage = Math.ceil(STAGED / LIMIT);
  // A cursor near the end, as a client following next_cursor would hold it.
  const nearEnd = await app.inject({
    method: 'GET',
    url: `${base}/lineages/${deep}/staged-rows?limit=${LIMIT}&page=${lastPage - 1}`,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const cursor = (nearEnd.json() as P).next_cursor!;
  const requests: [string, string, (b: unknown) => boolean][] = [
    ['lineages, page 1', `${base}/lineages?limit=${LIMIT}`, (b) => (b as P).items.length === LIMIT],
    [
      'lineages, last page',
      `${base}/lineages?limit=${LIMIT}&page=${Math.ceil(LINEAGES / LIMIT)}`,
      (b) => (b as P).items.length > 0,
    ],
    ['lineages, paused, by device', `${base}/lineages?status=paused&device_id=bench-gw-00001`, () => true],
    [
      'lineage detail',
      `${base}/lineages/${detail}`,
      (b) => (b as { lineage_id: string }).lineage_id === detail,
    ],
    [
      'staged rows, page 1',
      `${base}/lineages/${deep}/staged-rows?limit=${LIMIT}`,
      (b) => (b as P).items.length === LIMIT,
    ],
    [
      `staged rows, page ${Math.ceil(lastPage / 2)} (middle)`,
      `${base}/lineages/${deep}/staged-rows?limit=${LIMIT}&page=${Math.ceil(lastPage / 2)}`,
      (b) => (b as P).items.length === LIMIT,
    ],
    [
      `staged rows, page ${lastPage} (deepest)`,
      `${base}/lineages/${deep}/staged-rows?limit=${LIMIT}&page=${lastPage}`,
      (b) => (b as P).items.length === LIMIT,
    ],
    [
      'staged rows, cursor at the end',
      `${base}/lineages/${deep}/staged-rows?limit=${LIMIT}&after=${cursor}`,
      (b) => (b as P).items.length === LIMIT,
    ],
  ];
  const out: StageResult[] = [];
  for (const [request, url, check] of requests) {
    const ms = await time(app, url, check, RUNS);
    out.push({
      group: 'api',
      stage: `api.${name}.${request.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`,
      label: `API ${name}: ${request}`,
      profile: ctx.profile,
      latency_ms: percentiles(ms),
      latency_of: 'request (inject, no socket)',
      rss_mb: {},
      note: `${LINEAGES} lineages, ${STAGED} staged rows in one lineage, page size ${LIMIT}`,
    });
  }
  await app.close();
  const rss = probe.end();
  for (const r of out) r.rss_mb = rss;
  ctx.log(`  API ${name}: ${out.map((r) => r.latency_ms!.p50.toFixed(1)).join(' / ')} ms (p50 per request)`);
  return out;
}

export async function apiReads(ctx: Ctx): Promise<StageResult[]> {
  const out: StageResult[] = [];
  const sqlite = openReadStore({ kind: 'sqlite', path: join(tempDir('api-bench'), 'read.db') });
  try {
    out.push(...(await bench(ctx, 'sqlite', sqlite)));
  } finally {
    await sqlite.close();
  }
  const pgStore = openReadStore({ kind: 'postgres', url: await ctx.createDatabase('api'), poolSize: 10 });
  try {
    out.push(...(await bench(ctx, 'postgres', pgStore)));
  } finally {
    await pgStore.close();
  }
  return out;
}
