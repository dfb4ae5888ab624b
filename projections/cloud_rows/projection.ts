/**
 * `cloud_rows`: the cloud's row of every key written back to a cloud_authoritative lineage
 * (`edge_cloud_rows`), its version, the state_write that carried it, and what the device
 * confirmed (the highest lkcv its batches reported for the key). The mirror stays what the
 * device holds; this is what the cloud wants it to hold (docs/write-back.md).
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { cloudKey } from '../../domain/lineage/state';
import type { RowChange } from '../../domain/protocol/contracts';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, Projection, Tx } from '../runner/types';

const HANDLES = [
  'LineageAuthoritySet',
  'CloudRowsWritten',
  'ControlIssued',
  'RowsAccepted',
  'RowsStaged',
  'StateWriteConflictDetected',
  'LineageDeleted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

/** Keys per IN list: far below either dialect's parameter limit. */
const CHUNK = 500;

async function confirm(tx: Tx, rows: readonly RowChange[], ctx: ApplyContext): Promise<void> {
  const highest = new Map<string, number>();
  for (const r of rows) {
    if (r.lkcv === undefined) continue;
    const key = cloudKey(r.pk);
    highest.set(key, Math.max(r.lkcv, highest.get(key) ?? 0));
  }
  for (const [key, lkcv] of highest) {
    await tx
      .updateTable('edge_cloud_rows')
      .set({ device_version: lkcv, confirmed_at: ctx.occurred_at })
      .where('lineage_id', '=', ctx.lineage_id)
      .where('pk_key', '=', key)
      .where((eb) => eb.or([eb('device_version', 'is', null), eb('device_version', '<', lkcv)]))
      .execute();
  }
}

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  switch (event.type) {
    case 'LineageAuthoritySet':
      await tx
        .insertInto('edge_cloud_lineages')
        .values({
          lineage_id: ctx.lineage_id,
          authority: event.data.authority,
          last_cloud_version: 0,
          updated_at: ctx.occurred_at,
        })
        .onConflict((oc) =>
          oc
            .column('lineage_id')
            .doUpdateSet({ authority: event.data.authority, updated_at: ctx.occurred_at }),
        )
        .execute();
      return;
    case 'CloudRowsWritten': {
      await tx
        .updateTable('edge_cloud_lineages')
        .set({ last_cloud_version: event.data.cloud_version, updated_at: ctx.occurred_at })
        .where('lineage_id', '=', ctx.lineage_id)
        .execute();
      const rows = event.data.rows.map((r) => ({ ...r, key: cloudKey(r.pk) }));
      for (let i = 0; i < rows.length; i += CHUNK) {
        const chunk = rows.slice(i, i + CHUNK);
        const existing = new Map(
          (
            await tx
              .selectFrom('edge_cloud_rows')
              .select(['pk_key', 'row_values'])
              .where('lineage_id', '=', ctx.lineage_id)
              .where(
                'pk_key',
                'in',
                chunk.map((r) => r.key),
              )
              .execute()
          ).map((r) => [r.pk_key, JSON.parse(r.row_values) as Record<string, unknown>]),
        );
        for (const r of chunk) {
          const values = JSON.stringify({ ...existing.get(r.key), ...r.values });
          await tx
            .insertInto('edge_cloud_rows')
            .values({
              lineage_id: ctx.lineage_id,
              pk_key: r.key,
              pk: JSON.stringify(r.pk),
              row_values: values,
              cloud_version: r.cloud_version,
              control_id: null,
              written_at: ctx.occurred_at,
              device_version: null,
              confirmed_at: null,
              conflicts: 0,
              last_conflict_at: null,
            })
            .onConflict((oc) =>
              oc.columns(['lineage_id', 'pk_key']).doUpdateSet({
                row_values: values,
                cloud_version: r.cloud_version,
                written_at: ctx.occurred_at,
              }),
            )
            .execute();
        }
      }
      return;
    }
    case 'ControlIssued': {
      if (event.data.control_kind !== 'state_write' || !event.data.rows) return;
      for (const r of event.data.rows) {
        await tx
          .updateTable('edge_cloud_rows')
          .set({ control_id: event.data.control_id })
          .where('lineage_id', '=', ctx.lineage_id)
          .where('pk_key', '=', cloudKey(r.pk))
          .where('cloud_version', '=', r.cloud_version)
          .execute();
      }
      return;
    }
    case 'RowsAccepted':
    case 'RowsStaged':
      await confirm(tx, event.data.rows, ctx);
      return;
    case 'StateWriteConflictDetected': {
      const counts = new Map<string, number>();
      for (const c of event.data.conflicts) {
        const key = cloudKey(c.pk);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      for (const [key, n] of counts) {
        await tx
          .updateTable('edge_cloud_rows')
          .set((eb) => ({ conflicts: eb('conflicts', '+', n), last_conflict_at: ctx.occurred_at }))
          .where('lineage_id', '=', ctx.lineage_id)
          .where('pk_key', '=', key)
          .execute();
      }
      return;
    }
    case 'LineageDeleted':
      await tx.deleteFrom('edge_cloud_rows').where('lineage_id', '=', ctx.lineage_id).execute();
      await tx.deleteFrom('edge_cloud_lineages').where('lineage_id', '=', ctx.lineage_id).execute();
      return;
    default:
      return assertNever(event, 'cloud_rows event');
  }
}

export function cloudRowsProjection(): Projection<Handled> {
  return {
    name: 'cloud_rows',
    partitioned: true,
    version: 1,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_cloud_rows').execute();
      await tx.deleteFrom('edge_cloud_lineages').execute();
    },
  };
}
