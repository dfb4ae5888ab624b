/** `lineages`, given lineage events → rows out, on SQLite and PostgreSQL. */
import { schemaHash } from '../../domain/protocol/fingerprint';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { apply, at, by, expectRows, type Given, l, type Rows, truncate } from '../test-support/given';
import { bindAll, upsert } from '../test-support/lineage';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { lineagesProjection } from './projection';

const S = DEVICE_STATE;
const H = schemaHash(S);
const E1 = '0190a000-0000-7000-8000-0000000000e1';
const E2 = '0190a000-0000-7000-8000-0000000000e2';
const R = '0190a000-0000-7000-8000-0000000000b1';
const P = '0190a000-0000-7000-8000-0000000000f1';

const rows = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => upsert(from + i, { id: from + i, mode: 'm' }));
/** Messages 1–2: a new lineage whose first schema waits for review, and two rows staged meanwhile. */
const staged = [
  [l.registered(), l.observed(S), l.queued(R, S), l.paused('schema_review')],
  [l.staged(E1, rows(1, 2))],
];
/** Messages 3–4: alice claims the review and approves it; the staged rows go to replay. */
const approved = [
  ...staged,
  by('alice', l.claimed(R)),
  by('alice', l.approved(R, S, bindAll(S)), l.resumed('schema_review'), l.released(P, S)),
];
const lineage = (over: Record<string, unknown>) => ({ lineage_id: l.lineage_id, ...over });

const cases: { name: string; given: Given; then: Rows }[] = [
  {
    name: 'registers the lineage, its first schema and review, pauses it and counts what it stages',
    given: staged,
    then: {
      edge_table_lineages: [
        lineage({
          ...l.ids,
          kind: 'rows',
          status: 'paused',
          pause_reasons: ['schema_review'],
          current_schema_hash: H,
          approved_schema_hash: null,
          staged_rows: 2,
          materialized_rows: 0,
          journal_epochs: [E1],
          last_journal_epoch: E1,
          last_commit_seq: 2,
          last_batch_at: at(2),
          replay_state: 'none',
          created_at: at(1),
          updated_at: at(2),
        }),
      ],
      edge_schema_versions: [
        lineage({ schema_hash: H, classification: 'ambiguous', schema_columns: S, first_seen_at: at(1) }),
      ],
      edge_schema_reviews: [
        lineage({ review_id: R, schema_hash: H, status: 'queued', action_version: 1, claimed_by: null }),
      ],
      edge_column_bindings: [],
      edge_replay_intents: [],
    },
  },
  {
    name: 'records who claimed and approved, the bindings, and the replay the approval started',
    given: approved,
    then: {
      edge_table_lineages: [
        lineage({
          status: 'active',
          pause_reasons: [],
          approved_schema_hash: H,
          staged_rows: 0,
          replaying_rows: 2,
          replay_id: P,
          replay_state: 'pending',
        }),
      ],
      edge_schema_reviews: [
        lineage({
          review_id: R,
          status: 'approved',
          action_version: 3,
          claimed_by: 'alice',
          claimed_at: at(3),
          decided_by: 'alice',
          decided_at: at(4),
        }),
      ],
      edge_column_bindings: [
        lineage({
          column_name: 'id',
          ordinal: 0,
          action: 'mirror',
          target: 'id',
          pk_ordinal: 1,
          not_null: 1,
        }),
        lineage({
          column_name: 'mode',
          ordinal: 1,
          action: 'mirror',
          target: 'mode',
          pk_ordinal: 0,
          not_null: 0,
        }),
      ],
      edge_replay_intents: [lineage({ replay_id: P, schema_hash: H, status: 'pending', staged_rows: 2 })],
    },
  },
  {
    name: 'counts replayed rows as materialized once the replay completes, and accepted rows at once',
    given: [...approved, [l.completed(P, 2)], [l.accepted(E1, rows(3, 5))]],
    then: {
      edge_table_lineages: [
        lineage({ staged_rows: 0, replaying_rows: 0, materialized_rows: 5, replay_state: 'completed' }),
      ],
      edge_replay_intents: [
        lineage({ replay_id: P, status: 'completed', completed_rows: 2, completed_at: at(5) }),
      ],
    },
  },
  {
    name: 'keeps the watermark as the decider does: a new epoch is the newest, an old one no longer moves it',
    given: [...staged, [l.accepted(E2, rows(1, 1))], [l.accepted(E1, rows(9, 9))]],
    then: {
      edge_table_lineages: [
        lineage({
          journal_epochs: [E1, E2],
          last_journal_epoch: E2,
          last_commit_seq: 1,
          last_batch_at: at(4),
        }),
      ],
    },
  },
  {
    name: 'moves failed rows back to staged, keeps the last error, and clears the count at a reset',
    given: [
      ...approved,
      [l.completed(P, 2)],
      [l.failed(6, E1, rows(1, 2), 2)],
      [{ type: 'MaterializationReset', data: { previous_failures: 2 } }],
    ],
    then: {
      edge_table_lineages: [
        lineage({
          staged_rows: 2,
          materialized_rows: 0,
          materialization_errors: 0,
          last_error: '42P01: relation does not exist',
          updated_at: at(7),
        }),
      ],
    },
  },
  {
    name: 'records a rejection with its reason and who decided',
    given: [
      ...staged,
      by('bob', l.claimed(R)),
      by('bob', {
        type: 'SchemaReviewRejected',
        data: { review_id: R, action_version: 3, reason: 'wrong table' },
      }),
    ],
    then: {
      edge_table_lineages: [lineage({ status: 'paused', approved_schema_hash: null })],
      edge_schema_reviews: [
        lineage({
          review_id: R,
          status: 'rejected',
          reason: 'wrong table',
          decided_by: 'bob',
          decided_at: at(4),
        }),
      ],
    },
  },
  {
    name: 'keeps a deleted lineage for audit, and takes nothing in after the deletion',
    given: [...staged, [l.deleted('retired')], [l.staged(E1, rows(3, 4))]],
    then: {
      edge_table_lineages: [
        lineage({ status: 'deleted', deleted_reason: 'retired', staged_rows: 2, updated_at: at(3) }),
      ],
    },
  },
];

describe.each(DIALECTS)('lineages: given events, rows out (%s)', (kind) => {
  const projection = lineagesProjection();
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
