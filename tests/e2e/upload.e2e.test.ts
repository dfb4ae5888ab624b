import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import type { KeysetPage, Page } from '../../projections/store/page';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';
import { wireOf, wireRows } from '../support/exact';

type Lineage = { lineage_id: string; source_table: string; status: string; staged_rows: number };
type Review = { review_id: string; action_version: number };
type MirrorRow = { key: Record<string, unknown>; row: Record<string, unknown> };
type Item = { id: number; name: string; qty: number; note: string | null };

const ROWS = 8000; // about two batches' worth of rows: the snapshot goes through the upload flow

/**
 * A table bootstrapped through the secondary upload flow, against the whole stack: the real
 * agent (signed controls on), `sluice all` (bridge, worker, projector, API with its upload
 * endpoint) and a nats-server. The first-run snapshot is requested, granted by a signed
 * url_grant, PUT as zstd JSONL, finalized, taken in chunk by chunk; live changes follow as
 * batches; after approval the mirror equals the device table.
 */
describe('bootstrap through the upload flow', () => {
  let nats: NatsServer;
  let cloud: CloudProcess;
  let agent: AgentProcess;
  let db: Database.Database;
  const device = 'gw-upload';

  beforeAll(async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    nats = await startNats();
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      env: { SLUICE_CONTROL_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    const dir = tempDir('upload-e2e');
    db = new Database(join(dir, 'app.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty REAL, note TEXT)');
    const insert = db.prepare('INSERT INTO items (id, name, qty, note) VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 1; i <= ROWS; i++)
        insert.run(i, `item ${i} — ünïcødé "q"`, i / 8, i % 3 === 0 ? null : `n${i}`);
    })();
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: join(dir, 'app.db'),
      device,
      dir,
      extraYaml: [
        '  snapshot_on_first_run: true',
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
      ].join('\n'),
    });
  });
  afterAll(async () => {
    db?.close();
    await agent?.stop();
    await cloud?.stop();
    await nats?.stop();
  });

  const logs = () => `cloud: ${cloud.output().slice(-3000)}\nagent: ${agent.output().slice(-3000)}`;
  const lineage = async () =>
    (await getJson<Page<Lineage>>(`${cloud.base}/lineages?device_id=${device}`)).body.items.find(
      (l) => l.source_table === 'items',
    );

  it('mirrors the device table after approval, every row once', async () => {
    // The snapshot arrives through the upload, staged under the first schema review.
    const staged = await waitFor(
      async () => {
        const l = await lineage();
        return l && l.staged_rows >= ROWS ? l : undefined;
      },
      { timeoutMs: 60_000, message: () => `the uploaded snapshot staged (${logs()})` },
    );
    const L = staged.lineage_id;
    expect(staged.staged_rows).toBe(ROWS);
    const events = (
      await getJson<KeysetPage<{ type: string; data: Record<string, unknown> }>>(
        `${cloud.base}/lineages/${L}/events?limit=500`,
      )
    ).body.items;
    const types = events.map((e) => e.type);
    expect(types).toContain('UploadGranted');
    expect(types.filter((t) => t === 'UploadChunkAppended').length).toBeGreaterThan(1);
    await waitFor(
      async () =>
        (
          await getJson<KeysetPage<{ type: string }>>(`${cloud.base}/lineages/${L}/events?limit=500`)
        ).body.items.some((e) => e.type === 'UploadCompleted'),
      { message: 'UploadCompleted' },
    );
    expect(
      events
        .filter((e) => e.type === 'RowsStaged')
        .every((e) => e.data.batch_id === events.find((x) => x.type === 'UploadGranted')!.data.upload_id),
    ).toBe(true);
    expect(agent.output()).toContain('"event":"upload_put"');
    expect(agent.output()).not.toContain('"event":"upload_abandoned"');

    // Live changes after the snapshot travel as ordinary batches.
    await waitFor(() => /"via":"upload"/.test(agent.output()), {
      message: () => `upload confirmed (${logs()})`,
    });
    db.prepare("UPDATE items SET name = 'changed', note = NULL WHERE id <= 10").run();
    db.prepare('DELETE FROM items WHERE id > ? - 5').run(ROWS);
    db.prepare(
      "INSERT INTO items (id, name, qty, note) VALUES (100001, 'new', 1.5, 'x'), (100002, 'new2', NULL, NULL)",
    ).run();
    await waitFor(async () => ((await lineage())?.staged_rows ?? 0) >= ROWS + 17 || undefined, {
      timeoutMs: 30_000,
      message: () => `live changes staged (${logs()})`,
    });

    // Approve: the mirror fills from staging and equals the device table.
    const R = (await getJson<Page<Review>>(`${cloud.base}/schema-reviews?status=queued&lineage_id=${L}`)).body
      .items[0]!;
    expect(
      (await postJson(`${cloud.base}/schema-reviews/${R.review_id}/claim`, { action_version: 1 })).status,
    ).toBe(200);
    expect(
      (await postJson(`${cloud.base}/schema-reviews/${R.review_id}/approve`, { action_version: 2 })).status,
    ).toBe(200);
    const device = db.prepare('SELECT id, name, qty, note FROM items ORDER BY id').all() as Item[];
    await waitFor(
      async () => {
        const m = await getJson<Page<MirrorRow>>(
          `${cloud.base}/lineages/${L}/mirror-rows?limit=1&count=true`,
        );
        return m.body.total === device.length || undefined;
      },
      { timeoutMs: 60_000, message: () => `mirror has ${device.length} rows (${logs()})` },
    );
    const mirrored: Item[] = [];
    for (let page = 1; mirrored.length < device.length; page++) {
      const m = await getJson<Page<MirrorRow>>(
        `${cloud.base}/lineages/${L}/mirror-rows?limit=500&page=${page}`,
      );
      if (m.body.items.length === 0) break;
      for (const r of m.body.items) mirrored.push(r.row as Item);
    }
    const pick = (r: Item) => wireOf({ id: r.id, name: r.name, qty: r.qty, note: r.note });
    expect(mirrored.map(pick).sort((a, b) => Number(a.id) - Number(b.id))).toEqual(
      wireRows(db, 'SELECT id, name, qty, note FROM items ORDER BY id'),
    );
  });
});
