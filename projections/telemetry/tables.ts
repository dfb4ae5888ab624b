/**
 * Telemetry table shapes. Every table has `device_id`, `event_ts` (as the device sent it),
 * `event_ms` (its instant in epoch milliseconds: what time ranges, order and buckets use, the
 * same on both stores), `row_id`, the batch position (`batch_seq`, `batch_row`) and one column
 * per mirrored or mapped field. A device telemetry table is keyed by the batch position; a
 * coalesced table (`edge_ts_p…` / `edge_ts_f…`) by (device, time, batch position).
 */
import type { ColumnBinding } from '../../domain/lineage/events';
import type { Tx } from '../runner/types';
import type { SqlDialect } from '../store/dialect';
import { derivedTableName, device8, physicalColumnName, quoteIdent, shortHash } from '../store/identifiers';
import type { MirrorColumn } from '../mirror/columns';

export const SYSTEM = ['device_id', 'event_ts', 'event_ms', 'row_id', 'batch_seq', 'batch_row'] as const;
const FIELD_ACTIONS = new Set<ColumnBinding['action']>(['mirror', 'map', 'auto_create_and_map']);

/** `edge_ts_p{project8}_{table}` / `edge_ts_f{fleet8}_{table}`, named like coalesced mirror tables. */
export function coalescedTelemetryTableName(
  scope: 'project' | 'fleet',
  scopeId: string,
  sourceTable: string,
  salt = '',
): string {
  return derivedTableName(
    `edge_ts_${scope === 'project' ? 'p' : 'f'}${device8(scopeId)}_`,
    sourceTable,
    salt,
  );
}

/** Columns after an approval: existing ones kept (unbound unless approved again), new ones added. */
export function planColumns(bindings: readonly ColumnBinding[], existing: readonly MirrorColumn[]) {
  const taken = new Set<string>([...SYSTEM, ...existing.map((c) => c.name.toLowerCase())]);
  const next = new Map(existing.map((c) => [`${c.target}\u0000${c.affinity}`, { ...c, bound: false }]));
  const added: MirrorColumn[] = [];
  for (const b of bindings) {
    if (!FIELD_ACTIONS.has(b.action) || b.target === null) continue;
    const id = `${b.target}\u0000${b.affinity}`;
    const old = next.get(id);
    if (old) {
      next.set(id, { ...old, source: b.column, bound: true });
      continue;
    }
    // Same name, new type: a separate column, so old values keep their type.
    const wanted = existing.some((c) => c.target === b.target)
      ? `${b.target}_${b.affinity.toLowerCase()}`
      : b.target;
    const name = physicalColumnName(wanted, taken);
    taken.add(name.toLowerCase());
    const col: MirrorColumn = {
      source: b.column,
      target: b.target,
      name,
      affinity: b.affinity,
      key: 0,
      bound: true,
    };
    added.push(col);
    next.set(id, col);
  }
  return { columns: [...next.values()], added };
}

export async function createTelemetryTable(
  tx: Tx,
  dialect: SqlDialect,
  table: string,
  columns: readonly MirrorColumn[],
  coalesced: boolean,
): Promise<void> {
  const key = coalesced ? '"device_id", "event_ms", "batch_seq", "batch_row"' : '"batch_seq", "batch_row"';
  const defs = [
    `"device_id" ${dialect.columnType('TEXT')} NOT NULL`,
    `"event_ts" ${dialect.columnType('TEXT')} NOT NULL`,
    `"event_ms" ${dialect.columnType('INTEGER')} NOT NULL`,
    `"row_id" ${dialect.columnType('TEXT')}`,
    `"batch_seq" ${dialect.columnType('INTEGER')} NOT NULL`,
    `"batch_row" ${dialect.columnType('INTEGER')} NOT NULL`,
    ...columns.map((c) => `${quoteIdent(c.name)} ${dialect.columnType(c.affinity)}`),
    `PRIMARY KEY (${key})`,
  ];
  await dialect.exec(tx, `CREATE TABLE ${quoteIdent(table)} (${defs.join(', ')})`, []);
  // Time ranges are the reads: an index on the instant (the coalesced key leads with the device).
  const index = quoteIdent(`edge_ts_ix_${shortHash(table, 16)}`);
  await dialect.exec(tx, `CREATE INDEX ${index} ON ${quoteIdent(table)} ("event_ms")`, []);
}

export async function addTelemetryColumns(
  tx: Tx,
  dialect: SqlDialect,
  table: string,
  added: readonly MirrorColumn[],
): Promise<void> {
  for (const c of added) {
    await dialect.exec(
      tx,
      `ALTER TABLE ${quoteIdent(table)} ADD COLUMN ${quoteIdent(c.name)} ${dialect.columnType(c.affinity)}`,
      [],
    );
  }
}
