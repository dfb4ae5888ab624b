import type Database from 'better-sqlite3';
import type { WireValue } from '../../domain/protocol/contracts';
import { canonicalJson } from '../../domain/shared/canonical';
import type { TableSchema } from '../capture/schema';
import { decodeWireValue } from '../../domain/protocol/wire-values';
import { logTable, quoteIdent, SEQ } from '../capture/sql';

export type StateWriteRow = Readonly<{
  pk: Readonly<Record<string, WireValue>>;
  values: Readonly<Record<string, WireValue>>;
  cloud_version: number;
}>;

/** What a key's cloud version became, and where in the table's journal the write landed. */
export type AppliedVersion = Readonly<{
  pk: string;
  cloudVersion: number;
  /** The table's commit_seq counter just before the write: changes at or below it predate it. */
  fromSeq: number;
  epoch: string | null;
}>;

export type StateWriteResult = Readonly<{ applied: AppliedVersion[]; stale: number }>;

export class StateWriteError extends Error {
  override readonly name = 'StateWriteError';
}

/**
 * Apply a cloud state_write to the application's table: update the row with that key, or
 * insert it, all rows in one transaction (a bad row rolls the whole control back).
 *
 * The write goes through the table's capture triggers on purpose: each applied key is journaled
 * once, as the row now stands, and the next batch carries it with `lkcv` equal to its
 * cloud_version. That row is the device's confirmation, not a device change — the cloud knows
 * its own version — and it is what brings the mirror to the cloud's row. The counter value read
 * before the write (`fromSeq`) is what lets a change journaled earlier still report the version
 * it was made under (see CloudVersionStore.lookup).
 *
 * A row older than the version the agent already holds for its key (a redelivered older
 * control) is skipped: the device never goes back to an older cloud row.
 */
export function applyStateWrite(
  db: Database.Database,
  table: TableSchema,
  rows: readonly StateWriteRow[],
  known: (pkCanonical: string) => number | undefined = () => undefined,
): StateWriteResult {
  const columns = new Set(table.columns);
  const keySet = new Set(table.pk);
  for (const [i, r] of rows.entries()) {
    const pkCols = Object.keys(r.pk);
    if (pkCols.length !== table.pk.length || !pkCols.every((c) => keySet.has(c))) {
      throw new StateWriteError(
        `rows[${i}].pk names ${pkCols.join(', ') || 'nothing'}; the key of ${table.name} is ${table.pk.join(', ')}`,
      );
    }
    const unknown = Object.keys(r.values).filter((c) => !columns.has(c));
    if (unknown.length > 0) {
      throw new StateWriteError(`rows[${i}].values names unknown column(s) ${unknown.join(', ')}`);
    }
  }
  const t = quoteIdent(table.name);
  const where = table.pk.map((c) => `${quoteIdent(c)} = ?`).join(' AND ');
  // Touching the first key column fires the update trigger, so a write of no values still
  // journals its confirmation.
  const touch = `${quoteIdent(table.pk[0]!)} = ${quoteIdent(table.pk[0]!)}`;
  const run = db.transaction((): StateWriteResult => {
    const reg = db.prepare(`SELECT tid, epoch FROM ${SEQ} WHERE name = ?`).get(table.name) as
      { tid: number; epoch: string } | undefined;
    const counter = reg
      ? {
          epoch: reg.epoch,
          seq: db
            .prepare(`SELECT coalesce(max(seq), 0) FROM ${logTable(reg.tid)}`)
            .pluck()
            .get() as number,
        }
      : undefined;
    const applied: AppliedVersion[] = [];
    let stale = 0;
    for (const r of rows) {
      const pk = canonicalJson(r.pk);
      const held = known(pk);
      if (held !== undefined && r.cloud_version < held) {
        stale++;
        continue;
      }
      const keyVals = table.pk.map((c) => decodeWireValue(r.pk[c] ?? null));
      const setCols = Object.keys(r.values).filter((c) => !keySet.has(c));
      const sets = setCols.length > 0 ? setCols.map((c) => `${quoteIdent(c)} = ?`).join(', ') : touch;
      const changed = db
        .prepare(`UPDATE ${t} SET ${sets} WHERE ${where}`)
        .run(...setCols.map((c) => decodeWireValue(r.values[c]!)), ...keyVals).changes;
      if (changed === 0) {
        const cols = [...table.pk, ...setCols];
        db.prepare(
          `INSERT INTO ${t} (${cols.map(quoteIdent).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
        ).run(...keyVals, ...setCols.map((c) => decodeWireValue(r.values[c]!)));
      }
      applied.push({
        pk,
        cloudVersion: r.cloud_version,
        fromSeq: counter?.seq ?? 0,
        epoch: counter?.epoch ?? null,
      });
    }
    return { applied, stale };
  });
  return run.immediate();
}
