/**
 * Coalesced mirror tables (SPEC §4.6): one table per (scope, source table) holding the rows of
 * every device whose lineage took a registry approval, keyed by (device_id, source key).
 *
 * - `edge_mirror_coalesced_tables`: the physical tables, a generation per incompatible schema.
 * - `edge_mirror_coalesced_entries`: registry entry → table, with the columns its approval binds.
 *   Entries of one table whose key and column types agree share it (new columns are added).
 * - `edge_mirror_coalesced_members`: lineage → entry and table.
 */
import type { LineageEvent } from '../../domain/lineage/events';
import type { ApplyContext, Log, Tx } from '../runner/types';
import { coalescedTableName, quoteIdent } from '../store/identifiers';
import type { MaterializedLineageTable } from '../store/schema';
import { keyColumns, type MirrorColumn, planTable, SYSTEM_COLUMNS } from './columns';
import { addMirrorColumns, createMirrorTable, dropTable, withSavepoint } from './ddl';
import { columnsOf } from './registry';
import type { MirrorTarget } from './write';

type RegistryApproved = Extract<LineageEvent, { type: 'SchemaApprovedByRegistry' }>['data'];

/** The coalesced table a lineage writes to, if it is a member of one. */
export async function coalescedTarget(
  tx: Tx,
  l: MaterializedLineageTable,
): Promise<MirrorTarget | undefined> {
  const m = await tx
    .selectFrom('edge_mirror_coalesced_members as m')
    .innerJoin('edge_mirror_coalesced_entries as e', 'e.registry_id', 'm.registry_id')
    .select(['m.table_name', 'e.columns'])
    .where('m.lineage_id', '=', l.lineage_id)
    .executeTakeFirst();
  if (!m) return undefined;
  return {
    lineage_id: l.lineage_id,
    device_id: l.device_id,
    table: m.table_name,
    columns: JSON.parse(m.columns) as MirrorColumn[],
    coalesced: true,
  };
}

async function nameTaken(tx: Tx, name: string): Promise<boolean> {
  const a = await tx
    .selectFrom('edge_mirror_coalesced_tables')
    .select('table_name')
    .where('table_name', '=', name)
    .executeTakeFirst();
  if (a) return true;
  const b = await tx
    .selectFrom('edge_mirror_tables')
    .select('table_name')
    .where('table_name', '=', name)
    .executeTakeFirst();
  return b !== undefined;
}

/** The entry's table: the group's latest when compatible (columns added), else a new generation. */
async function provisionEntry(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  d: RegistryApproved,
  log: Log,
): Promise<{ table_name: string; columns: MirrorColumn[] } | undefined> {
  const known = await tx
    .selectFrom('edge_mirror_coalesced_entries')
    .selectAll()
    .where('registry_id', '=', d.registry_id)
    .executeTakeFirst();
  if (known) return { table_name: known.table_name, columns: JSON.parse(known.columns) as MirrorColumn[] };
  const group = await tx
    .selectFrom('edge_mirror_coalesced_tables')
    .selectAll()
    .where('project_id', '=', l.project_id)
    .where('scope', '=', d.scope)
    .where('scope_id', '=', d.scope_id)
    .where('source_table', '=', l.source_table)
    .orderBy('generation', 'desc')
    .executeTakeFirst();
  const plan = planTable(d.bindings, group ? (JSON.parse(group.columns) as MirrorColumn[]) : null);
  if (plan.kind === 'no_key') {
    log.info({ registry_id: d.registry_id, why: plan.why }, 'coalesced mirror table not provisioned');
    return undefined;
  }
  let table: string;
  if (plan.kind === 'alter' && group) {
    await addMirrorColumns(tx, ctx.dialect, group.table_name, plan.added);
    await tx
      .updateTable('edge_mirror_coalesced_tables')
      .set({
        columns: JSON.stringify(plan.columns.map((c) => ({ ...c, bound: false }))),
        updated_at: ctx.occurred_at,
      })
      .where('table_name', '=', group.table_name)
      .execute();
    table = group.table_name;
  } else {
    const generation = (group?.generation ?? 0) + 1;
    for (let attempt = 0; ; attempt++) {
      table = coalescedTableName(
        d.scope,
        d.scope_id,
        l.source_table,
        generation,
        attempt === 0 ? '' : `${d.registry_id}:${attempt}`,
      );
      if (!(await nameTaken(tx, table))) break;
    }
    await createMirrorTable(tx, ctx.dialect, table, plan.columns, true);
    await tx
      .insertInto('edge_mirror_coalesced_tables')
      .values({
        table_name: table,
        project_id: l.project_id,
        scope: d.scope,
        scope_id: d.scope_id,
        source_table: l.source_table,
        generation,
        columns: JSON.stringify(plan.columns.map((c) => ({ ...c, bound: false }))),
        created_at: ctx.occurred_at,
        updated_at: ctx.occurred_at,
      })
      .execute();
  }
  const columns = [...plan.columns];
  await tx
    .insertInto('edge_mirror_coalesced_entries')
    .values({
      registry_id: d.registry_id,
      table_name: table,
      project_id: l.project_id,
      schema_hash: d.schema_hash,
      columns: JSON.stringify(columns),
      created_at: ctx.occurred_at,
    })
    .execute();
  return { table_name: table, columns };
}

/**
 * Copy a lineage's device-scoped mirror rows into the coalesced table (the project switched its
 * coalescing mode), then drop its device mirror tables. Columns are matched by source column: the same
 * schema hash means the same source columns, whatever each approval named them. Rows keep their
 * position (commit_seq, epoch ordinal), so later changes still only move forward.
 */
async function consolidate(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  into: { table_name: string; columns: readonly MirrorColumn[] },
  log: Log,
): Promise<void> {
  const tables = await tx
    .selectFrom('edge_mirror_tables')
    .selectAll()
    .where('lineage_id', '=', l.lineage_id)
    .execute();
  const current = tables.find((t) => t.status === 'current');
  if (current) {
    const from = columnsOf(current).filter((c) => c.bound);
    const pairs = into.columns
      .filter((c) => c.bound)
      .flatMap((c) => {
        const src = from.find((f) => f.source === c.source && f.affinity === c.affinity);
        return src ? [[c, src] as const] : [];
      });
    const keysMapped = keyColumns(into.columns.filter((c) => c.bound)).every((k) =>
      pairs.some(([c]) => c === k),
    );
    if (!keysMapped) {
      log.warn(
        { lineage_id: l.lineage_id, from: current.table_name, into: into.table_name },
        'device mirror not consolidated: its key columns do not match the coalesced table; it is kept',
      );
      return;
    }
    const system = SYSTEM_COLUMNS.map((c) => quoteIdent(c));
    const target = [...pairs.map(([c]) => quoteIdent(c.name)), ...system];
    const source = [...pairs.map(([, f]) => quoteIdent(f.name)), ...system];
    const conflict = [
      '"device_id"',
      ...keyColumns(into.columns.filter((c) => c.bound)).map((c) => quoteIdent(c.name)),
    ];
    await ctx.dialect.exec(
      tx,
      `INSERT INTO ${quoteIdent(into.table_name)} (${target.join(', ')}) ` +
        // `WHERE true`: SQLite cannot tell an upsert's ON CONFLICT from a join's ON without it.
        `SELECT ${source.join(', ')} FROM ${quoteIdent(current.table_name)} WHERE true ` +
        `ON CONFLICT (${conflict.join(', ')}) DO NOTHING`,
      [],
    );
  }
  for (const t of tables) await dropTable(tx, ctx.dialect, t.table_name);
  await tx.deleteFrom('edge_mirror_tables').where('lineage_id', '=', l.lineage_id).execute();
}

/** SchemaApprovedByRegistry: make the lineage a member of its entry's coalesced table. */
export async function joinCoalesced(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  d: RegistryApproved,
  log: Log,
): Promise<void> {
  await withSavepoint(tx, ctx.dialect, 'sluice_mirror_coalesce', async () => {
    const entry = await provisionEntry(tx, ctx, l, d, log);
    if (!entry) return;
    const before = await tx
      .selectFrom('edge_mirror_coalesced_members')
      .select('table_name')
      .where('lineage_id', '=', l.lineage_id)
      .executeTakeFirst();
    if (before && before.table_name !== entry.table_name) {
      // A new generation: tombstones belong to the old table's rows.
      await tx.deleteFrom('edge_mirror_tombstones').where('lineage_id', '=', l.lineage_id).execute();
    }
    await tx
      .insertInto('edge_mirror_coalesced_members')
      .values({
        lineage_id: l.lineage_id,
        registry_id: d.registry_id,
        table_name: entry.table_name,
        project_id: l.project_id,
        device_id: l.device_id,
        joined_at: ctx.occurred_at,
      })
      .onConflict((oc) =>
        oc.column('lineage_id').doUpdateSet({ registry_id: d.registry_id, table_name: entry.table_name }),
      )
      .execute();
    await consolidate(tx, ctx, l, entry, log);
  });
}

/** A device-scoped approval after coalescing (the mode was switched back): the lineage leaves. */
export async function leaveCoalesced(tx: Tx, lineageId: string): Promise<void> {
  await tx.deleteFrom('edge_mirror_coalesced_members').where('lineage_id', '=', lineageId).execute();
}

/** LineageDeleted: the device's rows leave the coalesced table with the lineage. */
export async function forgetCoalesced(tx: Tx, ctx: ApplyContext, l: MaterializedLineageTable): Promise<void> {
  const m = await tx
    .selectFrom('edge_mirror_coalesced_members')
    .select('table_name')
    .where('lineage_id', '=', l.lineage_id)
    .executeTakeFirst();
  if (!m) return;
  await ctx.dialect.exec(
    tx,
    `DELETE FROM ${quoteIdent(m.table_name)} WHERE "device_id" = ${ctx.dialect.placeholder(1)}`,
    [l.device_id],
  );
  await leaveCoalesced(tx, l.lineage_id);
}

export async function truncateCoalesced(tx: Tx, dialect: ApplyContext['dialect']): Promise<void> {
  const tables = await tx.selectFrom('edge_mirror_coalesced_tables').select('table_name').execute();
  for (const t of tables) await dropTable(tx, dialect, t.table_name);
  for (const t of [
    'edge_mirror_coalesced_members',
    'edge_mirror_coalesced_entries',
    'edge_mirror_coalesced_tables',
  ] as const) {
    await tx.deleteFrom(t).execute();
  }
}
