import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { Page } from '../../projections/store/page';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  approveReview,
  findLineage,
  lineage,
  type LineageView,
  mirrorRows,
  shutdown,
  waitForTriggers,
} from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICE = 'gw-continuity';

type Review = {
  review_id: string;
  status: string;
  action_version: number;
  diff: { against_hash: string | null; added: string[]; removed: string[] } | null;
  current_bindings: { column: string; action: string; target: string | null }[];
};

/** The mirror as {id → row}, the row in the mirror's column names. */
async function mirrorById(base: string, lineageId: string): Promise<Map<number, Record<string, unknown>>> {
  const items = await mirrorRows(base, lineageId);
  return new Map(items.map((m) => [Number(m.key.id), m.row]));
}

/**
 * Governance continuity end to end, with a real agent over the NATS MQTT listener:
 * - an operator renames `offset` → `cal_offset`; the device adds a column with a DEFAULT; the
 *   review shows the diff (added `unit`) and the current bindings, and an approval that names no
 *   column keeps the rename: the mirror has `cal_offset` (live, not frozen) and no `offset`, and
 *   the rows that existed before the ALTER read the DEFAULT in the mirror as on the device;
 * - the lineage is deleted; the device's next change starts a new lineage whose review can be
 *   approved (the cloud asked the device for its columns and a resync), and the new mirror holds
 *   every row of the device table, not only the rows changed after the delete.
 */
describe('governance continuity', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let app: Database.Database | undefined;

  afterAll(async () => {
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await nats?.stop();
  });

  it('keeps a rename through an additive approval, and re-enrols a deleted lineage', async () => {
    nats = await startNats();
    const dir = tempDir('continuity');
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: `sqlite:${join(dir, 'read.db')}`,
    });
    const base = cloud.base;
    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec('CREATE TABLE calib (id INTEGER PRIMARY KEY, "offset" REAL, note TEXT)');
    const put = app.prepare('INSERT OR REPLACE INTO calib (id, "offset", note) VALUES (?, ?, ?)');
    agent = startAgentProcess({ mqttUrl: nats.mqttUrl, sourceDb: join(dir, 'app.db'), device: DEVICE, dir });
    await waitForTriggers(app, 'calib');
    for (let i = 1; i <= 40; i++) put.run(i, i + 0.1, `n${i}`);

    // 1. First approval renames offset → cal_offset.
    const first = await findLineage(base, DEVICE, 'calib');
    await approveReview(base, first.lineage_id, [
      { column: 'offset', action: 'mirror', mirror_column_name: 'cal_offset' },
    ]);
    await waitFor(async () => (await mirrorRows(base, first.lineage_id)).length === 40, {
      timeoutMs: 30_000,
      message: '40 rows in the first mirror',
    });
    expect((await mirrorById(base, first.lineage_id)).get(7)).toEqual({ id: 7, cal_offset: 7.1, note: 'n7' });

    // 2. An additive change: existing rows gain the DEFAULT.
    app.exec("ALTER TABLE calib ADD COLUMN unit TEXT NOT NULL DEFAULT 'C'");
    for (let i = 41; i <= 50; i++) put.run(i, i + 0.1, `n${i}`);
    app.prepare('UPDATE calib SET "offset" = 99.5 WHERE id = 3').run();

    const review = await waitFor(
      async () => {
        const r = await getJson<Page<Review>>(
          `${base}/schema-reviews?lineage_id=${first.lineage_id}&status=queued`,
        );
        const id = r.body.items?.[0]?.review_id;
        if (!id) return undefined;
        const full = await getJson<Review>(`${base}/schema-reviews/${id}`);
        return full.body.diff ? full.body : undefined;
      },
      { timeoutMs: 30_000, message: 'the additive review, with its columns' },
    );
    expect(review.diff).toMatchObject({ added: ['unit'], removed: [] });
    expect(review.diff!.against_hash).not.toBeNull();
    expect(review.current_bindings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ column: 'offset', action: 'mirror', target: 'cal_offset' }),
      ]),
    );

    // Approved with no column actions: the earlier rename stands.
    await approveReview(base, first.lineage_id);
    const device = () =>
      new Map(
        (
          app!.prepare('SELECT id, "offset" AS o, note, unit FROM calib').all() as {
            id: number;
            o: number;
            note: string;
            unit: string;
          }[]
        ).map((r) => [r.id, { id: r.id, cal_offset: r.o, note: r.note, unit: r.unit }]),
      );
    await waitFor(
      async () => {
        const m = await mirrorById(base, first.lineage_id);
        const d = device();
        return (
          m.size === d.size && [...d].every(([id, row]) => JSON.stringify(m.get(id)) === JSON.stringify(row))
        );
      },
      {
        timeoutMs: 45_000,
        intervalMs: 500,
        message: 'the mirror equals the device: rename kept, DEFAULT resynced',
      },
    );
    const after = await mirrorById(base, first.lineage_id);
    expect(after.get(3)).toEqual({ id: 3, cal_offset: 99.5, note: 'n3', unit: 'C' });
    for (const row of after.values()) expect(row).not.toHaveProperty('offset');

    // 3. Delete, then the device goes on: a new lineage that can be approved.
    const del = await postJson(
      `${base}/lineages/${first.lineage_id}`,
      { reason: 'device re-enrolled' },
      {
        method: 'DELETE',
      },
    );
    expect(del.status).toBe(200);
    await waitFor(async () => (await lineage(base, first.lineage_id)).status === 'deleted', {
      message: 'the first lineage deleted',
    });
    put.run(51, 51.1, 'n51');
    const second = await waitFor(
      async () => {
        const r = await getJson<Page<LineageView>>(`${base}/lineages?device_id=${DEVICE}`);
        return r.body.items.find((l) => l.source_table === 'calib' && l.lineage_id !== first.lineage_id);
      },
      { timeoutMs: 30_000, message: 'a new lineage after the delete' },
    );
    // The cloud asked the device for its columns (and a resync); the review lists them once they
    // arrive, and can be approved from then on.
    await waitFor(
      async () => {
        const r = await getJson<Page<Review>>(
          `${base}/schema-reviews?lineage_id=${second.lineage_id}&status=queued`,
        );
        const id = r.body.items?.[0]?.review_id;
        return id !== undefined && (await getJson<Review>(`${base}/schema-reviews/${id}`)).body.diff !== null;
      },
      { timeoutMs: 30_000, message: 'the new lineage review, with the columns the device sent again' },
    );
    await approveReview(base, second.lineage_id);
    await waitFor(
      async () => {
        const m = await mirrorById(base, second.lineage_id);
        const d = device();
        return (
          m.size === d.size &&
          [...d].every(([id, row]) => {
            const got = m.get(id);
            return (
              got !== undefined &&
              got.offset === row.cal_offset &&
              got.unit === row.unit &&
              got.note === row.note
            );
          })
        );
      },
      { timeoutMs: 60_000, intervalMs: 500, message: 'the new mirror holds every device row' },
    );
    expect((await lineage(base, second.lineage_id)).status).toBe('active');
  }, 240_000);
});
