import Database from 'better-sqlite3';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { verifyLineage, type VerifyResult } from '../support/exact';
import { startNats, type NatsServer } from '../support/nats';
import { rng } from '../support/prng';
import { tempDir } from '../support/proc';
import {
  approveReview,
  findLineage,
  mirrorRows,
  seedFromEnv,
  shutdown,
  startWriter,
  waitForTriggers,
  type Writer,
} from '../support/readside';
import { type AgentProcess, type CloudProcess, startAgentProcess, startCloudProcess } from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICE = 'gw-verify-busy';
const ROWS = 300;

/**
 * `verify` on a table the application never stops writing (docs/verify.md): the agent takes its
 * digest when every change of the table is in a batch, in the same read as the last of them, and
 * sends nothing more of the table until the report is out, so the cloud compares the mirror at
 * exactly the digest's position. Three verifies while a writer updates, inserts and deletes every
 * few milliseconds all say `equal`.
 */
describe('verify on a busy table', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let nc: NatsConnection | undefined;
  let app: Database.Database | undefined;
  let writer: Writer | undefined;

  afterAll(async () => {
    await writer?.stop().catch(() => undefined);
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await nc?.close();
    await nats?.stop();
  });

  it('reports equal while the application writes', async () => {
    const seed = seedFromEnv();
    const random = rng(seed);
    nats = await startNats();
    const dir = tempDir('verify-busy');
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: `sqlite:${join(dir, 'read.db')}`,
    });
    nc = await connect({ servers: nats.url });
    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 10000');
    app.exec('CREATE TABLE meters (id INTEGER PRIMARY KEY, reading REAL, label TEXT)');
    const put = app.prepare('INSERT OR REPLACE INTO meters (id, reading, label) VALUES (?, ?, ?)');
    app.transaction(() => {
      for (let i = 1; i <= ROWS; i++) put.run(i, i / 7, `m${i}`);
    })();
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: join(dir, 'app.db'),
      device: DEVICE,
      dir,
      extraYaml: '  snapshot_on_first_run: true',
    });
    await waitForTriggers(app, 'meters');
    const l = await findLineage(cloud.base, DEVICE, 'meters');
    await approveReview(cloud.base, l.lineage_id);
    await waitFor(async () => (await mirrorRows(cloud!.base, l.lineage_id)).length === ROWS, {
      timeoutMs: 30_000,
      message: `${ROWS} rows in the mirror`,
    });

    const del = app.prepare('DELETE FROM meters WHERE id = ?');
    writer = startWriter(
      app,
      random,
      (_db, r) => {
        const id = 1 + Math.floor(r() * ROWS);
        if (r() < 0.1) del.run(id);
        else put.run(id, r() * 1000, `m${id}-${Math.floor(r() * 1e6)}`);
      },
      6,
    );
    const outcomes: VerifyResult[] = [];
    for (let i = 0; i < 3; i++) outcomes.push(await verifyLineage(nc, cloud.base, l.lineage_id));
    const written = await writer.stop();
    writer = undefined;

    expect(written).toBeGreaterThan(100); // the table really was busy during the verifies
    expect(outcomes.map((o) => ({ outcome: o.outcome, divergent: o.divergent_buckets }))).toEqual(
      Array.from({ length: 3 }, () => ({ outcome: 'equal', divergent: [] })),
    );
    for (const o of outcomes) expect(o.device_rows).toBe(o.mirror_rows);
    console.log(`[verify-busy] seed ${seed}: 3 verifies equal during ${written} transactions`);
  }, 180_000);
});
