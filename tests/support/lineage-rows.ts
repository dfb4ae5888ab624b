/**
 * The table most lineage rule tests take in: `device_state (id INTEGER PRIMARY KEY, mode TEXT)`,
 * batches of inserts by commit_seq, and the IngestRowBatch that carries them.
 */
import type { LineageCommand } from '../../domain/lineage/decide';
import { DEFAULT_POLICY } from '../../domain/policy/policy';
import type { RowBatch } from '../../domain/protocol/contracts';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { DEVICE_STATE } from './fixtures';
import { DEVICE, EPOCH, L, MINT, R1 } from './lineage-spec';

/** Version 1 of the table's schema. */
export const v1 = DEVICE_STATE;
export const H1 = schemaHash(v1);

/** Inserts of rows `{ id: seq, mode: 'm' }` at these commit_seqs. */
export function batch(seqs: number[], schema: SchemaColumns = v1, withColumns = true): RowBatch {
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

export const ingest = (b: RowBatch, reviewId = R1): LineageCommand => ({
  type: 'IngestRowBatch',
  data: { ...DEVICE, ...MINT, batch: b, new_lineage_id: L, new_review_id: reviewId, policy: DEFAULT_POLICY },
});
