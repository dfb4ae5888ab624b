/**
 * The table of the exact-replication rules (docs/exact-replication.md, docs/verify.md):
 * `device_state (id INTEGER PRIMARY KEY, offset REAL, secret TEXT)`, a REAL to rename and a TEXT
 * to ignore, its inserts, the IngestRowBatch that carries them, and the ids a resync is minted.
 */
import type { LineageCommand } from '../../domain/lineage/decide';
import type { LineageEvent } from '../../domain/lineage/events';
import { DEFAULT_POLICY } from '../../domain/policy/policy';
import type { RowBatch, RowChange } from '../../domain/protocol/contracts';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { approve, claim, DEVICE, EPOCH, history, L, MINT, R1 } from './lineage-spec';

export const RESYNC = {
  new_resync_id: '0190a000-0000-7000-8000-0000000000d1',
  new_resync_control_id: '0190a000-0000-7000-8000-0000000000d2',
};

export const v1: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'offset', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'secret', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};

export const insert = (seq: number): RowChange => ({
  commit_seq: seq,
  op: 'insert',
  pk: { id: seq },
  row: { id: seq, offset: { $real: '1' }, secret: 's' },
});

/** A batch of these changes; `schema` null sends the hash of v1 without its columns. */
export function batch(rows: RowChange[], schema: SchemaColumns | null = v1, id?: string): RowBatch {
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

/** IngestRowBatch with the resync ids minted (`resync: false` mints none). */
export const ingest = (
  b: RowBatch,
  extra: { payload_digest?: string; resync?: boolean; review?: string } = {},
) =>
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

/** A lineage with v1 approved and rows 1..2 accepted. */
export const approved = (): LineageEvent[] =>
  history(ingest(batch([insert(1)])), claim(), approve(), ingest(batch([insert(2)])));
