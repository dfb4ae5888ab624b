import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { verifyLineage } from '../support/exact';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import { approveReview, findLineage, mirrorRows, shutdown, waitForTriggers } from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICE = 'gw-filters';
const ROOT = `e2e/${DEVICE}`;

type Uplink = { topic: string; text: string; body: Record<string, unknown> };
type WireRow = {
  commit_seq: number;
  op: string;
  pk: Record<string, unknown>;
  row: Record<string, unknown> | null;
};

/**
 * Edge filters on the wire (docs/agent.md, "Filters"): a column the config excludes and rows its
 * predicate leaves out never leave the device. An independent MQTT client subscribed to the
 * device's uplinks checks every message the agent publishes (batches, schema observations, the
 * verify report) through inserts, updates moving rows into and out of the predicate, deletes and
 * a verify; the cloud's mirror ends equal to the filtered device table and verify says equal.
 */
describe('edge filters', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let nc: NatsConnection | undefined;
  let spy: mqtt.MqttClient | undefined;
  let app: Database.Database | undefined;

  afterAll(async () => {
    await spy?.endAsync().catch(() => undefined);
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await nc?.close();
    await nats?.stop();
  });

  it('keeps an excluded column and excluded rows on the device', async () => {
    nats = await startNats();
    const dir = tempDir('filters');
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: `sqlite:${join(dir, 'read.db')}`,
    });
    nc = await connect({ servers: nats.url });
    const uplinks: Uplink[] = [];
    spy = await mqtt.connectAsync(nats.mqttUrl, { clientId: 'filters-spy', clean: true, protocolVersion: 4 });
    spy.on('message', (topic, payload) => {
      const text = payload.toString('utf8');
      uplinks.push({ topic, text, body: JSON.parse(text) as Record<string, unknown> });
    });
    await spy.subscribeAsync(`${ROOT}/sync/#`, { qos: 1 });

    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 10000');
    app.exec('CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, ssn TEXT, status TEXT)');
    const put = app.prepare('INSERT INTO accounts (id, name, ssn, status) VALUES (?, ?, ?, ?)');
    put.run(1, 'ann', 'SSN-0001', 'open');
    put.run(2, 'bob', 'SSN-0002', 'secret');
    put.run(3, 'cid', 'SSN-0003', 'open');
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: join(dir, 'app.db'),
      device: DEVICE,
      dir,
      extraYaml: [
        '  snapshot_on_first_run: true',
        '  table_strategies:',
        '    accounts:',
        '      exclude_columns: [ssn]',
        `      where: "status <> 'secret'"`,
      ].join('\n'),
    });
    await waitForTriggers(app, 'accounts');
    const l = await findLineage(cloud.base, DEVICE, 'accounts');

    // The schema the cloud reviews is the filtered one, and the agent announced it.
    const sent: SchemaColumns = {
      table_name: 'accounts',
      columns: [
        { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: false },
        { name: 'name', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
        { name: 'status', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
      ],
    };
    const observed = await waitFor(
      async () => {
        const r = await getJson<{ schema_hash: string; schema_columns: SchemaColumns | null }>(
          `${cloud!.base}/lineages/${l.lineage_id}/observed-schema`,
        );
        return r.status === 200 ? r.body : undefined;
      },
      { message: 'the observed schema of accounts' },
    );
    expect(observed.schema_hash).toBe(schemaHash(sent));
    expect(observed.schema_columns?.columns.map((c) => c.name).sort()).toEqual(['id', 'name', 'status']);

    await approveReview(cloud.base, l.lineage_id);
    const mirrorImage = async () =>
      Object.fromEntries(
        (await mirrorRows(cloud!.base, l.lineage_id))
          .map((m) => [String(m.key.id), { name: m.row.name, status: m.row.status, ssn: m.row.ssn }] as const)
          .sort(([a], [b]) => Number(a) - Number(b)),
      );
    const deviceImage = () =>
      Object.fromEntries(
        (
          app!
            .prepare("SELECT id, name, status FROM accounts WHERE status <> 'secret' ORDER BY id")
            .all() as { id: number; name: string; status: string }[]
        ).map((r) => [String(r.id), { name: r.name, status: r.status, ssn: undefined }]),
      );
    const converged = (what: string) =>
      waitFor(async () => JSON.stringify(await mirrorImage()) === JSON.stringify(deviceImage()), {
        timeoutMs: 30_000,
        message: () =>
          `${what}: mirror ${JSON.stringify(deviceImage())} (agent log: ${agent!.output().slice(-1500)})`,
      });
    await converged('snapshot');
    expect(Object.keys(await mirrorImage())).toEqual(['1', '3']);

    // Into and out of the predicate, in both directions, plus rows that only ever live outside it.
    app.prepare("UPDATE accounts SET status = 'open' WHERE id = 2").run(); // enters
    app.prepare("UPDATE accounts SET status = 'secret', name = 'ann2' WHERE id = 1").run(); // leaves
    put.run(4, 'dan', 'SSN-0004', 'secret'); // never in
    put.run(5, 'eve', 'SSN-0005', 'open');
    app.prepare("UPDATE accounts SET status = 'secret' WHERE id = 5").run(); // in and out before a read
    app.prepare("UPDATE accounts SET ssn = 'SSN-0003b' WHERE id = 3").run(); // an excluded column changes
    app.prepare('DELETE FROM accounts WHERE id = 4').run();
    await converged('after updates across the predicate');
    expect(Object.keys(await mirrorImage())).toEqual(['2', '3']);

    const v = await verifyLineage(nc, cloud.base, l.lineage_id).catch((err: Error) => {
      throw new Error(
        `${err.message}\nagent: ${agent!.output().slice(-3000)}\ncloud: ${cloud!
          .output()
          .split('\n')
          .filter((x) => /verify/i.test(x))
          .join('\n')
          .slice(-3000)}`,
      );
    });
    expect({ outcome: v.outcome, divergent: v.divergent_buckets }).toEqual({
      outcome: 'equal',
      divergent: [],
    });

    // A schema change: observed again, under the new filtered hash.
    app.exec('ALTER TABLE accounts ADD COLUMN note TEXT');
    app.prepare("UPDATE accounts SET note = 'n' WHERE id = 3").run();
    const withNote = schemaHash({
      ...sent,
      columns: [
        ...sent.columns,
        { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
      ],
    });
    await waitFor(
      async () =>
        (await getJson<{ schema_hash: string }>(`${cloud!.base}/lineages/${l.lineage_id}/observed-schema`))
          .body.schema_hash === withNote,
      { message: 'the new schema observed' },
    );
    await waitFor(
      () => uplinks.some((u) => u.topic.endsWith('/sync/rows/batch') && u.body.schema_hash === withNote),
      {
        message: 'a batch under the new schema',
      },
    );

    // Every uplink the agent published, checked one by one.
    const batches = uplinks.filter((u) => u.topic === `${ROOT}/sync/rows/batch`);
    const observes = uplinks.filter((u) => u.topic === `${ROOT}/sync/schema/observe`);
    const reports = uplinks.filter((u) => u.topic === `${ROOT}/sync/ingest/request`);
    expect(batches.length).toBeGreaterThanOrEqual(3);
    expect(observes.map((o) => o.body.schema_hash)).toEqual([schemaHash(sent), withNote]);
    expect(reports.length).toBeGreaterThanOrEqual(1);
    for (const u of uplinks) {
      expect(u.text).not.toMatch(/SSN-|"ssn"/);
    }
    const neverIn = new Set([4, 5]);
    for (const b of batches) {
      for (const r of b.body.rows as WireRow[]) {
        expect(neverIn.has(r.pk.id as number)).toBe(false);
        if (r.row) {
          expect(r.row.status).not.toBe('secret');
          expect(Object.keys(r.row)).not.toContain('ssn');
        }
      }
      const cols = b.body.schema_columns as SchemaColumns | undefined;
      if (cols) expect(cols.columns.map((c) => c.name)).not.toContain('ssn');
    }
    // Row 1 left the filter: the cloud got a delete for it, and nothing of its new values.
    const ones = batches.flatMap((b) => (b.body.rows as WireRow[]).filter((r) => r.pk.id === 1));
    expect(ones.at(-1)).toMatchObject({ op: 'delete', row: null });
    expect(JSON.stringify(ones)).not.toContain('ann2');
    for (const r of reports) expect(r.body.columns).not.toContain('ssn');
    console.log(
      `[filters] ${uplinks.length} uplinks checked: ${batches.length} batches, ${observes.length} observations, ${reports.length} verify reports`,
    );
  }, 180_000);
});
