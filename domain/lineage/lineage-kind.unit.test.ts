import { DEFAULT_POLICY } from '../policy/policy';
import { schemaHash } from '../protocol/fingerprint';
import { TEMPS } from '../../tests/support/fixtures';
import { batch, ingest } from '../../tests/support/lineage-rows';
import {
  DEVICE,
  L,
  MINT,
  R1,
  history,
  rowsStateOf,
  spec,
  telemetryStateOf,
} from '../../tests/support/lineage-spec';
import type { LineageCommand } from './decide';
import type { LineageEvent } from './events';
import { evolve } from './state';

/** A telemetry batch of `device_state`: the table a rows lineage of these tests captures. */
const telemetry = (seq: number, table = 'device_state'): LineageCommand => ({
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
      batch_id: `0190a000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
      batch_seq: seq,
      source_table: table,
      schema_hash: schemaHash(TEMPS),
      schema_columns: TEMPS,
      cursor_start_ts: '2026-04-28T09:00:01Z',
      cursor_end_ts: '2026-04-28T09:00:01Z',
      row_count: 1,
      rows: [{ ts: '2026-04-28T09:00:01Z', fields: { value_c: 22.1 } }],
    },
  },
});

describe('a lineage takes only batches of its own kind', () => {
  it('a rows lineage refuses a telemetry batch (illegal_transition) and decides nothing', () => {
    const rows = history(ingest(batch([1, 2])));
    spec.given(rows).when(telemetry(1)).thenThrows('illegal_transition');
    expect(rowsStateOf(rows).last_commit_seq).toBe(2);
  });

  it('a telemetry lineage refuses a row batch (illegal_transition) and decides nothing', () => {
    const telem = history(telemetry(1));
    expect(telemetryStateOf(telem).last_batch_seq).toBe(1);
    spec
      .given(telem)
      .when(ingest(batch([1])))
      .thenThrows('illegal_transition');
  });

  it('a telemetry lineage refuses rules only rows lineages have', () => {
    const telem = history(telemetry(1));
    spec
      .given(telem)
      .when({ type: 'SetLineageAuthority', data: { authority: 'cloud_authoritative' } })
      .thenThrows('illegal_transition');
    spec
      .given(telem)
      .when({ type: 'RequestResync', data: { resync_id: R1, control_id: R1, now: MINT.now, buckets: null } })
      .thenThrows('resync_unavailable');
  });

  it('an event of the other kind folds to the same state', () => {
    const rows = history(ingest(batch([1, 2])));
    const before = rowsStateOf(rows);
    const stray: LineageEvent = {
      type: 'TelemetryAccepted',
      data: {
        batch_id: 'b',
        batch_seq: 9,
        schema_hash: schemaHash(TEMPS),
        rows: [{ ts: '2026-04-28T09:00:01Z', fields: {} }],
      },
    };
    expect(evolve(before, stray)).toBe(before);
  });
});
