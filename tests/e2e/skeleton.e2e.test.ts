import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { Page } from '../../projections/store/page';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

type Lineage = {
  lineage_id: string;
  device_name: string;
  source_table: string;
  status: string;
  pause_reasons: string[];
  staged_rows: number;
};
type Staged = {
  commit_seq: number;
  op: string;
  pk: Record<string, unknown>;
  row: Record<string, unknown> | null;
  reason: string;
};

/**
 * The walking skeleton, every hop a real process or server: an application writes a row into its
 * SQLite file → the agent's trigger journals it → the agent publishes a row batch over MQTT → the
 * bridge validates it and appends it to JetStream (acking MQTT only after) → the worker decides
 * (new lineage, first schema ambiguous → review queued, paused, rows staged) → the projector folds
 * the events into the read store → the HTTP API answers with the lineage and its staged row.
 */
describe('walking skeleton', () => {
  let nats: NatsServer;
  let cloud: CloudProcess;
  let agent: AgentProcess;
  const dir = tempDir('skeleton');
  const appDb = join(dir, 'app.db');

  beforeAll(async () => {
    nats = await startNats();
    cloud = await startCloudProcess({ natsUrl: nats.url, mqttUrl: nats.mqttUrl });
  });
  afterAll(async () => {
    await agent?.stop();
    await cloud?.stop();
    await nats?.stop();
  });

  it('carries an application insert to the staged-rows API', async () => {
    const db = new Database(appDb);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE device_state (id INTEGER PRIMARY KEY, mode TEXT NOT NULL, setpoint REAL)');
    agent = startAgentProcess({ mqttUrl: nats.mqttUrl, sourceDb: appDb, device: 'gw-skeleton' });
    // The agent installs its triggers at start; the application needs no change.
    const triggers = () =>
      (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger'").get() as { n: number }).n;
    await waitFor(() => triggers() >= 3, {
      timeoutMs: 30_000,
      message: 'capture triggers installed by the agent',
    });
    db.prepare('INSERT INTO device_state (id, mode, setpoint) VALUES (?, ?, ?)').run(1, 'cooling', 21.5);
    db.close();

    const lineage = await waitFor(
      async () => {
        const r = await getJson<Page<Lineage>>(`${cloud.base}/lineages`);
        return r.body.items.find(
          (l) => l.device_name === 'gw-skeleton' && l.source_table === 'device_state' && l.staged_rows >= 1,
        );
      },
      {
        timeoutMs: 30_000,
        message: () =>
          `lineage with a staged row (cloud log: ${cloud.output().slice(-1500)}; agent log: ${agent.output().slice(-1500)})`,
      },
    );
    expect(lineage.status).toBe('paused');
    expect(lineage.pause_reasons).toEqual(['schema_review']);

    const staged = await getJson<Page<Staged>>(`${cloud.base}/lineages/${lineage.lineage_id}/staged-rows`);
    expect(staged.status).toBe(200);
    expect(staged.body.items).toHaveLength(1);
    expect(staged.body.items[0]).toMatchObject({
      commit_seq: 1,
      op: 'insert',
      pk: { id: 1 },
      row: { id: 1, mode: 'cooling', setpoint: 21.5 },
      reason: 'schema_review',
    });

    const reviews = await getJson<Page<{ lineage_id: string; status: string }>>(
      `${cloud.base}/schema-reviews?status=queued`,
    );
    expect(reviews.body.items.map((r) => r.lineage_id)).toContain(lineage.lineage_id);
    const denied = await getJson(`${cloud.base}/lineages`, 'not-a-token');
    expect(denied.status).toBe(401);
  });
});
