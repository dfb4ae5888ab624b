/**
 * What stops and restarts the device (volume backpressure, the circuit breaker), and the
 * controls that tell it so.
 */
import type { RowBatch } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
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
import { batch, ingest } from '../../tests/support/lineage-rows';
import type { LineageCommand } from './decide';

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
