import type Database from 'better-sqlite3';
import type { RowBatch, WireValue } from '../../domain/protocol/contracts';
import { canonicalJson } from '../../domain/shared/canonical';
import {
  bucketOf,
  encodeSqliteValue,
  normalizeWire,
  type SqliteValue,
} from '../../domain/protocol/wire-values';
import { quoteIdent } from '../capture/sql';

type MirrorRow = { row: Record<string, WireValue>; seq: number; epoch: string };

const key = (pk: Readonly<Record<string, WireValue>>) => {
  const n: Record<string, WireValue> = {};
  for (const [k, v] of Object.entries(pk)) n[k] = normalizeWire(v);
  return canonicalJson(n);
};

/**
 * What a cloud mirror of one table holds after applying row batches the way the design says
 * (docs/exact-replication.md): changes in (epoch, commit_seq) order, each once; a sweep removes
 * the rows of its buckets whose last change is older than its since_commit_seq (or of an older
 * epoch). Refused changes change nothing. Used by tests to compare with the device's table.
 */
export function applyBatches(
  batches: readonly RowBatch[],
  table: string,
): Map<string, Record<string, WireValue>> {
  const seen = new Set<string>();
  const rows = new Map<string, MirrorRow>();
  const changes = batches
    .filter((b) => b.source_table === table)
    .flatMap((b) => b.rows.map((r) => ({ r, epoch: b.journal_epoch })));
  // Epochs are UUIDv7: time-ordered.
  changes.sort((a, b) =>
    a.epoch === b.epoch ? a.r.commit_seq - b.r.commit_seq : a.epoch < b.epoch ? -1 : 1,
  );
  for (const { r, epoch } of changes) {
    const id = `${epoch}:${r.commit_seq}`;
    if (seen.has(id)) continue;
    seen.add(id);
    switch (r.op) {
      case 'insert':
      case 'update':
        rows.set(key(r.pk), { row: r.row!, seq: r.commit_seq, epoch });
        break;
      case 'delete':
        rows.delete(key(r.pk));
        break;
      case 'refused':
        break;
      case 'sweep': {
        const s = r.sweep!;
        for (const [k, m] of rows) {
          const pk = JSON.parse(k) as Record<string, WireValue>;
          if (s.buckets !== null && !s.buckets.includes(bucketOf(pk))) continue;
          if (m.epoch !== epoch || m.seq < s.since_commit_seq) rows.delete(k);
        }
        break;
      }
    }
  }
  return new Map([...rows].map(([k, m]) => [k, normalizeRow(m.row)]));
}

const normalizeRow = (r: Record<string, WireValue>) => {
  const o: Record<string, WireValue> = {};
  for (const [k, v] of Object.entries(r)) o[k] = normalizeWire(v);
  return o;
};

/** The device table as the mirror should hold it: key → row, values in wire form. */
export function deviceRows(
  db: Database.Database,
  table: string,
  pk: readonly string[],
): Map<string, Record<string, WireValue>> {
  const out = new Map<string, Record<string, WireValue>>();
  const rows = db
    .prepare(`SELECT * FROM ${quoteIdent(table)}`)
    .safeIntegers(true)
    .all() as Record<string, SqliteValue>[];
  for (const r of rows) {
    const row: Record<string, WireValue> = {};
    for (const [c, v] of Object.entries(r)) row[c] = encodeSqliteValue(v);
    const k: Record<string, WireValue> = {};
    for (const c of pk) k[c] = row[c] ?? null;
    out.set(key(k), normalizeRow(row));
  }
  return out;
}

/** Change-log entries still waiting for confirmation, over every captured table. */
export function journalBacklog(db: Database.Database): number {
  return journalCounters(db).reduce((n, t) => n + t.pending, 0);
}

/**
 * Per captured table: its change log's largest commit_seq (the log never drops that entry) and
 * the entries still waiting for confirmation (confirmed ones are deleted, or turned into an `X`
 * placeholder when they hold the largest seq).
 */
export function journalCounters(
  db: Database.Database,
): { tid: number; name: string; seq: number; epoch: string; pending: number }[] {
  const regs = db.prepare('SELECT tid, name, epoch FROM __sluice_seq ORDER BY name').all() as {
    tid: number;
    name: string;
    epoch: string;
  }[];
  return regs.map((r) => {
    const c = db
      .prepare(
        `SELECT coalesce(max(seq), 0) AS seq, count(*) FILTER (WHERE op <> 'X') AS pending FROM __sluice_log_${r.tid}`,
      )
      .get() as { seq: number; pending: number };
    return { ...r, ...c };
  });
}

/** A table's change-log figures: its largest commit_seq and its unconfirmed entries. */
export function tableJournal(db: Database.Database, table: string): { seq: number; pending: number } {
  const t = journalCounters(db).find((c) => c.name === table);
  return t ? { seq: t.seq, pending: t.pending } : { seq: 0, pending: 0 };
}

/** Rows in a table's change log (the one with the largest seq is kept after confirmation). */
export function logRows(db: Database.Database, table: string): number {
  const tid = db.prepare('SELECT tid FROM __sluice_seq WHERE name = ?').pluck().get(table) as
    number | undefined;
  if (tid === undefined) return 0;
  return db.prepare(`SELECT count(*) FROM __sluice_log_${tid}`).pluck().get() as number;
}
