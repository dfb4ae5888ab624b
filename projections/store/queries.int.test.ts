import { uuidv7 } from 'uuidv7';
import type { RowChange } from '../../domain/protocol/contracts';
import { startProjector, type Projector } from '../runner/projector';
import { DEVICE_STATE_SETPOINT } from '../../tests/support/fixtures';
import { bindAll, TestLineage, upsert } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { listRejections, listSegments } from './queries/ledgers';
import { getLineage } from './queries/lineage-detail';
import { listLineages } from './queries/lineages';
import { listMirrorRows } from './queries/mirror-rows';
import { getReview, listReviews } from './queries/reviews';
import { decodeCursor, listStagedRows } from './queries/staged-rows';
import { MAX_LIMIT } from './page';

let nats: TestNats;
const A = uuidv7();
const B = uuidv7();
const deviceA = uuidv7();
let staged: TestLineage;
let approved: TestLineage;
let reviewIds: string[];

/** Project A: 5 lineages of one device (one with 1,200 staged rows, one approved); project B: 1. */
beforeAll(async () => {
  nats = await startTestNats();
  const make = (project: string, device: string, name: string, table: string) =>
    new TestLineage(nats.events, {
      project_id: project,
      device_id: device,
      device_name: name,
      source_table: table,
    });
  reviewIds = [];
  const lineages = [0, 1, 2, 3, 4].map((i) => make(A, deviceA, 'gw-a', `t${i}`));
  for (const l of lineages) {
    const review = uuidv7();
    reviewIds.push(review);
    await l.append(
      l.registered(),
      l.observed(DEVICE_STATE_SETPOINT),
      l.queued(review, DEVICE_STATE_SETPOINT),
      l.paused('schema_review'),
    );
  }
  staged = lineages[0]!;
  // 1,200 staged rows over two journal epochs, some commit_seqs present in both.
  const e1 = '01900000-0000-7000-8000-000000000001';
  const e2 = '01900000-0000-7000-8000-000000000002';
  const rows = (from: number, n: number): RowChange[] =>
    Array.from({ length: n }, (_, i) =>
      upsert(from + i, { id: from + i, mode: `m${from + i}`, setpoint: null }),
    );
  await staged.append(staged.staged(e1, rows(1, 700)));
  await staged.append(staged.staged(e2, rows(601, 500)));
  approved = lineages[1]!;
  await approved.append(approved.claimed(reviewIds[1]!));
  await approved.append(
    approved.approved(reviewIds[1]!, DEVICE_STATE_SETPOINT, bindAll(DEVICE_STATE_SETPOINT)),
    approved.resumed('schema_review'),
  );
  await approved.append(approved.accepted(uuidv7(), rows(1, 30)));
  const other = make(B, uuidv7(), 'gw-b', 't0');
  await other.append(
    other.registered(),
    other.observed(DEVICE_STATE_SETPOINT),
    other.queued(uuidv7(), DEVICE_STATE_SETPOINT),
  );
  for (const [project, n] of [
    [A, 3],
    [B, 2],
  ] as const) {
    for (let i = 0; i < n; i++) {
      await nats.reject({
        device_key: `${project}/gw`,
        project_id: project,
        kind: 'rows',
        topic: 'x/gw/sync/rows/batch',
        code: i === 0 ? 'invalid_json' : 'batch_too_many_rows',
        message: 'nope',
        received_at: new Date(Date.UTC(2026, 3, 28, 9, 0, i)).toISOString(),
        payload_excerpt: null,
      });
    }
  }
});
afterAll(async () => {
  await nats?.stop();
});

describe.each(DIALECTS)('read queries (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  beforeAll(async () => {
    t = await openTestStore(kind);
    projector = await startProjector({ nc: nats.nc, store: t.store });
    await projector.waitForCaughtUp();
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  it('pages lineages and filters by device id or name and by status', async () => {
    const p1 = await listLineages(t.store.db, { project_id: A, page: 1, limit: 2 });
    const p3 = await listLineages(t.store.db, { project_id: A, page: 3, limit: 2 });
    expect(p1).toMatchObject({ total: 5, page: 1, limit: 2 });
    expect(p1.items.map((l) => l.source_table)).toEqual(['t0', 't1']);
    expect(p3.items.map((l) => l.source_table)).toEqual(['t4']);
    expect((await listLineages(t.store.db, { project_id: A, device: deviceA })).total).toBe(5);
    expect((await listLineages(t.store.db, { project_id: A, device: 'gw-a' })).total).toBe(5);
    expect((await listLineages(t.store.db, { project_id: A, device: 'gw-b' })).total).toBe(0);
    expect(
      (await listLineages(t.store.db, { project_id: A, status: 'active' })).items.map((l) => l.source_table),
    ).toEqual(['t1']);
    expect((await listLineages(t.store.db, { project_id: B })).total).toBe(1);
  });

  it('clamps page and limit', async () => {
    const r = await listLineages(t.store.db, { project_id: A, page: -3, limit: 10_000 });
    expect(r).toMatchObject({ page: 1, limit: MAX_LIMIT, total: 5 });
    expect((await listLineages(t.store.db, { project_id: A, limit: 0 })).limit).toBe(1);
  });

  it('pages staged rows by keyset, by page number, cursor or commit_seq, in commit order', async () => {
    const all: [number, string][] = [];
    let after: string | undefined;
    for (;;) {
      const page = await listStagedRows(t.store.db, {
        project_id: A,
        lineage_id: staged.lineage_id,
        limit: 500,
        ...(after ? { after } : {}),
      });
      expect(page.total).toBe(1200);
      all.push(...page.items.map((r): [number, string] => [r.commit_seq, r.journal_epoch.slice(-1)]));
      if (!page.next_cursor) break;
      after = page.next_cursor;
    }
    expect(all).toHaveLength(1200);
    const sorted = [...all].sort((x, y) => x[0] - y[0] || x[1].localeCompare(y[1]));
    expect(all).toEqual(sorted);
    expect(all.slice(599, 603)).toEqual([
      [600, '1'],
      [601, '1'],
      [601, '2'],
      [602, '1'],
    ]);

    const page3 = await listStagedRows(t.store.db, {
      project_id: A,
      lineage_id: staged.lineage_id,
      page: 3,
      limit: 250,
    });
    expect(page3.items.map((r) => r.commit_seq)).toEqual(all.slice(500, 750).map((x) => x[0]));
    expect(page3.items[0]!.row).toEqual({ id: all[500]![0], mode: `m${all[500]![0]}`, setpoint: null });
    expect(decodeCursor(page3.next_cursor!)).toEqual({
      commit_seq: all[749]![0],
      journal_epoch: `01900000-0000-7000-8000-00000000000${all[749]![1]}`,
    });
    const beyond = await listStagedRows(t.store.db, {
      project_id: A,
      lineage_id: staged.lineage_id,
      page: 99,
      limit: 500,
    });
    expect(beyond).toMatchObject({ items: [], total: 1200, next_cursor: null });

    const afterSeq = await listStagedRows(t.store.db, {
      project_id: A,
      lineage_id: staged.lineage_id,
      after_commit_seq: 1098,
    });
    expect(afterSeq.items.map((r) => r.commit_seq)).toEqual([1099, 1100]);
    expect(() => decodeCursor('garbage')).toThrow(RangeError);
  });

  it('never shows another project rows', async () => {
    expect(await getLineage(t.store.db, B, staged.lineage_id)).toBeNull();
    expect((await listStagedRows(t.store.db, { project_id: B, lineage_id: staged.lineage_id })).total).toBe(
      0,
    );
    expect(
      (await listMirrorRows(t.store.db, { project_id: B, lineage_id: approved.lineage_id })).table,
    ).toBeNull();
    expect((await listSegments(t.store.db, { project_id: B, lineage_id: staged.lineage_id })).total).toBe(0);
    expect(await getReview(t.store.db, B, reviewIds[0]!)).toBeNull();
  });

  it('lists and reads reviews with their schema', async () => {
    const queued = await listReviews(t.store.db, { project_id: A, status: 'queued', limit: 2 });
    expect(queued).toMatchObject({ total: 4, limit: 2 });
    const approvedReviews = await listReviews(t.store.db, { project_id: A, status: 'approved' });
    expect(approvedReviews.items.map((r) => r.review_id)).toEqual([reviewIds[1]]);
    const byLineage = await listReviews(t.store.db, { project_id: A, lineage_id: staged.lineage_id });
    expect(byLineage.items.map((r) => r.review_id)).toEqual([reviewIds[0]]);
    const review = await getReview(t.store.db, A, reviewIds[0]!);
    expect(review).toMatchObject({
      status: 'queued',
      lineage_id: staged.lineage_id,
      source_table: 't0',
      action_version: 1,
    });
    expect(review!.schema_columns).toEqual(DEVICE_STATE_SETPOINT);
    const detail = await getLineage(t.store.db, A, staged.lineage_id);
    expect(detail!.open_review!.review_id).toBe(reviewIds[0]);
  });

  it('pages mirror rows by key', async () => {
    const p2 = await listMirrorRows(t.store.db, {
      project_id: A,
      lineage_id: approved.lineage_id,
      page: 2,
      limit: 10,
    });
    // No count unless asked: a poller reading page 1 again and again never scans the table.
    expect(p2).toMatchObject({ total: null, page: 2, limit: 10 });
    const counted = await listMirrorRows(t.store.db, {
      project_id: A,
      lineage_id: approved.lineage_id,
      limit: 10,
      count: true,
    });
    expect(counted).toMatchObject({ total: 30, page: 1 });
    const next = await listMirrorRows(t.store.db, {
      project_id: A,
      lineage_id: approved.lineage_id,
      limit: 10,
      after: counted.next_cursor!,
    });
    expect(next.items).toEqual(p2.items);
    const last = await listMirrorRows(t.store.db, {
      project_id: A,
      lineage_id: approved.lineage_id,
      limit: 10,
      after: next.next_cursor!,
    });
    expect(last.items.map((r) => r.key)).toEqual(Array.from({ length: 10 }, (_, i) => ({ id: 21 + i })));
    expect(last.next_cursor).not.toBeNull();
    const beyond = await listMirrorRows(t.store.db, {
      project_id: A,
      lineage_id: approved.lineage_id,
      limit: 10,
      after: last.next_cursor!,
    });
    expect(beyond).toMatchObject({ items: [], next_cursor: null });
    expect(p2.items.map((r) => r.key)).toEqual(Array.from({ length: 10 }, (_, i) => ({ id: 11 + i })));
    expect(p2.columns.map((c) => [c.name, c.pk_ordinal])).toEqual([
      ['id', 1],
      ['mode', 0],
      ['setpoint', 0],
    ]);
  });

  it('lists rejections and segments newest first, per project', async () => {
    const a = await listRejections(t.store.db, { project_id: A });
    expect(a.total).toBe(3);
    expect(a.items.map((r) => r.received_at)).toEqual([
      '2026-04-28T09:00:02.000Z',
      '2026-04-28T09:00:01.000Z',
      '2026-04-28T09:00:00.000Z',
    ]);
    expect((await listRejections(t.store.db, { project_id: A, code: 'invalid_json' })).total).toBe(1);
    expect((await listRejections(t.store.db, { project_id: B })).total).toBe(2);
    const segments = await listSegments(t.store.db, { project_id: A });
    expect(segments.items.map((s) => [s.disposition, s.rows])).toEqual([
      ['accepted', 30],
      ['staged', 500],
      ['staged', 700],
    ]);
  });
});
