/** `staged_rows`, given lineage events → rows out, on SQLite and PostgreSQL. */
import { schemaHash } from '../../domain/protocol/fingerprint';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { apply, at, expectRows, type Given, l, type Rows, truncate } from '../test-support/given';
import { bindAll, del, upsert } from '../test-support/lineage';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { stagedRowsProjection } from './projection';

const S = DEVICE_STATE;
const H = schemaHash(S);
const E1 = '0190a000-0000-7000-8000-0000000000e1';
const E2 = '0190a000-0000-7000-8000-0000000000e2';
const R = '0190a000-0000-7000-8000-0000000000b1';
const RESYNC = '0190a000-0000-7000-8000-0000000000d1';

/** A new lineage whose first schema waits for review. */
const opened = [l.registered(), l.observed(S), l.queued(R, S), l.paused('schema_review')];

/** A row of edge_staged_rows as the first batch of `opened` stages it (message 2). */
const stagedRow = (commit_seq: number, op: string, pk: object, row: object | null) => ({
  lineage_id: l.lineage_id,
  project_id: l.ids.project_id,
  device_id: l.ids.device_id,
  source_table: 'device_state',
  journal_epoch: E1,
  commit_seq,
  op,
  pk,
  row,
  reason: 'schema_review',
  schema_hash: H,
  staged_at: at(2),
  sweep: null,
});

/** A failed write the domain recorded: its row waits in staging (a report without epoch has none). */
const failed = (seq: number, epoch: string | null) =>
  l.failed(seq, epoch, epoch === null ? [] : [upsert(seq, { id: seq, mode: 'failed' })]);

const cases: { name: string; given: Given; then: Rows }[] = [
  {
    name: 'stages every change of RowsStaged, with its key, row, reason and time, and counts them',
    given: [
      opened,
      [
        l.staged(E1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { id: 2, mode: 'b' }), del(3, { id: 1 })], {
          schema: S,
        }),
      ],
    ],
    then: {
      edge_staged_rows: [
        stagedRow(1, 'insert', { id: 1 }, { id: 1, mode: 'a' }),
        stagedRow(2, 'insert', { id: 2 }, { id: 2, mode: 'b' }),
        stagedRow(3, 'delete', { id: 1 }, null),
      ],
      edge_staged_counts: [{ lineage_id: l.lineage_id, row_count: 3 }],
      edge_staged_lineages: [{ lineage_id: l.lineage_id, ...l.ids, kind: 'rows' }],
    },
  },
  {
    name: 'keeps a sweep staged with its resync and buckets',
    given: [
      opened,
      [
        l.staged(E1, [
          {
            commit_seq: 4,
            op: 'sweep',
            pk: {},
            row: null,
            sweep: { resync_id: RESYNC, since_commit_seq: 1, buckets: [3, 9] },
          },
        ]),
      ],
    ],
    then: {
      edge_staged_rows: [
        {
          commit_seq: 4,
          op: 'sweep',
          pk: {},
          row: null,
          sweep: { resync_id: RESYNC, since_commit_seq: 1, buckets: [3, 9] },
        },
      ],
      edge_staged_counts: [{ lineage_id: l.lineage_id, row_count: 1 }],
    },
  },
  {
    name: 'stages a change once per journal epoch and commit_seq, and counts it once',
    given: [
      opened,
      [l.staged(E1, [upsert(1, { id: 1, mode: 'a' })])],
      [l.staged(E1, [upsert(1, { id: 1, mode: 'again' }), upsert(2, { id: 2, mode: 'b' })])],
      [l.staged(E2, [upsert(1, { id: 1, mode: 'new epoch' })])],
    ],
    then: {
      edge_staged_rows: [
        { journal_epoch: E1, commit_seq: 1, row: { id: 1, mode: 'a' }, staged_at: at(2) },
        { journal_epoch: E1, commit_seq: 2, row: { id: 2, mode: 'b' }, staged_at: at(3) },
        { journal_epoch: E2, commit_seq: 1, row: { id: 1, mode: 'new epoch' }, staged_at: at(4) },
      ],
      edge_staged_counts: [{ lineage_id: l.lineage_id, row_count: 3 }],
    },
  },
  {
    name: 'stages what a failed materialization reports (no batch, no schema); a report without rows stages nothing',
    given: [opened, [failed(7, E1)], [failed(8, null)]],
    then: {
      edge_staged_rows: [
        {
          journal_epoch: E1,
          commit_seq: 7,
          op: 'insert',
          row: { id: 7, mode: 'failed' },
          reason: 'materialization_failed',
          batch_id: null,
          schema_hash: null,
          staged_at: at(2),
        },
      ],
      edge_staged_counts: [{ lineage_id: l.lineage_id, row_count: 1 }],
    },
  },
  {
    name: 'lets every staged row go at a release; rows staged afterwards are counted from zero',
    given: [
      opened,
      [l.staged(E1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { id: 2, mode: 'b' })])],
      [l.claimed(R)],
      [l.approved(R, S, bindAll(S)), l.released('0190a000-0000-7000-8000-0000000000f1', S)],
      [l.staged(E1, [upsert(3, { id: 3, mode: 'c' })], { reason: 'lineage_paused' })],
    ],
    then: {
      edge_staged_rows: [{ commit_seq: 3, reason: 'lineage_paused', staged_at: at(5) }],
      edge_staged_counts: [{ lineage_id: l.lineage_id, row_count: 1 }],
    },
  },
  {
    name: 'forgets a deleted lineage: its rows, its count, its identity, and what comes after',
    given: [
      opened,
      [l.staged(E1, [upsert(1, { id: 1, mode: 'a' })])],
      [l.deleted('retired')],
      [l.staged(E1, [upsert(2, { id: 2, mode: 'late' })])],
    ],
    then: { edge_staged_rows: [], edge_staged_counts: [], edge_staged_lineages: [] },
  },
];

describe.each(DIALECTS)('staged_rows: given events, rows out (%s)', (kind) => {
  const projection = stagedRowsProjection();
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore(kind);
  });
  afterAll(async () => {
    await t?.cleanup();
  });
  beforeEach(async () => {
    await truncate(t.store, projection);
  });

  it.each(cases)('$name', async ({ given, then }) => {
    await apply(t.store, projection, given);
    await expectRows(t.store, then);
  });
});
