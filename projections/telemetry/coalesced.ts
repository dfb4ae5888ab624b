/**
 * Coalesced telemetry tables (docs/telemetry.md): every lineage that took a registry entry's
 * approval writes into one table of its (scope, source table), keyed by (device, time). Entries
 * of one table share it; a new entry only adds the columns it binds.
 */
import type { LineageEvent } from '../../domain/lineage/events';
import type { ApplyContext, Tx } from '../runner/types';
import type { EdgeTsLineagesTable } from '../store/schema';
import type { MirrorColumn } from '../mirror/columns';
import {
  addTelemetryColumns,
  coalescedTelemetryTableName,
  createTelemetryTable,
  planColumns,
} from './tables';

type RegistryApproved = Extract<LineageEvent, { type: 'SchemaApprovedByRegistry' }>['data'];

/** The coalesced table of (project, scope, table); a name held by another scope or table gets a salt. */
async function tableOf(tx: Tx, l: EdgeTsLineagesTable, d: RegistryApproved) {
  for (let attempt = 0; ; attempt++) {
    const name = coalescedTelemetryTableName(
      d.scope,
      d.scope_id,
      l.source_table,
      attempt === 0 ? '' : `${d.scope_id}:${attempt}`,
    );
    const row = await tx
      .selectFrom('edge_ts_coalesced_tables')
      .selectAll()
      .where('table_name', '=', name)
      .executeTakeFirst();
    if (!row) return { name, row: undefined };
    if (
      row.project_id === l.project_id &&
      row.scope === d.scope &&
      row.scope_id === d.scope_id &&
      row.source_table === l.source_table
    ) {
      return { name, row };
    }
  }
}

/** SchemaApprovedByRegistry: the lineage writes its entry's columns into the scope's table. */
export async function provisionCoalesced(
  tx: Tx,
  ctx: ApplyContext,
  l: EdgeTsLineagesTable,
  d: RegistryApproved,
): Promise<void> {
  const { name, row } = await tableOf(tx, l, d);
  const plan = planColumns(d.bindings, row ? (JSON.parse(row.columns) as MirrorColumn[]) : []);
  if (!row) {
    await createTelemetryTable(tx, ctx.dialect, name, plan.columns, true);
    await tx
      .insertInto('edge_ts_coalesced_tables')
      .values({
        table_name: name,
        project_id: l.project_id,
        scope: d.scope,
        scope_id: d.scope_id,
        source_table: l.source_table,
        columns: JSON.stringify(plan.columns),
      })
      .execute();
  } else if (plan.added.length > 0) {
    await addTelemetryColumns(tx, ctx.dialect, name, plan.added);
    await tx
      .updateTable('edge_ts_coalesced_tables')
      .set({ columns: JSON.stringify(plan.columns) })
      .where('table_name', '=', name)
      .execute();
  }
  await tx
    .updateTable('edge_ts_lineages')
    .set({ table_name: name, schema_hash: d.schema_hash, columns: JSON.stringify(plan.columns) })
    .where('lineage_id', '=', l.lineage_id)
    .execute();
}

export async function isCoalescedTable(tx: Tx, table: string | null): Promise<boolean> {
  if (table === null) return false;
  const row = await tx
    .selectFrom('edge_ts_coalesced_tables')
    .select('table_name')
    .where('table_name', '=', table)
    .executeTakeFirst();
  return row !== undefined;
}
