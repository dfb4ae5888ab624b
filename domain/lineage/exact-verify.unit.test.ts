/** Verify and resync (docs/verify.md) on the lineage decider. */
import { schemaHash } from '../protocol/fingerprint';
import type { VerifyReport } from '../protocol/contracts';
import { approve, claim, EPOCH, history, NOW, rowsStateOf, spec } from '../../tests/support/lineage-spec';
import { approved, batch, ingest, insert, RESYNC, v1 } from '../../tests/support/lineage-exact';
import type { LineageCommand } from './decide';
import { lastVerify } from './state';

const V1 = '0190a000-0000-7000-8000-000000000501';
const VC = '0190a000-0000-7000-8000-000000000502';

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
    expect(lastVerify(rowsStateOf(reported))).toMatchObject({ status: 'reported', device_rows: 2 });
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
    expect(lastVerify(rowsStateOf(done))).toMatchObject({
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
