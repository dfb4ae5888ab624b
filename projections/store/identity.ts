import type { LineageEvent } from '../../domain/lineage/events';
import type { Tx } from '../runner/types';
import type { LineageIdentityTable } from './schema';

/** Tables holding a projection's own copy of lineage identities (projections never share tables). */
export type IdentityTableName = 'edge_staged_lineages' | 'edge_segment_lineages' | 'edge_control_lineages';

type Registered = Extract<LineageEvent, { type: 'LineageRegistered' }>['data'];

export const identityOf = (d: Registered): LineageIdentityTable => ({
  lineage_id: d.lineage_id,
  project_id: d.project_id,
  device_id: d.device_id,
  device_name: d.device_name,
  source_table: d.source_table,
  kind: d.kind,
});

export async function rememberLineage(tx: Tx, table: IdentityTableName, d: Registered): Promise<void> {
  await tx
    .insertInto(table)
    .values(identityOf(d))
    .onConflict((oc) => oc.column('lineage_id').doNothing())
    .execute();
}

export async function lineageIdentity(
  tx: Tx,
  table: IdentityTableName,
  lineageId: string,
): Promise<LineageIdentityTable | undefined> {
  return tx.selectFrom(table).selectAll().where('lineage_id', '=', lineageId).executeTakeFirst();
}

export async function forgetLineage(tx: Tx, table: IdentityTableName, lineageId: string): Promise<void> {
  await tx.deleteFrom(table).where('lineage_id', '=', lineageId).execute();
}
