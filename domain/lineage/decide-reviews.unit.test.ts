/**
 * A lineage's own schema review, from claim to replay, and the end of a lineage.
 */
import { approve, claim, history, R1, spec } from '../../tests/support/lineage-spec';
import { batch, H1, ingest } from '../../tests/support/lineage-rows';
import type { LineageCommand } from './decide';

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
