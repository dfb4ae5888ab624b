/**
 * What a batch brings into a lineage: registration, schema classification, staging, dedupe,
 * telemetry batches, and the policy that adopts an additive schema without review.
 */
import { schemaHash, type SchemaColumns } from '../protocol/fingerprint';
import type { RowBatch } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { TEMPS } from '../../tests/support/fixtures';
import {
  approve,
  claim,
  DEVICE,
  EPOCH,
  history,
  L,
  MINT,
  R1,
  R2,
  spec,
} from '../../tests/support/lineage-spec';
import { batch, H1, ingest, v1 } from '../../tests/support/lineage-rows';
import type { LineageCommand } from './decide';
import type { LineageEvent } from './events';

const v2additive: SchemaColumns = {
  ...v1,
  columns: [...v1.columns, { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
};
const v2breaking: SchemaColumns = {
  ...v1,
  columns: [v1.columns[0]!, { name: 'mode', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false }],
};

const registered: LineageEvent = {
  type: 'LineageRegistered',
  data: { lineage_id: L, ...DEVICE, source_table: 'device_state', kind: 'rows' },
};

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

describe('lineage decider: telemetry', () => {
  const tb = (
    seq: number,
    id = `0190a000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
  ): LineageCommand => ({
    type: 'IngestTelemetryBatch',
    data: {
      ...DEVICE,
      ...MINT,
      new_lineage_id: L,
      new_review_id: R1,
      policy: DEFAULT_POLICY,
      batch: {
        format_version: 1,
        capture_strategy: 'sqlite_telemetry_batch_v1',
        batch_id: id,
        batch_seq: seq,
        source_table: 'temps',
        schema_hash: schemaHash(TEMPS),
        schema_columns: TEMPS,
        cursor_start_ts: '2026-04-28T09:00:00Z',
        cursor_end_ts: '2026-04-28T09:00:10Z',
        row_count: 1,
        rows: [{ ts: '2026-04-28T09:00:01Z', fields: { value_c: 22.1 } }],
      },
    },
  });

  it('stages the first batch for review in its own lineage kind', () => {
    spec
      .given([])
      .when(tb(1))
      .thenMatch([
        { type: 'LineageRegistered', data: { kind: 'telemetry', source_table: 'temps' } },
        { type: 'SchemaVersionObserved' },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused' },
        { type: 'TelemetryStaged', data: { batch_seq: 1 } },
      ]);
  });

  it('acknowledges a retried batch, refuses a reused or stale batch_seq', () => {
    const h = history(tb(1), tb(2), tb(3));
    spec.given(h).when(tb(3)).then([]);
    spec.given(h).when(tb(2)).then([]);
    spec.given(h).when(tb(3, '0190a000-0000-7000-8000-00000000ffff')).thenThrows('duplicate_batch_seq');
    spec
      .given(history(tb(1), tb(5)))
      .when(tb(4))
      .thenThrows('stale_batch_seq');
  });
});

describe('lineage decider: additive continuation policy', () => {
  const policy = { ...DEFAULT_POLICY, allow_additive_continue: true };
  const ingestA = (b: RowBatch, reviewId = R2): LineageCommand => ({
    type: 'IngestRowBatch',
    data: { ...DEVICE, ...MINT, batch: b, new_lineage_id: L, new_review_id: reviewId, policy },
  });

  it('adopts an additive schema without review and keeps materializing, new columns unbound', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    spec
      .given(h)
      .when(ingestA(batch([2], v2additive)))
      .thenMatch([
        { type: 'SchemaVersionObserved', data: { classification: 'compatible_additive' } },
        {
          type: 'SchemaVersionAdopted',
          data: {
            schema_hash: schemaHash(v2additive),
            unbound_columns: ['note'],
            bindings: [
              { column: 'id', action: 'mirror' },
              { column: 'mode', action: 'mirror' },
              { column: 'note', action: 'ignore', target: null },
            ],
          },
        },
        { type: 'RowsAccepted' },
      ]);
  });

  it('still sends a breaking change to review', () => {
    const h = history(ingest(batch([1])), claim(), approve());
    spec
      .given(h)
      .when(ingestA(batch([2], v2breaking)))
      .thenMatch([
        { type: 'SchemaVersionObserved', data: { classification: 'breaking' } },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused' },
        { type: 'RowsStaged' },
      ]);
  });
});
