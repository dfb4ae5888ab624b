import Database from 'better-sqlite3';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  approveReview,
  findLineage,
  lineage,
  mirrorRows,
  shutdown,
  waitForTriggers,
} from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

/**
 * Really hostile table and column names through the whole pipeline: a real application database,
 * the real agent, broker, bridge, worker, projector and API, on both read stores. The names are
 * captured, reviewed, approved and mirrored as data; none runs as SQL, and the read store's own
 * tables are all still there afterwards.
 */
const TABLE = `"; DROP TABLE edge_table_lineages; --`;
const COLUMNS = [
  `a"b`,
  `'); DELETE FROM edge_staged_rows; --`,
  'semi;colon',
  'Ünïcödé 日本 🚀',
  'device_id', // the mirror's own column names
  'source_commit_seq',
  'x'.repeat(80),
];
const KEY = `id"); DROP TABLE edge_mirror_reports; --`;
const SECOND = `Robert'); DROP TABLE students;--`;
const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
const DEVICE = 'gw-hostile-names';

describe.each(['sqlite', 'postgres'] as const)('hostile names end to end on %s', (kind) => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let app: Database.Database | undefined;
  let pgdb: TestDatabase | undefined;
  afterAll(async () => {
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await nats?.stop();
    await pgdb?.drop();
  });

  it('captures, reviews and mirrors them as data, and runs none of them', async () => {
    nats = await startNats();
    const dir = tempDir('hostile-names');
    pgdb = kind === 'postgres' ? await createTestDatabase('hostile_names') : undefined;
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: pgdb ? pgdb.url : `sqlite:${join(dir, 'read.db')}`,
    });
    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec(
      `CREATE TABLE ${q(TABLE)} (${q(KEY)} INTEGER PRIMARY KEY, ${COLUMNS.map((c) => `${q(c)} TEXT`).join(', ')})`,
    );
    app.exec(`CREATE TABLE ${q(SECOND)} (id INTEGER PRIMARY KEY, ${q('"')} TEXT)`);
    agent = startAgentProcess({ mqttUrl: nats.mqttUrl, sourceDb: join(dir, 'app.db'), device: DEVICE, dir });
    await waitForTriggers(app, TABLE);
    await waitForTriggers(app, SECOND);
    const ins = app.prepare(`INSERT INTO ${q(TABLE)} VALUES (?, ${COLUMNS.map(() => '?').join(', ')})`);
    const value = (id: number, c: string) => `v${id}:${c}'); DROP TABLE x; --`;
    for (let id = 1; id <= 3; id++) ins.run(id, ...COLUMNS.map((c) => value(id, c)));
    app.prepare(`INSERT INTO ${q(SECOND)} VALUES (1, ?)`).run(`"; DROP TABLE edge_schema_reviews; --`);

    const l = await findLineage(cloud.base, DEVICE, TABLE);
    expect(l.source_table).toBe(TABLE);
    const l2 = await findLineage(cloud.base, DEVICE, SECOND);
    await approveReview(cloud.base, l.lineage_id);
    await approveReview(cloud.base, l2.lineage_id);
    // Live changes after approval, an update and a delete, land too.
    app.prepare(`UPDATE ${q(TABLE)} SET ${q(COLUMNS[0]!)} = ? WHERE ${q(KEY)} = 2`).run('updated');
    app.prepare(`DELETE FROM ${q(TABLE)} WHERE ${q(KEY)} = 3`).run();
    const rows = await waitFor(
      async () => {
        const r = await mirrorRows(cloud!.base, l.lineage_id);
        return r.length === 2 && JSON.stringify(r).includes('updated') ? r : undefined;
      },
      { message: 'mirror of the hostile table', timeoutMs: 60_000 },
    );
    const text = JSON.stringify(rows);
    for (const c of COLUMNS.slice(1)) expect(text).toContain(JSON.stringify(value(1, c)).slice(1, -1));
    expect(text).toContain('updated');
    expect(text).not.toContain(JSON.stringify(value(3, COLUMNS[1]!)).slice(1, -1));
    await waitFor(async () => (await mirrorRows(cloud!.base, l2.lineage_id)).length === 1, {
      message: 'mirror of the second table',
    });
    expect((await lineage(cloud.base, l.lineage_id)).status).toBe('active');

    // The read store's own tables are all there and answer.
    expect((await getJson(`${cloud.base}/lineages`)).status).toBe(200);
    expect((await getJson(`${cloud.base}/schema-reviews`)).status).toBe(200);
    expect((await getJson(`${cloud.base}/lineages/${l.lineage_id}/staged-rows`)).status).toBe(200);
    const own = ['edge_table_lineages', 'edge_staged_rows', 'edge_schema_reviews', 'edge_mirror_reports'];
    if (pgdb) {
      const c = new pg.Client({ connectionString: pgdb.url });
      await c.connect();
      try {
        const r = await c.query<{ tablename: string }>(
          "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        );
        const names = r.rows.map((x) => x.tablename);
        for (const t of own) expect(names).toContain(t);
        for (const n of names) expect(n).toMatch(/^[a-z0-9_]+$/);
      } finally {
        await c.end();
      }
    } else {
      const db = new Database(join(dir, 'read.db'), { readonly: true });
      try {
        const names = db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
          .pluck()
          .all() as string[];
        for (const t of own) expect(names).toContain(t);
        for (const n of names) expect(n).toMatch(/^[a-z0-9_]+$/);
      } finally {
        db.close();
      }
    }
  });
});
