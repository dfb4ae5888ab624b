import { schemaHash, type SchemaColumns } from '../protocol/fingerprint';
import type { RowBatch, RowChange, VerifyReport } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { fold } from '../shared/decider';
import { deciderSpec } from '../../tests/support/decider-spec';
import { type LineageCommand, lineageDecider } from './decide';
import { schemaDiff } from './diff';
import type { ColumnAction, LineageEvent } from './events';
import { type ActiveLineage, RECENT_BATCH_DIGESTS, lastVerify } from './state';

/** Rules of exact replication (docs/exact-replication.md, docs/verify.md) on the lineage decider. */
const spec = deciderSpec(lineageDecider);
const L = '0190a000-0000-7000-8000-0000000000aa';
const R1 = '0190a000-0000-7000-8000-0000000000b1';
const R2 = '0190a000-0000-7000-8000-0000000000b2';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1' };
const NOW = '2026-11-22T00:00:00.000Z';
const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: NOW,
};
const RESYNC = {
  new_resync_id: '0190a000-0000-7000-8000-0000000000d1',
  new_resync_control_id: '0190a000-0000-7000-8000-0000000000d2',
};
const V1 = '0190a000-0000-7000-8000-000000000501';
const VC = '0190a000-0000-7000-8000-000000000502';

const v1: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'offset', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'secret', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};
const v2: SchemaColumns = {
  ...v1,
  columns: [...v1.columns, { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
};

const insert = (seq: number): RowChange => ({
  commit_seq: seq,
  op: 'insert',
  pk: { id: seq },
  row: { id: seq, offset: { $real: '1' }, secret: 's' },
});
const refusedRow = (seq: number): RowChange => ({
  commit_seq: seq,
  op: 'refused',
  pk: { id: seq },
  row: null,
  refusal: { code: 'unencodable_text', column: 'secret', message: 'not valid UTF-8' },
});
const sweepRow = (seq: number): RowChange => ({
  commit_seq: seq,
  op: 'sweep',
  pk: {},
  row: null,
  sweep: { resync_id: RESYNC.new_resync_id, since_commit_seq: 1, buckets: null },
});

function batch(rows: RowChange[], schema: SchemaColumns | null = v1, id?: string): RowBatch {
  const seqs = rows.map((r) => r.commit_seq);
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: id ?? `0190a000-0000-7000-8000-${String(seqs[0]).padStart(12, '0')}`,
    journal_epoch: EPOCH,
    source_table: 'device_state',
    schema_hash: schemaHash(schema ?? v1),
    ...(schema ? { schema_columns: schema } : {}),
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows,
  };
}

const ingest = (b: RowBatch, extra: { payload_digest?: string; resync?: boolean; review?: string } = {}) =>
  ({
    type: 'IngestRowBatch',
    data: {
      ...DEVICE,
      ...MINT,
      ...(extra.resync === false ? {} : RESYNC),
      batch: b,
      new_lineage_id: L,
      new_review_id: extra.review ?? R1,
      policy: DEFAULT_POLICY,
      ...(extra.payload_digest ? { payload_digest: extra.payload_digest } : {}),
    },
  }) as const satisfies LineageCommand;

function history(...cmds: LineageCommand[]): LineageEvent[] {
  const out: LineageEvent[] = [];
  for (const c of cmds) out.push(...spec.given(out).when(c).events());
  return out;
}
const stateOf = (events: LineageEvent[]) => fold(lineageDecider, events) as ActiveLineage;
const claim = (v = 1, review = R1): LineageCommand => ({
  type: 'ClaimReview',
  data: { review_id: review, action_version: v },
});
const approve = (v = 2, column_actions?: ColumnAction[], review = R1): LineageCommand => ({
  type: 'ApproveReview',
  data: {
    review_id: review,
    action_version: v,
    replay_id: '0190a000-0000-7000-8000-0000000000f1',
    ...(column_actions ? { column_actions } : {}),
  },
});
/** A lineage with v1 approved and rows 1..2 accepted. */
const approved = () => history(ingest(batch([insert(1)])), claim(), approve(), ingest(batch([insert(2)])));

describe('refused and sweep changes', () => {
  it('records refused changes in RowsRefused, never staged, and stages the others of the batch', () => {
    const b = batch([insert(1), refusedRow(2), insert(3)]);
    spec
      .given([])
      .when(ingest(b))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved' },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused' },
        { type: 'RowsRefused', data: { batch_id: b.batch_id, rows: [refusedRow(2)] } },
        { type: 'RowsStaged', data: { rows: [insert(1), insert(3)] } },
      ]);
  });

  it('counts refused changes by code and dedupes a retried refused change like a row', () => {
    const h = history(ingest(batch([refusedRow(1), insert(2)])));
    const s = stateOf(h);
    expect(s.refused_rows).toBe(1);
    expect(s.refused_by_code).toEqual({ unencodable_text: 1 });
    expect(s.staged_rows).toBe(1);
    spec
      .given(h)
      .when(ingest(batch([refusedRow(1), insert(2)])))
      .then([]);
  });

  it('accepts a batch of only refused changes on an approved lineage without materializing anything', () => {
    const h = approved();
    spec
      .given(h)
      .when(ingest(batch([refusedRow(3)])))
      .thenMatch([{ type: 'RowsRefused', data: { rows: [refusedRow(3)] } }]);
  });

  it('lets a sweep (pk {}) flow like a row: staged while paused, accepted in order otherwise, deduped', () => {
    spec
      .given(history(ingest(batch([insert(1)]))))
      .when(ingest(batch([insert(2), sweepRow(3)])))
      .thenMatch([{ type: 'RowsStaged', data: { rows: [insert(2), sweepRow(3)] } }]);
    const h = approved();
    spec
      .given(h)
      .when(ingest(batch([sweepRow(3)])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [sweepRow(3)] } }]);
    spec
      .given([
        ...h,
        ...spec
          .given(h)
          .when(ingest(batch([sweepRow(3)])))
          .events(),
      ])
      .when(ingest(batch([sweepRow(3)])))
      .then([]);
  });

  it('passes a sweep through on a cloud_authoritative lineage (it has no key the cloud wrote)', () => {
    const h = approved();
    const ca = [
      ...h,
      ...spec
        .given(h)
        .when({ type: 'SetLineageAuthority', data: { authority: 'cloud_authoritative' } })
        .events(),
    ];
    spec
      .given(ca)
      .when(ingest(batch([sweepRow(3)])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [sweepRow(3)] } }]);
  });
});

describe('batch identity', () => {
  const D1 = 'aaaaaaaaaaaaaaaa';
  const D2 = 'bbbbbbbbbbbbbbbb';
  const ID = '0190a000-0000-7000-8000-00000000abcd';

  it('refuses a batch that reuses a batch_id with another digest: no event at all', () => {
    const h = history(ingest(batch([insert(1)], v1, ID), { payload_digest: D1 }));
    spec
      .given(h)
      .when(ingest(batch([insert(2)], v1, ID), { payload_digest: D2 }))
      .thenThrows('batch_id_conflict');
    // The same content again is a retry: deduped as before.
    spec
      .given(h)
      .when(ingest(batch([insert(1)], v1, ID), { payload_digest: D1 }))
      .then([]);
  });

  it('remembers the digest on the batch events, and only the most recent batch ids', () => {
    const h = history(ingest(batch([insert(1)], v1, ID), { payload_digest: D1 }));
    expect(h.find((e) => e.type === 'RowsStaged')).toMatchObject({ data: { payload_digest: D1 } });
    expect(stateOf(h).batch_digests).toEqual([[ID, D1]]);
    let s = stateOf(h);
    for (let i = 0; i < RECENT_BATCH_DIGESTS; i++) {
      s = lineageDecider.evolve(s, {
        type: 'RowsAccepted',
        data: {
          batch_id: `b${i}`,
          journal_epoch: EPOCH,
          schema_hash: 'h',
          rows: [],
          duplicates_skipped: 0,
          payload_digest: D2,
        },
      }) as ActiveLineage;
    }
    expect(s.batch_digests).toHaveLength(RECENT_BATCH_DIGESTS);
    expect(s.batch_digests?.[0]).toEqual(['b0', D2]);
  });

  it('refuses a telemetry batch that reuses its batch_id with other content', () => {
    const temps: SchemaColumns = {
      table_name: 'temps',
      columns: [{ name: 'v', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false }],
    };
    const tb = (seq: number, digest: string): LineageCommand => ({
      type: 'IngestTelemetryBatch',
      data: {
        ...DEVICE,
        ...MINT,
        new_lineage_id: L,
        new_review_id: R1,
        policy: DEFAULT_POLICY,
        payload_digest: digest,
        batch: {
          format_version: 1,
          capture_strategy: 'sqlite_telemetry_batch_v1',
          batch_id: ID,
          batch_seq: seq,
          source_table: 'temps',
          schema_hash: schemaHash(temps),
          schema_columns: temps,
          cursor_start_ts: '2026-04-28T09:00:00Z',
          cursor_end_ts: '2026-04-28T09:00:10Z',
          row_count: 1,
          rows: [{ ts: '2026-04-28T09:00:01Z', fields: { v: seq } }],
        },
      },
    });
    const h = history(tb(1, D1));
    spec.given(h).when(tb(1, D2)).thenThrows('batch_id_conflict');
    spec.given(h).when(tb(1, D1)).then([]);
  });
});

describe('re-enrolment after a delete', () => {
  it('asks the device for its schema and table (resync) when a lineage starts from a batch without columns', () => {
    spec
      .given([])
      .when(ingest(batch([insert(7)], null)))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved', data: { schema_columns: null } },
        { type: 'SchemaReviewQueued' },
        { type: 'LineagePaused', data: { reason: 'schema_review' } },
        {
          type: 'ResyncRequested',
          data: {
            resync_id: RESYNC.new_resync_id,
            control_id: RESYNC.new_resync_control_id,
            buckets: null,
            reason: 're_enrolment',
          },
        },
        {
          type: 'ControlIssued',
          data: {
            control_id: RESYNC.new_resync_control_id,
            control_kind: 'resync',
            resync_id: RESYNC.new_resync_id,
            buckets: null,
          },
        },
        { type: 'RowsStaged' },
      ]);
  });

  it('asks once; the review cannot be approved until the columns arrive, then it can', () => {
    const h = history(ingest(batch([insert(7)], null)), claim());
    spec
      .given(h)
      .when(ingest(batch([insert(8)], null)))
      .thenMatch([{ type: 'RowsStaged' }]);
    spec.given(h).when(approve()).thenThrows('schema_columns_missing');
    const answered = [
      ...h,
      ...spec
        .given(h)
        .when(ingest(batch([insert(9)], v1)))
        .events(),
    ];
    expect(answered.at(-2)).toMatchObject({
      type: 'SchemaVersionObserved',
      data: { schema_columns: v1 },
    });
    expect(stateOf(answered).schema_resync).toBeNull();
    spec
      .given(answered)
      .when(approve())
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineageResumed' },
        { type: 'StagedRowsReleased' },
      ]);
  });

  it('asks nothing of a lineage that knows the columns, or when the worker gave no ids', () => {
    const h = approved();
    expect(
      spec
        .given(h)
        .when(ingest(batch([insert(3)], null)))
        .events(),
    ).toMatchObject([{ type: 'RowsAccepted' }]);
    expect(
      spec
        .given([])
        .when(ingest(batch([insert(7)], null), { resync: false }))
        .events()
        .some((e) => e.type === 'ResyncRequested'),
    ).toBe(false);
  });
});

describe('reopen and reject', () => {
  const rejected = () =>
    history(ingest(batch([insert(1)])), claim(), {
      type: 'RejectReview',
      data: { review_id: R1, action_version: 2, reason: 'wrong table' },
    });

  it('reopens a rejected review: queued again, action_version moves on, then it can be claimed', () => {
    const h = rejected();
    spec
      .given(h)
      .when({ type: 'ReopenReview', data: { review_id: R1, action_version: 3 } })
      .then([{ type: 'SchemaReviewReopened', data: { review_id: R1, action_version: 4 } }]);
    const h2 = [
      ...h,
      ...spec
        .given(h)
        .when({ type: 'ReopenReview', data: { review_id: R1, action_version: 3 } })
        .events(),
    ];
    expect(stateOf(h2).reviews[0]).toMatchObject({ status: 'queued', action_version: 4 });
    spec
      .given(h2)
      .when(claim(4))
      .thenMatch([{ type: 'SchemaReviewClaimed', data: { action_version: 5 } }]);
  });

  it('reopens only a rejected review, at its current action_version', () => {
    const h = history(ingest(batch([insert(1)])));
    spec
      .given(h)
      .when({ type: 'ReopenReview', data: { review_id: R1, action_version: 1 } })
      .thenThrows('illegal_transition');
    spec
      .given(rejected())
      .when({ type: 'ReopenReview', data: { review_id: R1, action_version: 2 } })
      .thenThrows('stale_action_version');
  });

  it('refuses a rejection without a reason', () => {
    spec
      .given(history(ingest(batch([insert(1)])), claim()))
      .when({ type: 'RejectReview', data: { review_id: R1, action_version: 2, reason: '  ' } })
      .thenThrows('reason_required');
  });
});

describe('approvals keep governance', () => {
  /** v1 approved with offset renamed and secret ignored; then v2 (adds note) under review R2. */
  const governed = () =>
    history(
      ingest(batch([insert(1)])),
      claim(),
      approve(2, [
        { column: 'offset', action: 'mirror', mirror_column_name: 'cal_offset' },
        { column: 'secret', action: 'ignore' },
      ]),
      ingest(batch([insert(2)], v2), { review: R2 }),
      claim(1, R2),
    );

  it('keeps earlier renames and ignores for columns without an action; new columns are mirrored', () => {
    const events = spec
      .given(governed())
      .when(approve(2, undefined, R2))
      .events();
    expect(events[0]).toMatchObject({
      type: 'SchemaReviewApproved',
      data: {
        bindings: [
          { column: 'id', action: 'mirror', target: 'id' },
          { column: 'offset', action: 'mirror', target: 'cal_offset' },
          { column: 'secret', action: 'ignore', target: null },
          { column: 'note', action: 'mirror', target: 'note' },
        ],
      },
    });
  });

  it('lets the operator change a kept binding with an explicit action', () => {
    const events = spec
      .given(governed())
      .when(approve(2, [{ column: 'offset', action: 'mirror' }], R2))
      .events();
    expect(events[0]).toMatchObject({
      data: { bindings: [{}, { column: 'offset', target: 'offset' }, { action: 'ignore' }, {}] },
    });
  });

  it('mirrors columns an additive continuation took on unbound, once a review approves', () => {
    const policy = { ...DEFAULT_POLICY, allow_additive_continue: true };
    const h = history(ingest(batch([insert(1)])), claim(), approve());
    const adopted = [
      ...h,
      ...spec
        .given(h)
        .when({ ...ingest(batch([insert(2)], v2)), data: { ...ingest(batch([insert(2)], v2)).data, policy } })
        .events(),
    ];
    expect(adopted.some((e) => e.type === 'SchemaVersionAdopted')).toBe(true);
    expect(stateOf(adopted).unbound_columns).toEqual(['note']);
    const bound = stateOf(adopted).bindings.find((b) => b.column === 'note');
    expect(bound?.action).toBe('ignore');
    const v3: SchemaColumns = {
      ...v2,
      columns: [...v2.columns, { name: 'extra', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
    };
    const h3 = [
      ...adopted,
      ...spec
        .given(adopted)
        .when(ingest(batch([insert(3)], v3), { review: R2 }))
        .events(),
    ];
    const h4 = [...h3, ...spec.given(h3).when(claim(1, R2)).events()];
    expect(
      spec
        .given(h4)
        .when(approve(2, undefined, R2))
        .events()[0],
    ).toMatchObject({
      data: {
        bindings: [
          { column: 'id' },
          { column: 'offset' },
          { column: 'secret' },
          { column: 'note', action: 'mirror', target: 'note' },
          { column: 'extra', action: 'mirror', target: 'extra' },
        ],
      },
    });
  });
});

describe('schema diff', () => {
  it('lists added, removed, retyped and re-keyed columns against the approved schema', () => {
    const next: SchemaColumns = {
      table_name: 'device_state',
      columns: [
        { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
        { name: 'offset', decl_type_affinity: 'TEXT', pk_ordinal: 2, not_null: false },
        { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
      ],
    };
    expect(schemaDiff(next, v1, 'H1')).toEqual({
      against_hash: 'H1',
      added: ['note'],
      removed: ['secret'],
      retyped: [{ column: 'offset', from: 'REAL', to: 'TEXT' }],
      rekeyed: [{ column: 'offset', from: 0, to: 2 }],
    });
  });

  it('has every column added when nothing is approved, and no diff without the columns', () => {
    expect(schemaDiff(v1, null, null)).toEqual({
      against_hash: null,
      added: ['id', 'offset', 'secret'],
      removed: [],
      retyped: [],
      rekeyed: [],
    });
    expect(schemaDiff(null, v1, 'H1')).toBeNull();
  });
});

describe('verify', () => {
  const request = (trigger: 'operator' | 'schedule' = 'operator', now = NOW, interval?: number) =>
    ({
      type: 'RequestVerify',
      data: {
        verify_id: V1,
        control_id: VC,
        now,
        trigger,
        ...(interval !== undefined ? { interval_minutes: interval } : {}),
      },
    }) as const satisfies LineageCommand;
  const report = (over: Partial<VerifyReport> = {}): LineageCommand => ({
    type: 'ReportVerify',
    data: {
      now: NOW,
      report: {
        format_version: 1,
        request_kind: 'verify_report',
        request_id: '0190a000-0000-7000-8000-000000000601',
        verify_id: V1,
        source_table: 'device_state',
        journal_epoch: EPOCH,
        through_commit_seq: 2,
        schema_hash: schemaHash(v1),
        columns: ['id', 'offset', 'secret'],
        digests: [{ bucket: 3, rows: 2, digest: 'a'.repeat(64) }],
        ...over,
      },
    },
  });
  const complete = (outcome: 'equal' | 'divergent', buckets: number[] = []): LineageCommand => ({
    type: 'CompleteVerify',
    data: {
      verify_id: V1,
      outcome,
      divergent_buckets: buckets,
      device_rows: 2,
      mirror_rows: outcome === 'equal' ? 2 : 1,
      new_resync_id: RESYNC.new_resync_id,
      new_control_id: RESYNC.new_resync_control_id,
      now: NOW,
    },
  });

  it('requests a verify of the mirrored and key columns with a signed control', () => {
    const h = history(
      ingest(batch([insert(1)])),
      claim(),
      approve(2, [{ column: 'secret', action: 'ignore' }]),
    );
    spec
      .given(h)
      .when(request())
      .then([
        {
          type: 'VerifyRequested',
          data: {
            verify_id: V1,
            control_id: VC,
            columns: ['id', 'offset'],
            trigger: 'operator',
            requested_at: NOW,
          },
        },
        {
          type: 'ControlIssued',
          data: {
            control_id: VC,
            control_kind: 'verify',
            source_table: 'device_state',
            server_watermark: 1,
            reason: `verify ${V1} (operator)`,
            issued_at: NOW,
            verify_id: V1,
            columns: ['id', 'offset'],
          },
        },
      ]);
  });

  it('refuses a verify of a lineage without an approved schema, or a deleted one', () => {
    spec
      .given(history(ingest(batch([insert(1)]))))
      .when(request())
      .thenThrows('verify_unavailable');
    const h = approved();
    spec
      .given([...h, { type: 'LineageDeleted', data: { reason: 'x' } }])
      .when(request())
      .thenThrows('lineage_deleted');
  });

  it('records the report of a requested verify once; an unknown verify_id is refused', () => {
    const h = approved();
    const requested = [...h, ...spec.given(h).when(request()).events()];
    spec
      .given(requested)
      .when(report())
      .thenMatch([
        { type: 'VerifyReported', data: { verify_id: V1, through_commit_seq: 2, reported_at: NOW } },
      ]);
    spec
      .given(requested)
      .when(report({ verify_id: '0190a000-0000-7000-8000-000000000999' }))
      .thenThrows('unknown_verify_id');
    spec
      .given(requested)
      .when(report({ columns: ['id'] }))
      .thenThrows('verify_mismatch');
    const reported = [...requested, ...spec.given(requested).when(report()).events()];
    spec.given(reported).when(report()).then([]);
    expect(lastVerify(stateOf(reported))).toMatchObject({ status: 'reported', device_rows: 2 });
  });

  it('completes equal; divergent buckets are repaired by a resync of those buckets', () => {
    const h = approved();
    const requested = [...h, ...spec.given(h).when(request()).events()];
    const reported = [...requested, ...spec.given(requested).when(report()).events()];
    spec
      .given(reported)
      .when(complete('equal'))
      .thenMatch([{ type: 'VerifyCompleted', data: { outcome: 'equal', divergent_buckets: [] } }]);
    spec
      .given(reported)
      .when(complete('divergent', [9, 3, 3]))
      .then([
        {
          type: 'VerifyCompleted',
          data: {
            verify_id: V1,
            outcome: 'divergent',
            divergent_buckets: [3, 9],
            device_rows: 2,
            mirror_rows: 1,
            resync_id: RESYNC.new_resync_id,
            completed_at: NOW,
          },
        },
        {
          type: 'ResyncRequested',
          data: {
            resync_id: RESYNC.new_resync_id,
            control_id: RESYNC.new_resync_control_id,
            buckets: [3, 9],
            reason: 'verify_repair',
          },
        },
        {
          type: 'ControlIssued',
          data: {
            control_id: RESYNC.new_resync_control_id,
            control_kind: 'resync',
            source_table: 'device_state',
            server_watermark: 2,
            reason: 'resync of 2 key bucket(s) (verify_repair)',
            issued_at: NOW,
            resync_id: RESYNC.new_resync_id,
            buckets: [3, 9],
          },
        },
      ]);
    const done = [...reported, ...spec.given(reported).when(complete('equal')).events()];
    spec
      .given(done)
      .when(complete('divergent', [1]))
      .then([]);
    expect(lastVerify(stateOf(done))).toMatchObject({
      status: 'completed',
      outcome: 'equal',
      completed_at: NOW,
    });
    spec.given(requested).when(complete('equal')).thenThrows('illegal_transition');
  });

  it('schedules a run only when the last one is older than the interval', () => {
    const h = approved();
    spec
      .given(h)
      .when(request('schedule', NOW, 60))
      .thenMatch([{ type: 'VerifyRequested', data: { trigger: 'schedule' } }, { type: 'ControlIssued' }]);
    const once = [
      ...h,
      ...spec
        .given(h)
        .when(request('schedule', NOW, 60))
        .events(),
    ];
    spec
      .given(once)
      .when(request('schedule', '2026-11-22T00:59:00.000Z', 60))
      .then([]);
    spec
      .given(once)
      .when(request('schedule', '2026-11-22T01:00:00.000Z', 60))
      .thenMatch([{ type: 'VerifyRequested' }, { type: 'ControlIssued' }]);
    // A lineage waiting for a review is not scheduled (and not refused: the scan moves on).
    spec
      .given(history(ingest(batch([insert(1)]))))
      .when(request('schedule', NOW, 60))
      .then([]);
  });

  it('resyncs on an operator request, of the whole table or some buckets', () => {
    spec
      .given(approved())
      .when({
        type: 'RequestResync',
        data: { resync_id: RESYNC.new_resync_id, control_id: VC, now: NOW, buckets: [5, 1] },
      })
      .thenMatch([
        { type: 'ResyncRequested', data: { reason: 'operator', buckets: [1, 5] } },
        { type: 'ControlIssued', data: { control_kind: 'resync', buckets: [1, 5] } },
      ]);
  });
});
