/**
 * `staged_rows`: the bodies of rows waiting in staging (SPEC §4), so an operator can see what a
 * device sent while its lineage is gated. Rows leave when the domain releases them.
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { RowChange } from '../../domain/protocol/contracts';
import { pkHash } from '../../domain/shared/canonical';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, Projection, Tx } from '../runner/types';
import { forgetLineage, lineageIdentity, rememberLineage } from '../store/identity';
import type { EdgeStagedRowsTable } from '../store/schema';

const HANDLES = [
  'LineageRegistered',
  'RowsStaged',
  'MaterializationFailed',
  'StagedRowsReleased',
  'LineageDeleted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

const IDENTITY = 'edge_staged_lineages';
// 14 columns per row: stay far below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const INSERT_CHUNK = 1_000;

async function stage(
  tx: Tx,
  ctx: ApplyContext,
  epoch: string,
  changes: readonly RowChange[],
  meta: Pick<EdgeStagedRowsTable, 'reason' | 'batch_id' | 'schema_hash'>,
): Promise<void> {
  const l = await lineageIdentity(tx, IDENTITY, ctx.lineage_id);
  if (!l) return;
  // Refused changes are never materializable: the decider records them apart (RowsRefused).
  const rows: EdgeStagedRowsTable[] = changes.flatMap((r) =>
    r.op === 'refused'
      ? []
      : [
          {
            lineage_id: l.lineage_id,
            project_id: l.project_id,
            device_id: l.device_id,
            source_table: l.source_table,
            journal_epoch: epoch,
            commit_seq: r.commit_seq,
            op: r.op,
            pk: JSON.stringify(r.pk),
            pk_hash: pkHash(r.pk),
            row: r.row === null ? null : JSON.stringify(r.row),
            ...meta,
            staged_at: ctx.occurred_at,
            sweep: r.sweep ? JSON.stringify(r.sweep) : null,
          },
        ],
  );
  let inserted = 0;
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const r = await tx
      .insertInto('edge_staged_rows')
      .values(rows.slice(i, i + INSERT_CHUNK))
      // The decider never stages one (epoch, commit_seq) twice; stay idempotent regardless.
      .onConflict((oc) => oc.columns(['lineage_id', 'commit_seq', 'journal_epoch']).doNothing())
      .executeTakeFirst();
    inserted += Number(r.numInsertedOrUpdatedRows ?? 0n);
  }
  await tx
    .insertInto('edge_staged_counts')
    .values({ lineage_id: l.lineage_id, row_count: inserted })
    .onConflict((oc) =>
      oc
        .column('lineage_id')
        .doUpdateSet((eb) => ({ row_count: eb('edge_staged_counts.row_count', '+', inserted) })),
    )
    .execute();
}

async function clear(tx: Tx, lineageId: string): Promise<void> {
  await tx.deleteFrom('edge_staged_rows').where('lineage_id', '=', lineageId).execute();
  await tx.deleteFrom('edge_staged_counts').where('lineage_id', '=', lineageId).execute();
}

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  switch (event.type) {
    case 'LineageRegistered':
      await rememberLineage(tx, IDENTITY, event.data);
      return;
    case 'RowsStaged': {
      const d = event.data;
      await stage(tx, ctx, d.journal_epoch, d.rows, {
        reason: d.reason,
        batch_id: d.batch_id,
        schema_hash: d.schema_hash,
      });
      return;
    }
    case 'MaterializationFailed': {
      // The domain staged the rows the mirror could not write; they wait here like any other.
      const d = event.data;
      if (d.journal_epoch === null || d.rows.length === 0) return;
      await stage(tx, ctx, d.journal_epoch, d.rows, {
        reason: 'materialization_failed',
        batch_id: null,
        schema_hash: null,
      });
      return;
    }
    case 'StagedRowsReleased':
      // Every row staged so far leaves staging: the mirror materializes them.
      await clear(tx, ctx.lineage_id);
      return;
    case 'LineageDeleted':
      await clear(tx, ctx.lineage_id);
      await forgetLineage(tx, IDENTITY, ctx.lineage_id);
      return;
    default:
      return assertNever(event, 'staged_rows event');
  }
}

export function stagedRowsProjection(): Projection<Handled> {
  return {
    name: 'staged_rows',
    // 2: keeps edge_staged_counts (a version bump refolds the projection and fills it).
    version: 2,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_staged_rows').execute();
      await tx.deleteFrom('edge_staged_counts').execute();
      await tx.deleteFrom(IDENTITY).execute();
    },
  };
}
