/**
 * Schema reviews under the exact-replication rules (docs/exact-replication.md): re-enrolment
 * after a delete, reopen and reject, governance kept across approvals, and the schema diff.
 */
import type { SchemaColumns } from '../protocol/fingerprint';
import { DEFAULT_POLICY } from '../policy/policy';
import {
  approve,
  claim,
  history,
  R1,
  R2,
  rowsStateOf,
  spec,
  stateOf,
} from '../../tests/support/lineage-spec';
import { approved, batch, ingest, insert, RESYNC, v1 } from '../../tests/support/lineage-exact';
import { schemaDiff } from './diff';

const v2: SchemaColumns = {
  ...v1,
  columns: [...v1.columns, { name: 'note', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
};

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
    expect(rowsStateOf(answered).schema_resync).toBeNull();
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
