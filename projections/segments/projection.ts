/**
 * `segments`: the batch ledger (`edge_export_segments`): one row per batch a lineage took in,
 * how many rows, how many were duplicates, and whether they were staged or accepted.
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, Projection, Tx } from '../runner/types';
import { lineageIdentity, rememberLineage } from '../store/identity';
import type { EdgeExportSegmentsTable } from '../store/schema';

const HANDLES = [
  'LineageRegistered',
  'RowsStaged',
  'RowsAccepted',
  'TelemetryStaged',
  'TelemetryAccepted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

const IDENTITY = 'edge_segment_lineages';

type Segment = Omit<
  EdgeExportSegmentsTable,
  'lineage_id' | 'project_id' | 'device_id' | 'source_table' | 'kind' | 'received_at' | 'stream_seq'
>;

function segmentOf(event: Exclude<Handled, { type: 'LineageRegistered' }>): Segment {
  switch (event.type) {
    case 'RowsStaged':
    case 'RowsAccepted': {
      const d = event.data;
      const seqs = d.rows.map((r) => r.commit_seq);
      return {
        batch_id: d.batch_id,
        journal_epoch: d.journal_epoch,
        batch_seq: null,
        first_commit_seq: seqs.length > 0 ? Math.min(...seqs) : null,
        last_commit_seq: seqs.length > 0 ? Math.max(...seqs) : null,
        rows: d.rows.length,
        duplicates: d.duplicates_skipped,
        disposition: event.type === 'RowsStaged' ? 'staged' : 'accepted',
        reason: event.type === 'RowsStaged' ? event.data.reason : null,
        schema_hash: d.schema_hash,
      };
    }
    case 'TelemetryStaged':
    case 'TelemetryAccepted':
      return {
        batch_id: event.data.batch_id,
        journal_epoch: null,
        batch_seq: event.data.batch_seq,
        first_commit_seq: null,
        last_commit_seq: null,
        rows: event.data.rows.length,
        duplicates: 0,
        disposition: event.type === 'TelemetryStaged' ? 'staged' : 'accepted',
        reason: event.type === 'TelemetryStaged' ? event.data.reason : null,
        schema_hash: event.data.schema_hash,
      };
    default:
      return assertNever(event, 'segments event');
  }
}

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  if (event.type === 'LineageRegistered') {
    await rememberLineage(tx, IDENTITY, event.data);
    return;
  }
  const l = await lineageIdentity(tx, IDENTITY, ctx.lineage_id);
  if (!l) return;
  const s = segmentOf(event);
  await tx
    .insertInto('edge_export_segments')
    .values({
      ...s,
      lineage_id: l.lineage_id,
      project_id: l.project_id,
      device_id: l.device_id,
      source_table: l.source_table,
      kind: l.kind,
      received_at: ctx.occurred_at,
      stream_seq: ctx.seq,
    })
    // A retried batch that still carried new rows: one ledger line, counts summed.
    .onConflict((oc) =>
      oc.columns(['lineage_id', 'batch_id']).doUpdateSet((eb) => ({
        rows: eb('edge_export_segments.rows', '+', s.rows),
        duplicates: eb('edge_export_segments.duplicates', '+', s.duplicates),
      })),
    )
    .execute();
}

export function segmentsProjection(): Projection<Handled> {
  return {
    name: 'segments',
    version: 1,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_export_segments').execute();
      await tx.deleteFrom(IDENTITY).execute();
    },
  };
}
