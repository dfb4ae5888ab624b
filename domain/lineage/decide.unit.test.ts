import { schemaHash, type SchemaColumns } from '../protocol/fingerprint';
import type { RowBatch } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { deciderSpec } from '../../tests/support/decider-spec';
import { type LineageCommand, lineageDecider } from './decide';
import type { LineageEvent } from './events';

const spec = deciderSpec(lineageDecider);
const L = '0190a000-0000-7000-8000-0000000000aa';
const R1 = '0190a000-0000-7000-8000-0000000000b1';
const R2 = '0190a000-0000-7000-8000-0000000000b2';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1' };

const v1: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};
const v2additive: SchemaColumns = {
  ...v1,
  columns: [...v1.columns, { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
};
const v2breaking: SchemaColumns = {
  ...v1,
  columns: [v1.columns[0]!, { name: 'mode', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false }],
};
const H1 = schemaHash(v1);

function batch(seqs: number[], schema: SchemaColumns = v1, withColumns = true): RowBatch {
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: `0190a000-0000-7000-8000-${String(seqs[0]).padStart(12, '0')}`,
    journal_epoch: EPOCH,
    source_table: 'device_state',
    schema_hash: schemaHash(schema),
    ...(withColumns ? { schema_columns: schema } : {}),
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: seqs.map((s) => ({
      commit_seq: s,
      op: 'insert' as const,
      pk: { id: s },
      row: { id: s, mode: 'm' },
    })),
  };
}

const ingest = (b: RowBatch, reviewId = R1): LineageCommand => ({
  type: 'IngestRowBatch',
  data: { ...DEVICE, batch: b, new_lineage_id: L, new_review_id: reviewId, policy: DEFAULT_POLICY },
});

const registered: LineageEvent = {
  type: 'LineageRegistered',
  data: { lineage_id: L, ...DEVICE, source_table: 'device_state', kind: 'rows' },
};

function history(...cmds: LineageCommand[]): LineageEvent[] {
  const out: LineageEvent[] = [];
  for (const c of cmds) out.push(...spec.given(out).when(c).events());
  return out;
}
const claim = (v = 1): LineageCommand => ({
  type: 'ClaimReview',
  data: { review_id: R1, action_version: v },
});
const approve = (
  v = 2,
  column_actions?: { column: string; action: 'mirror' | 'ignore' | 'defer' }[],
): LineageCommand => ({
  type: 'ApproveReview',
  data: {
    review_id: R1,
    action_version: v,
    replay_id: '0190a000-0000-7000-8000-0000000000f1',
    ...(column_actions ? { column_actions } : {}),
  },
});

describe('lineage decider: ingest', () => {
  it('registers a new lineage, classifies its first schema as ambiguous, queues a review, pauses and stages', () => {
    spec
      .given([])
      .when(ingest(batch([1, 2])))
      .then([
        registered,
        {
          type: 'SchemaVersionObserved',
          data: { schema_hash: H1, schema_columns: v1, classification: 'ambiguous' },
        },
        {
          type: 'SchemaReviewQueued',
          data: { review_id: R1, schema_hash: H1, classification: 'ambiguous', action_version: 1 },
        },
        { type: 'LineagePaused', data: { reason: 'schema_review' } },
        {
          type: 'RowsStaged',
          data: {
            batch_id: batch([1, 2]).batch_id,
            journal_epoch: EPOCH,
            schema_hash: H1,
            reason: 'schema_review',
            rows: batch([1, 2]).rows,
            duplicates_skipped: 0,
          },
        },
      ]);
  });

  it('stages later batches of the same schema without a second review', () => {
    spec
      .given(history(ingest(batch([1]))))
      .when(ingest(batch([2]), R2))
      .thenMatch([{ type: 'RowsStaged', data: { reason: 'schema_review' } }]);
  });

  it('skips rows already taken in (retried batch) and counts them', () => {
    const h = history(ingest(batch([1, 2])));
    spec
      .given(h)
      .when(ingest(batch([1, 2])))
      .then([]);
    spec
      .given(h)
      .when(ingest(batch([2, 3])))
      .thenMatch([{ type: 'RowsStaged', data: { rows: [{ commit_seq: 3 }], duplicates_skipped: 1 } }]);
  });

  it('treats the same commit_seq in a new journal epoch as new', () => {
    const other = { ...batch([1]), journal_epoch: '0190a000-0000-7000-8000-0000000000e2' };
    spec
      .given(history(ingest(batch([1]))))
      .when(ingest(other))
      .thenMatch([{ type: 'RowsStaged' }]);
  });

  it('materializes an approved schema directly', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    spec
      .given(h)
      .when(ingest(batch([2])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [{ commit_seq: 2 }] } }]);
  });

  it('classifies additive and breaking changes against the bound columns', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    spec
      .given(h)
      .when(ingest(batch([2], v2additive), R2))
      .thenMatch([
        { type: 'SchemaVersionObserved', data: { classification: 'compatible_additive' } },
        { type: 'SchemaReviewQueued', data: { review_id: R2 } },
        { type: 'LineagePaused', data: { reason: 'schema_review' } },
        { type: 'RowsStaged' },
      ]);
    spec
      .given(h)
      .when(ingest(batch([2], v2breaking), R2))
      .thenMatch([
        { type: 'SchemaVersionObserved', data: { classification: 'breaking' } },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused' },
        { type: 'RowsStaged' },
      ]);
  });

  it('calls a new hash without schema_columns ambiguous', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    spec
      .given(h)
      .when(ingest(batch([2], v2additive, false), R2))
      .thenMatch([
        { type: 'SchemaVersionObserved', data: { classification: 'ambiguous', schema_columns: null } },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused' },
        { type: 'RowsStaged' },
      ]);
  });
});

describe('lineage decider: review lifecycle', () => {
  const queued = () => history(ingest(batch([1, 2])));

  it('claims a queued review and bumps its action_version', () => {
    spec
      .given(queued())
      .when(claim(1))
      .then([{ type: 'SchemaReviewClaimed', data: { review_id: R1, action_version: 2 } }]);
  });

  it('refuses a stale action_version', () => {
    spec.given(queued()).when(claim(7)).thenThrows('stale_action_version');
    spec
      .given(history(ingest(batch([1])), claim()))
      .when(approve(1))
      .thenThrows('stale_action_version');
  });

  it('refuses to approve an unclaimed review and to claim twice', () => {
    spec.given(queued()).when(approve(1)).thenThrows('illegal_transition');
    spec
      .given(history(ingest(batch([1])), claim()))
      .when(claim(2))
      .thenThrows('illegal_transition');
  });

  it('approves with mirror-all by default, resumes and releases staged rows', () => {
    spec
      .given(history(ingest(batch([1, 2])), claim()))
      .when(approve())
      .then([
        {
          type: 'SchemaReviewApproved',
          data: {
            review_id: R1,
            schema_hash: H1,
            action_version: 3,
            bindings: [
              {
                column: 'id',
                action: 'mirror',
                target: 'id',
                affinity: 'INTEGER',
                pk_ordinal: 1,
                not_null: true,
              },
              {
                column: 'mode',
                action: 'mirror',
                target: 'mode',
                affinity: 'TEXT',
                pk_ordinal: 0,
                not_null: false,
              },
            ],
          },
        },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        {
          type: 'StagedRowsReleased',
          data: { replay_id: '0190a000-0000-7000-8000-0000000000f1', schema_hash: H1 },
        },
      ]);
  });

  it('keeps the lineage paused when a key column is deferred', () => {
    spec
      .given(history(ingest(batch([1])), claim()))
      .when(approve(2, [{ column: 'id', action: 'defer' }]))
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineagePaused', data: { reason: 'deferred_columns' } },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
      ]);
  });

  it('refuses actions on unknown columns and ignoring a key column', () => {
    const h = history(ingest(batch([1])), claim());
    spec
      .given(h)
      .when(approve(2, [{ column: 'nope', action: 'mirror' }]))
      .thenThrows('invalid_column_actions');
    spec
      .given(h)
      .when(approve(2, [{ column: 'id', action: 'ignore' }]))
      .thenThrows('invalid_column_actions');
  });

  it('rejects, keeping the lineage paused and its rows staged', () => {
    const h = history(ingest(batch([1])), claim());
    const rejected = [
      ...h,
      ...spec
        .given(h)
        .when({ type: 'RejectReview', data: { review_id: R1, action_version: 2, reason: 'no' } })
        .events(),
    ];
    spec
      .given(rejected)
      .when(ingest(batch([5])))
      .thenMatch([{ type: 'RowsStaged', data: { reason: 'schema_review' } }]);
  });

  it('completes a replay once', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    const done: LineageCommand = {
      type: 'CompleteReplay',
      data: { replay_id: '0190a000-0000-7000-8000-0000000000f1', rows: 1 },
    };
    spec
      .given(h)
      .when(done)
      .then([
        { type: 'ReplayCompleted', data: { replay_id: '0190a000-0000-7000-8000-0000000000f1', rows: 1 } },
      ]);
    spec
      .given(history(ingest(batch([1])), claim(), approve(), done))
      .when(done)
      .then([]);
  });
});

describe('lineage decider: deletion', () => {
  it('ends the lineage; later commands are refused', () => {
    const h = history(ingest(batch([1])), { type: 'DeleteLineage', data: { reason: 'retired' } });
    spec
      .given(h)
      .when(ingest(batch([2])))
      .thenThrows('lineage_deleted');
    spec.given(h).when(claim()).thenThrows('lineage_deleted');
  });
  it('refuses commands on a lineage that does not exist', () => {
    spec.given([]).when(claim()).thenThrows('not_found');
  });
});
