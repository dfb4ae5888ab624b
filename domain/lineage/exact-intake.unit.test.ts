/**
 * What a row batch brings in under the exact-replication rules (docs/exact-replication.md):
 * refused changes and sweeps, and a batch's identity (its batch_id and payload digest).
 */
import { schemaHash, type SchemaColumns } from '../protocol/fingerprint';
import type { RowChange } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import {
  DEVICE,
  EPOCH,
  history,
  L,
  MINT,
  R1,
  rowsStateOf,
  spec,
  stateOf,
} from '../../tests/support/lineage-spec';
import { approved, batch, ingest, insert, RESYNC, v1 } from '../../tests/support/lineage-exact';
import { type LineageCommand, lineageDecider } from './decide';
import { type ActiveLineage, RECENT_BATCH_DIGESTS } from './state';

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
    const s = rowsStateOf(h);
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
