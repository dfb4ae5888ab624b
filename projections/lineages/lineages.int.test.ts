import { uuidv7 } from 'uuidv7';
import { DEVICE_STATE_SETPOINT } from '../../tests/support/fixtures';
import { waitFor } from '../../tests/support/wait';
import type { ActiveLineage } from '../../domain/lineage/state';
import { DEFAULT_POLICY } from '../../domain/policy/policy';
import { startProjector, type Projector } from '../runner/projector';
import { getLineage } from '../store/queries/lineage-detail';
import { listLineages } from '../store/queries/lineages';
import { listPendingControls, listSegments } from '../store/queries/ledgers';
import { listMirrorRows } from '../store/queries/mirror-rows';
import { listReviews } from '../store/queries/reviews';
import { listStagedRows } from '../store/queries/staged-rows';
import { decideAndAppend, minted, RecordingCommands, rowBatch, upsert } from '../test-support/lineage';
import { quoteIdent } from '../store/identifiers';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const PROJECT = uuidv7();
const OTHER_PROJECT = uuidv7();

describe.each(DIALECTS)('lineage flow through the real decider (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  let commands: RecordingCommands;
  beforeAll(async () => {
    t = await openTestStore(kind);
    commands = new RecordingCommands(nats.events);
    projector = await startProjector({ nc: nats.nc, store: t.store, commands });
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  it('folds registration, review, staging, approval, replay and live rows like the decider', async () => {
    const lineageId = uuidv7();
    const device = { project_id: PROJECT, device_id: uuidv7(), device_name: `gw-${kind}` };
    const epoch = uuidv7();
    const ingest = (rows: Parameters<typeof rowBatch>[2], withColumns = true) =>
      decideAndAppend(nats.events, lineageId, {
        type: 'IngestRowBatch',
        data: {
          ...device,
          batch: rowBatch(DEVICE_STATE_SETPOINT, epoch, rows, { withColumns }),
          new_lineage_id: lineageId,
          new_review_id: uuidv7(),
          new_control_id: uuidv7(),
          new_replay_id: uuidv7(),
          now: new Date().toISOString(),
          policy: DEFAULT_POLICY,
        },
      });

    await ingest([
      upsert(1, { id: 1, mode: 'cool', setpoint: 21.5 }),
      upsert(2, { id: 2, mode: 'heat', setpoint: { $real: '19' } }),
    ]);
    // A retried batch with one new row: the duplicate is skipped and counted.
    await ingest(
      [
        upsert(2, { id: 2, mode: 'heat', setpoint: { $real: '19' } }),
        upsert(3, { id: 1, mode: 'off', setpoint: null }),
      ],
      false,
    );

    await projector.waitForCaughtUp();
    let detail = await getLineage(t.store.db, PROJECT, lineageId);
    expect(detail).toMatchObject({
      status: 'paused',
      pause_reasons: ['schema_review'],
      staged_rows: 3,
      materialized_rows: 0,
      duplicates_skipped: 1,
      last_commit_seq: 3,
      last_journal_epoch: epoch,
    });
    expect(detail!.open_review).toMatchObject({
      status: 'queued',
      classification: 'ambiguous',
      action_version: 1,
    });
    const staged = await listStagedRows(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(staged.items.map((r) => [r.commit_seq, r.op, r.row])).toEqual([
      [1, 'insert', { id: 1, mode: 'cool', setpoint: 21.5 }],
      [2, 'insert', { id: 2, mode: 'heat', setpoint: { $real: '19' } }],
      [3, 'insert', { id: 1, mode: 'off', setpoint: null }],
    ]);
    expect(staged.items[0]!.reason).toBe('schema_review');

    const review = detail!.open_review!;
    await decideAndAppend(
      nats.events,
      lineageId,
      { type: 'ClaimReview', data: { review_id: review.review_id, action_version: 1 } },
      'alice',
    );
    const replayId = uuidv7();
    const approved = await decideAndAppend(
      nats.events,
      lineageId,
      {
        type: 'ApproveReview',
        data: {
          review_id: review.review_id,
          action_version: 2,
          replay_id: replayId,
          column_actions: [{ column: 'setpoint', action: 'mirror', mirror_column_name: 'target_temp' }],
        },
      },
      'alice',
    );
    expect(approved.events.map((e) => e.type)).toEqual([
      'SchemaReviewApproved',
      'LineageResumed',
      'StagedRowsReleased',
    ]);

    // The mirror replays the staged rows and tells the domain, which records ReplayCompleted.
    await waitFor(() => commands.sent.some((c) => c.lineageId === lineageId), { message: 'CompleteReplay' });
    const live = await ingest([upsert(4, { id: 3, mode: 'eco', setpoint: { $real: '17' } })], false);
    expect(live.events.map((e) => e.type)).toEqual(['RowsAccepted']);
    const state = live.state as ActiveLineage;
    expect(state.replay).toEqual({ replay_id: replayId, done: true });
    expect(commands.sent).toContainEqual({
      lineageId,
      command: { type: 'CompleteReplay', data: { replay_id: replayId, rows: 3 } },
    });

    await projector.waitForCaughtUp();
    detail = await getLineage(t.store.db, PROJECT, lineageId);
    expect(detail).toMatchObject({
      status: 'active',
      pause_reasons: [],
      staged_rows: state.staged_rows,
      materialized_rows: state.materialized_rows,
      approved_schema_hash: state.approved_hash,
      replay: { replay_id: replayId, state: 'completed' },
      last_commit_seq: 4,
      open_review: null,
      materialization_errors: 0,
    });
    expect(detail!.reviews).toMatchObject([
      { status: 'approved', claimed_by: 'alice', decided_by: 'alice', action_version: 3 },
    ]);
    expect(detail!.bindings.map((b) => [b.column, b.action, b.target, b.pk_ordinal])).toEqual([
      ['id', 'mirror', 'id', 1],
      ['mode', 'mirror', 'mode', 0],
      ['setpoint', 'mirror', 'target_temp', 0],
    ]);
    expect(detail!.replays).toMatchObject([
      { replay_id: replayId, status: 'completed', staged_rows: 3, completed_rows: 3 },
    ]);
    expect(detail!.schema_versions).toHaveLength(1);
    expect(detail!.schema_versions[0]!.schema_columns).toEqual(DEVICE_STATE_SETPOINT);
    // Suffixed when another lineage already holds the name: UUIDv7 device ids minted within the
    // same minute share their first 8 hex digits.
    const mirrorTable = detail!.materialization.table_name!;
    expect(mirrorTable).toMatch(/^edge_mirror_[0-9a-f]{8}_device_state(_[0-9a-f]{8})?$/);

    expect((await listStagedRows(t.store.db, { project_id: PROJECT, lineage_id: lineageId })).total).toBe(0);
    const mirror = await listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(mirror.items.map((r) => [r.row, r.source_commit_seq])).toEqual([
      [{ id: 1, mode: 'off', target_temp: null }, 3],
      [{ id: 2, mode: 'heat', target_temp: { $real: '19' } }, 2],
      [{ id: 3, mode: 'eco', target_temp: { $real: '17' } }, 4],
    ]);
    const segments = await listSegments(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(segments.items.map((s) => [s.disposition, s.rows, s.duplicates])).toEqual([
      ['accepted', 1, 0],
      ['staged', 1, 1],
      ['staged', 2, 0],
    ]);

    // Scoped to the project: another project sees nothing of it.
    expect(await getLineage(t.store.db, OTHER_PROJECT, lineageId)).toBeNull();
    expect((await listReviews(t.store.db, { project_id: OTHER_PROJECT })).total).toBe(0);
    expect(
      (await listMirrorRows(t.store.db, { project_id: OTHER_PROJECT, lineage_id: lineageId })).items,
    ).toEqual([]);
    const mine = await listLineages(t.store.db, { project_id: PROJECT, device: device.device_name });
    expect(mine.items.map((l) => l.lineage_id)).toEqual([lineageId]);
    expect((await listLineages(t.store.db, { project_id: PROJECT, device: device.device_id })).total).toBe(1);

    // Deleting the lineage: the lineage row stays (status deleted) for audit; staged rows and
    // mirror tables go.
    await decideAndAppend(nats.events, lineageId, { type: 'DeleteLineage', data: { reason: 'retired' } });
    await projector.waitForCaughtUp();
    detail = await getLineage(t.store.db, PROJECT, lineageId);
    expect(detail).toMatchObject({ status: 'deleted', deleted_reason: 'retired' });
    expect((await listLineages(t.store.db, { project_id: PROJECT, device: device.device_name })).total).toBe(
      0,
    );
    expect(
      (await listLineages(t.store.db, { project_id: PROJECT, status: 'deleted' })).total,
    ).toBeGreaterThan(0);
    expect(detail!.materialization.table_name).toBeNull();
    const tables = await t.store.dialect.listTables(t.store.db);
    expect(tables).not.toContain(mirrorTable);
  });

  it('closes the loop on a materialization failure: reported, staged, reset, replayed', async () => {
    const lineageId = uuidv7();
    const device = { project_id: PROJECT, device_id: uuidv7(), device_name: `broken-${kind}` };
    const epoch = uuidv7();
    const ingest = (rows: Parameters<typeof rowBatch>[2]) =>
      decideAndAppend(nats.events, lineageId, {
        type: 'IngestRowBatch',
        data: {
          ...device,
          batch: rowBatch(DEVICE_STATE_SETPOINT, epoch, rows),
          new_lineage_id: lineageId,
          new_review_id: uuidv7(),
          ...minted(),
          policy: DEFAULT_POLICY,
        },
      });
    await ingest([upsert(1, { id: 1, mode: 'a', setpoint: 1 })]);
    await projector.waitForCaughtUp();
    const review = (await getLineage(t.store.db, PROJECT, lineageId))!.open_review!;
    await decideAndAppend(nats.events, lineageId, {
      type: 'ClaimReview',
      data: { review_id: review.review_id, action_version: 1 },
    });
    await decideAndAppend(nats.events, lineageId, {
      type: 'ApproveReview',
      data: { review_id: review.review_id, action_version: 2, replay_id: uuidv7() },
    });
    await waitFor(() => commands.sent.some((c) => c.lineageId === lineageId), { message: 'first replay' });
    await projector.waitForCaughtUp();
    const table = (await getLineage(t.store.db, PROJECT, lineageId))!.materialization.table_name!;

    // The mirror table disappears (an operator's mistake): live rows cannot be written.
    const { dialect, db } = t.store;
    await dialect.exec(db, `ALTER TABLE ${quoteIdent(table)} RENAME TO ${quoteIdent(`${table}_away`)}`, []);
    await ingest([
      upsert(2, { id: 2, mode: 'b', setpoint: 2 }),
      upsert(3, { id: 3, mode: 'c', setpoint: 3 }),
    ]);
    await waitFor(() => commands.failures.some((f) => f.lineageId === lineageId), {
      message: 'failure reported',
    });
    await projector.waitForCaughtUp();
    let detail = await getLineage(t.store.db, PROJECT, lineageId);
    expect(detail).toMatchObject({ materialization_errors: 1, staged_rows: 2 });
    expect(detail!.last_error).toMatch(kind === 'postgres' ? /^42P01: / : /no such table/);
    expect(detail!.materialization.recent_failures).toMatchObject([
      { event_type: 'RowsAccepted', failed_rows: 2 },
    ]);
    const staged = await listStagedRows(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(staged.items.map((r) => [r.commit_seq, r.reason, r.batch_id])).toEqual([
      [2, 'materialization_failed', null],
      [3, 'materialization_failed', null],
    ]);

    // Fixed: the operator puts the table back and resets materialization; the rows replay.
    await dialect.exec(db, `ALTER TABLE ${quoteIdent(`${table}_away`)} RENAME TO ${quoteIdent(table)}`, []);
    const reset = await decideAndAppend(nats.events, lineageId, {
      type: 'ResetMaterialization',
      data: { ...minted(), policy: DEFAULT_POLICY },
    });
    expect(reset.events.map((e) => e.type)).toEqual(['MaterializationReset', 'StagedRowsReleased']);
    await waitFor(() => commands.sent.filter((c) => c.lineageId === lineageId).length === 2, {
      message: 'second replay completed',
    });
    await projector.waitForCaughtUp();
    detail = await getLineage(t.store.db, PROJECT, lineageId);
    const state = (
      await decideAndAppend(nats.events, lineageId, {
        type: 'CompleteReplay',
        data: { replay_id: 'none', rows: 0 },
      })
    ).state as ActiveLineage;
    expect(detail).toMatchObject({
      staged_rows: 0,
      replaying_rows: 0,
      materialized_rows: state.materialized_rows,
      materialization: { errors: 0 },
    });
    const mirror = await listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(mirror.items.map((r) => r.key)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });

  it('projects the controls the domain issues and their acknowledgement', async () => {
    const lineageId = uuidv7();
    const device = { project_id: PROJECT, device_id: uuidv7(), device_name: `flood-${kind}` };
    const epoch = uuidv7();
    const ids = minted();
    const { events } = await decideAndAppend(nats.events, lineageId, {
      type: 'IngestRowBatch',
      data: {
        ...device,
        batch: rowBatch(
          DEVICE_STATE_SETPOINT,
          epoch,
          [1, 2, 3].map((i) => upsert(i, { id: i, mode: 'x', setpoint: null })),
        ),
        new_lineage_id: lineageId,
        new_review_id: uuidv7(),
        ...ids,
        policy: { ...DEFAULT_POLICY, max_pending_rows_per_lineage: 2 },
      },
    });
    expect(events.map((e) => e.type)).toContain('ControlIssued');
    await projector.waitForCaughtUp();
    let pending = await listPendingControls(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(pending.items).toMatchObject([
      {
        control_id: ids.new_control_id,
        control_kind: 'pause_lineage',
        server_watermark: 3,
        status: 'pending',
        deliveries: 0,
      },
    ]);
    const now = new Date().toISOString();
    await decideAndAppend(nats.events, lineageId, {
      type: 'RecordControlDelivery',
      data: { control_id: ids.new_control_id, delivered_at: now },
    });
    await decideAndAppend(nats.events, lineageId, {
      type: 'AcknowledgeControl',
      data: { control_id: ids.new_control_id, acknowledged_at: now },
    });
    await projector.waitForCaughtUp();
    pending = await listPendingControls(t.store.db, { project_id: PROJECT, lineage_id: lineageId });
    expect(pending.total).toBe(0);
    const all = await listPendingControls(t.store.db, {
      project_id: PROJECT,
      lineage_id: lineageId,
      status: 'all',
    });
    expect(all.items).toMatchObject([{ status: 'acknowledged', deliveries: 1, acknowledged_at: now }]);
    const detail = await getLineage(t.store.db, PROJECT, lineageId);
    expect(detail!.pause_reasons).toEqual(expect.arrayContaining(['schema_review', 'volume_backpressure']));
  });
});
