import type Database from 'better-sqlite3';
import type { WireValue } from '../../domain/protocol/contracts';
import { canonicalJson } from '../../domain/shared/canonical';
import type { TableSchema } from '../capture/schema';
import { APPLYING, quoteIdent } from '../capture/sql';
import { decodeWireValue } from '../capture/values';

export type StateWriteRow = Readonly<{
  pk: Readonly<Record<string, WireValue>>;
  values: Readonly<Record<string, WireValue>>;
  cloud_version: number;
}>;

export class StateWriteError extends Error {
  override readonly name = 'StateWriteError';
}

/**
 * Apply a cloud state_write to the application's table: update the row with that key, or
 * insert it. Runs in one transaction with `__sluice_applying` set, so the capture triggers stay
 * quiet: these rows came from the cloud and must not travel back as device changes.
 * All rows or none: a bad row rolls the whole control back. A row whose `cloud_version` is not
 * newer than the one this device already holds for that key (`heldVersion`) is skipped: a late or
 * replayed state_write never rolls a row back.
 */
export function applyStateWrite(
  db: Database.Database,
  table: TableSchema,
  all: readonly StateWriteRow[],
  heldVersion?: (pk: string) => number | undefined,
): { pk: string; cloudVersion: number }[] {
  const rows = heldVersion
    ? all.filter((r) => {
        const held = heldVersion(canonicalJson(r.pk));
        return held === undefined || r.cloud_version > held;
      })
    : all;
  const known = new Set(table.columns);
  const keySet = new Set(table.pk);
  for (const [i, r] of rows.entries()) {
    const pkCols = Object.keys(r.pk);
    if (pkCols.length !== table.pk.length || !pkCols.every((c) => keySet.has(c))) {
      throw new StateWriteError(
        `rows[${i}].pk names ${pkCols.join(', ') || 'nothing'}; the key of ${table.name} is ${table.pk.join(', ')}`,
      );
    }
    const unknown = Object.keys(r.values).filter((c) => !known.has(c));
    if (unknown.length > 0) {
      throw new StateWriteError(`rows[${i}].values names unknown column(s) ${unknown.join(', ')}`);
    }
  }
  const t = quoteIdent(table.name);
  const where = table.pk.map((c) => `${quoteIdent(c)} = ?`).join(' AND ');
  const run = db.transaction(() => {
    db.prepare(`INSERT INTO ${APPLYING} (flag) VALUES (1)`).run();
    try {
      for (const r of rows) {
        const keyVals = table.pk.map((c) => decodeWireValue(r.pk[c] ?? null));
        const setCols = Object.keys(r.values).filter((c) => !keySet.has(c));
        let changed = 0;
        if (setCols.length > 0) {
          changed = db
            .prepare(
              `UPDATE ${t} SET ${setCols.map((c) => `${quoteIdent(c)} = ?`).join(', ')} WHERE ${where}`,
            )
            .run(...setCols.map((c) => decodeWireValue(r.values[c]!)), ...keyVals).changes;
        } else {
          changed = db.prepare(`SELECT 1 FROM ${t} WHERE ${where}`).get(...keyVals) ? 1 : 0;
        }
        if (changed === 0) {
          const cols = [...table.pk, ...setCols];
          db.prepare(
            `INSERT INTO ${t} (${cols.map(quoteIdent).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
          ).run(...keyVals, ...setCols.map((c) => decodeWireValue(r.values[c]!)));
        }
      }
    } finally {
      db.prepare(`DELETE FROM ${APPLYING}`).run();
    }
  });
  run.immediate();
  return rows.map((r) => ({ pk: canonicalJson(r.pk), cloudVersion: r.cloud_version }));
}
