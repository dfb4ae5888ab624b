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
const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: '2026-11-22T00:00:00.000Z',
};

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
  data: { ...DEVICE, ...MINT, batch: b, new_lineage_id: L, new_review_id: reviewId, policy: DEFAULT_POLICY },
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

describe('lineage decider: volume backpressure', () => {
  const policy = { ...DEFAULT_POLICY, max_pending_rows_per_lineage: 4, resume_threshold_percent: 80 };
  const ingestP = (b: RowBatch): LineageCommand => ({
    type: 'IngestRowBatch',
    data: { ...DEVICE, ...MINT, batch: b, new_lineage_id: L, new_review_id: R1, policy },
  });

  it('never pauses the device for a schema review: the cloud stages', () => {
    const events = spec
      .given([])
      .when(ingestP(batch([1, 2])))
      .events();
    expect(events.some((e) => e.type === 'ControlIssued')).toBe(false);
  });

  it('pauses with volume_backpressure and issues pause_lineage with the watermark when the cap is exceeded', () => {
    spec
      .given(history(ingestP(batch([1, 2, 3]))))
      .when(ingestP(batch([4, 5])))
      .thenMatch([
        { type: 'RowsStaged' },
        { type: 'LineagePaused', data: { reason: 'volume_backpressure' } },
        {
          type: 'ControlIssued',
          data: {
            control_id: MINT.new_control_id,
            control_kind: 'pause_lineage',
            server_watermark: 5,
            source_table: 'device_state',
            issued_at: MINT.now,
          },
        },
      ]);
  });

  it('does not pause twice', () => {
    spec
      .given(history(ingestP(batch([1, 2, 3])), ingestP(batch([4, 5]))))
      .when(ingestP(batch([6])))
      .thenMatch([{ type: 'RowsStaged' }]);
  });

  it('resumes and issues resume_lineage once the replayed backlog is materialized', () => {
    const h = history(ingestP(batch([1, 2, 3])), ingestP(batch([4, 5])), claim(), approve());
    expect(h.filter((e) => e.type === 'StagedRowsReleased')).toHaveLength(1);
    spec
      .given(h)
      .when({
        type: 'CompleteReplay',
        data: { replay_id: '0190a000-0000-7000-8000-0000000000f1', rows: 5, policy, ...MINT },
      })
      .thenMatch([
        { type: 'ReplayCompleted' },
        { type: 'LineageResumed', data: { reason: 'volume_backpressure' } },
        { type: 'ControlIssued', data: { control_kind: 'resume_lineage', server_watermark: 5 } },
      ]);
  });

  it('materializes rows that arrive while only backpressure holds the lineage, after the leftovers', () => {
    const h = history(ingestP(batch([1, 2, 3])), ingestP(batch([4, 5])), claim(), approve());
    spec
      .given(h)
      .when(ingestP(batch([6])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [{ commit_seq: 6 }] } }]);
  });
});

describe('lineage decider: circuit breaker', () => {
  const active = () => history(ingest(batch([1])), claim(), approve());
  const fail = (seq: number, permanent = true): LineageCommand => ({
    type: 'ReportMaterializationFailure',
    data: {
      ...MINT,
      source_seq: seq,
      code: 'mirror_write_failed',
      message: 'no such table',
      permanent,
      rows: [{ commit_seq: 100 + seq, op: 'insert', pk: { id: seq }, row: { id: seq } }],
      journal_epoch: EPOCH,
      policy: DEFAULT_POLICY,
    },
  });

  it('stages the failed rows and counts permanent failures only', () => {
    spec
      .given(active())
      .when(fail(1))
      .thenMatch([
        { type: 'MaterializationFailed', data: { consecutive_failures: 1, rows: [{ commit_seq: 101 }] } },
      ]);
    spec
      .given(active())
      .when(fail(1, false))
      .thenMatch([{ type: 'MaterializationFailed', data: { consecutive_failures: 0, permanent: false } }]);
  });

  it('keeps counting failures across accepted batches (accepting is not writing)', () => {
    const h = history(
      ingest(batch([1])),
      claim(),
      approve(),
      fail(1),
      ingest(batch([2])),
      fail(2),
      ingest(batch([3])),
      fail(3),
      fail(4),
    );
    spec
      .given(h)
      .when(fail(5))
      .thenMatch([
        { type: 'MaterializationFailed', data: { consecutive_failures: 5 } },
        { type: 'LineagePaused', data: { reason: 'circuit_breaker' } },
        { type: 'ControlIssued', data: { control_kind: 'pause_lineage' } },
      ]);
  });

  it('ignores a report it already took', () => {
    spec
      .given(history(ingest(batch([1])), claim(), approve(), fail(7)))
      .when(fail(7))
      .then([]);
  });

  it('trips after 5 permanent errors: pauses and issues pause_lineage', () => {
    const h = history(ingest(batch([1])), claim(), approve(), fail(1), fail(2), fail(3), fail(4));
    spec
      .given(h)
      .when(fail(5))
      .thenMatch([
        { type: 'MaterializationFailed', data: { consecutive_failures: 5 } },
        { type: 'LineagePaused', data: { reason: 'circuit_breaker' } },
        { type: 'ControlIssued', data: { control_kind: 'pause_lineage' } },
      ]);
  });

  it('reset clears the count, resumes, releases the staged rows and resumes the device', () => {
    const h = history(ingest(batch([1])), claim(), approve(), fail(1), fail(2), fail(3), fail(4), fail(5));
    spec
      .given(h)
      .when({ type: 'ResetMaterialization', data: { ...MINT, policy: DEFAULT_POLICY } })
      .thenMatch([
        { type: 'MaterializationReset', data: { previous_failures: 5 } },
        { type: 'LineageResumed', data: { reason: 'circuit_breaker' } },
        { type: 'StagedRowsReleased', data: { replay_id: MINT.new_replay_id } },
        { type: 'ControlIssued', data: { control_kind: 'resume_lineage' } },
      ]);
  });

  it('reset of a healthy lineage decides nothing (the caller says there was nothing to reset)', () => {
    spec
      .given(history(ingest(batch([1])), claim(), approve()))
      .when({ type: 'ResetMaterialization', data: { ...MINT, policy: DEFAULT_POLICY } })
      .then([]);
  });

  it('stages live rows while the breaker is open', () => {
    const h = history(ingest(batch([1])), claim(), approve(), fail(1), fail(2), fail(3), fail(4), fail(5));
    spec
      .given(h)
      .when(ingest(batch([9])))
      .thenMatch([{ type: 'RowsStaged', data: { reason: 'lineage_paused' } }]);
  });
});

describe('lineage decider: controls', () => {
  const policy = { ...DEFAULT_POLICY, max_pending_rows_per_lineage: 1 };
  const paused = () =>
    history({
      type: 'IngestRowBatch',
      data: {
        ...DEVICE,
        ...MINT,
        topic_slug: 'acme',
        batch: batch([1, 2]),
        new_lineage_id: L,
        new_review_id: R1,
        policy,
      },
    });
  const C = MINT.new_control_id;

  it('records the topic slug the controls go to', () => {
    expect(paused()[0]).toMatchObject({ type: 'LineageRegistered', data: { topic_slug: 'acme' } });
  });

  it('records deliveries and an acknowledgement, and takes a re-ACK as a no-op', () => {
    spec
      .given(paused())
      .when({ type: 'RecordControlDelivery', data: { control_id: C, delivered_at: 't1' } })
      .then([{ type: 'ControlDelivered', data: { control_id: C, attempt: 1, delivered_at: 't1' } }]);
    const acked = history(
      {
        type: 'IngestRowBatch',
        data: { ...DEVICE, ...MINT, batch: batch([1, 2]), new_lineage_id: L, new_review_id: R1, policy },
      },
      { type: 'AcknowledgeControl', data: { control_id: C, acknowledged_at: 't2' } },
    );
    expect(acked.at(-1)).toEqual({
      type: 'ControlAcknowledged',
      data: { control_id: C, acknowledged_at: 't2' },
    });
    spec
      .given(acked)
      .when({ type: 'AcknowledgeControl', data: { control_id: C, acknowledged_at: 't3' } })
      .then([]);
    spec
      .given(acked)
      .when({ type: 'RecordControlDelivery', data: { control_id: C, delivered_at: 't4' } })
      .then([]);
  });

  it('rejects an ack for a control it never issued', () => {
    spec
      .given(paused())
      .when({ type: 'AcknowledgeControl', data: { control_id: R2, acknowledged_at: 't' } })
      .thenThrows('unknown_control_id');
  });
});

describe('lineage decider: telemetry', () => {
  const temps: SchemaColumns = {
    table_name: 'temps',
    columns: [
      { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
      { name: 'value_c', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    ],
  };
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
        schema_hash: schemaHash(temps),
        schema_columns: temps,
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
