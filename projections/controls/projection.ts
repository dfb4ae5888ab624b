/**
 * `controls`: downlink controls the domain issued (pause_lineage, resume_lineage, …) and whether
 * the device acknowledged them (`edge_pending_controls`, SPEC §4 "Controls are domain facts").
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, Projection, Tx } from '../runner/types';
import { forgetLineage, lineageIdentity, rememberLineage } from '../store/identity';

const HANDLES = [
  'LineageRegistered',
  'ControlIssued',
  'ControlDelivered',
  'ControlAcknowledged',
  'LineageDeleted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

const IDENTITY = 'edge_control_lineages';

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  switch (event.type) {
    case 'LineageRegistered':
      await rememberLineage(tx, IDENTITY, event.data);
      return;
    case 'ControlIssued': {
      const l = await lineageIdentity(tx, IDENTITY, ctx.lineage_id);
      if (!l) return;
      const d = event.data;
      await tx
        .insertInto('edge_pending_controls')
        .values({
          control_id: d.control_id,
          lineage_id: l.lineage_id,
          project_id: l.project_id,
          device_id: l.device_id,
          device_name: l.device_name,
          source_table: d.source_table,
          control_kind: d.control_kind,
          server_watermark: d.server_watermark,
          reason: d.reason,
          status: 'pending',
          deliveries: 0,
          issued_at: d.issued_at,
          last_delivered_at: null,
          acknowledged_at: null,
        })
        .onConflict((oc) => oc.column('control_id').doNothing())
        .execute();
      return;
    }
    case 'ControlDelivered':
      await tx
        .updateTable('edge_pending_controls')
        .set((eb) => ({ deliveries: eb('deliveries', '+', 1), last_delivered_at: event.data.delivered_at }))
        .where('control_id', '=', event.data.control_id)
        .execute();
      return;
    case 'ControlAcknowledged':
      await tx
        .updateTable('edge_pending_controls')
        .set({ status: 'acknowledged', acknowledged_at: event.data.acknowledged_at })
        .where('control_id', '=', event.data.control_id)
        .execute();
      return;
    case 'LineageDeleted':
      // A deleted lineage's controls will never be delivered again.
      await tx.deleteFrom('edge_pending_controls').where('lineage_id', '=', ctx.lineage_id).execute();
      await forgetLineage(tx, IDENTITY, ctx.lineage_id);
      return;
    default:
      return assertNever(event, 'controls event');
  }
}

export function controlsProjection(): Projection<Handled> {
  return {
    name: 'controls',
    version: 1,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_pending_controls').execute();
      await tx.deleteFrom(IDENTITY).execute();
    },
  };
}
