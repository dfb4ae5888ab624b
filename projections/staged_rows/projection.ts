/**
 * `staged_rows`: the bodies of rows waiting in staging (SPEC §4), so an operator can see what a
 * device sent while its lineage is gated. Rows leave when the domain releases them.
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { RowChange } from '../../domain/protocol/contracts';
import { pkHash } from '../../domain/shared/canonical';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, BatchItem, Projection, Tx } from '../runner/types';
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

type StagedMeta = Pick<EdgeStagedRowsTable, 'reason' | 'batch_id' | 'schema_hash'>;

/** The rows an event stages, or null when it stages none (MaterializationFailed without rows). */
function staging(
  event: Extract<Handled, { type: 'RowsStaged' | 'MaterializationFailed' }>,
): { epoch: string; rows: readonly RowChange[]; meta: StagedMeta } | null {
  const d = event.data;
  if (event.type === 'RowsStaged') {
    return {
      epoch: d.journal_epoch!,
      rows: d.rows,
      meta: { reason: event.data.reason, batch_id: event.data.batch_id, schema_hash: event.data.schema_hash },
    };
  }
  // The domain staged the rows the mirror could not write; they wait here like any other.
  if (d.journal_epoch === null || d.rows.length === 0) return null;
  return {
    epoch: d.journal_epoch,
    rows: d.rows,
    meta: { reason: 'materialization_failed', batch_id: null, schema_hash: null },
  };
}

/**
 * Stage the rows of consecutive staging events (one event or many, several lineages): one
 * multi-row insert per chunk, then each lineage's count once. What applying them one by one does.
 */
async function stage(tx: Tx, items: readonly BatchItem<Handled>[]): Promise<void> {
  const identities = new Map<string, Awaited<ReturnType<typeof lineageIdentity>>>();
  const rows: EdgeStagedRowsTable[] = [];
  for (const { event, ctx } of items) {
    if (event.type !== 'RowsStaged' && event.type !== 'MaterializationFailed') continue;
    const s = staging(event);
    if (!s) continue;
    if (!identities.has(ctx.lineage_id))
      identities.set(ctx.lineage_id, await lineageIdentity(tx, IDENTITY, ctx.lineage_id));
    const l = identities.get(ctx.lineage_id);
    if (!l) continue;
    // Refused changes are never materializable: the decider records them apart (RowsRefused).
    for (const r of s.rows) {
      if (r.op === 'refused') continue;
      rows.push({
        lineage_id: l.lineage_id,
        project_id: l.project_id,
        device_id: l.device_id,
        source_table: l.source_table,
        journal_epoch: s.epoch,
        commit_seq: r.commit_seq,
        op: r.op,
        pk: JSON.stringify(r.pk),
        pk_hash: pkHash(r.pk),
        row: r.row === null ? null : JSON.stringify(r.row),
        ...s.meta,
        staged_at: ctx.occurred_at,
        sweep: r.sweep ? JSON.stringify(r.sweep) : null,
      });
    }
  }
  // Every lineage that staged (even nothing new) has its count row, as one event at a time does.
  const inserted = new Map<string, number>();
  for (const [id, l] of identities) if (l) inserted.set(id, 0);
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const r = await tx
      .insertInto('edge_staged_rows')
      .values(rows.slice(i, i + INSERT_CHUNK))
      // The decider never stages one (epoch, commit_seq) twice; stay idempotent regardless.
      .onConflict((oc) => oc.columns(['lineage_id', 'commit_seq', 'journal_epoch']).doNothing())
      .returning('lineage_id')
      .execute();
    for (const { lineage_id } of r) inserted.set(lineage_id, (inserted.get(lineage_id) ?? 0) + 1);
  }
  for (const [lineage_id, n] of inserted) {
    await tx
      .insertInto('edge_staged_counts')
      .values({ lineage_id, row_count: n })
      .onConflict((oc) =>
        oc
          .column('lineage_id')
          .doUpdateSet((eb) => ({ row_count: eb('edge_staged_counts.row_count', '+', n) })),
      )
      .execute();
  }
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
    case 'RowsStaged':
    case 'MaterializationFailed':
      await stage(tx, [{ event, ctx }]);
      return;
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

const stages = (e: Handled): boolean => e.type === 'RowsStaged' || e.type === 'MaterializationFailed';

/** Consecutive staging events as one set; registrations, releases and deletions in their place. */
async function applyBatch(tx: Tx, items: readonly BatchItem<Handled>[]): Promise<void> {
  let start = 0;
  for (let i = 0; i < items.length; i++) {
    if (stages(items[i]!.event)) continue;
    if (i > start) await stage(tx, items.slice(start, i));
    await apply(tx, items[i]!.event, items[i]!.ctx);
    start = i + 1;
  }
  if (items.length > start) await stage(tx, items.slice(start));
}

export function stagedRowsProjection(): Projection<Handled> {
  return {
    name: 'staged_rows',
    partitioned: true,
    // 2: keeps edge_staged_counts (a version bump refolds the projection and fills it).
    version: 2,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    applyBatch,
    async truncate(tx) {
      await tx.deleteFrom('edge_staged_rows').execute();
      await tx.deleteFrom('edge_staged_counts').execute();
      await tx.deleteFrom(IDENTITY).execute();
    },
  };
}
