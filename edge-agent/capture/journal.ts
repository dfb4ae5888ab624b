import type Database from 'better-sqlite3';
import type { SchemaInfo } from './install';
import { JOURNAL, SCHEMA, SEQ } from './sql';

export type JournalOp = 'I' | 'U' | 'D';

export type JournalEntry = Readonly<{ seq: number; op: JournalOp; sv: number; data: string }>;

export type Counter = Readonly<{ tid: number; name: string; seq: number; epoch: string }>;

export type SchemaVersion = Readonly<SchemaInfo & { sv: number; hash: string }>;

/** Reads and trims `__sluice_journal`. All statements are prepared once. */
export class Journal {
  private readonly read: Database.Statement<[number, number, number], JournalEntry>;
  private readonly readRange: Database.Statement<[number, number, number], JournalEntry>;
  private readonly counterStmt: Database.Statement<[], Counter>;
  private readonly deleteStmt: Database.Statement<[number, number]>;
  private readonly svStmt: Database.Statement<[number], { hash: string; info: string }>;
  private readonly sizeStmt: Database.Statement<[number, number], { rows: number; bytes: number | null }>;
  private readonly svCache = new Map<number, SchemaVersion>();

  constructor(private readonly db: Database.Database) {
    this.read = db.prepare(
      `SELECT seq, op, sv, data FROM ${JOURNAL} WHERE tid = ? AND seq > ? ORDER BY seq LIMIT ?`,
    );
    this.readRange = db.prepare(
      `SELECT seq, op, sv, data FROM ${JOURNAL} WHERE tid = ? AND seq BETWEEN ? AND ? ORDER BY seq`,
    );
    this.counterStmt = db.prepare(`SELECT tid, name, seq, epoch FROM ${SEQ} ORDER BY tid`);
    this.deleteStmt = db.prepare(`DELETE FROM ${JOURNAL} WHERE tid = ? AND seq <= ?`);
    this.svStmt = db.prepare(`SELECT hash, info FROM ${SCHEMA} WHERE sv = ?`);
    this.sizeStmt = db.prepare(
      `SELECT count(*) AS rows, sum(length(data)) + 32 * count(*) AS bytes FROM ${JOURNAL} WHERE tid = ? AND seq > ?`,
    );
  }

  /** Entries after `afterSeq`, oldest first. */
  after(tid: number, afterSeq: number, limit: number): JournalEntry[] {
    return this.read.all(tid, afterSeq, limit);
  }

  range(tid: number, first: number, last: number): JournalEntry[] {
    return this.readRange.all(tid, first, last);
  }

  counters(): Counter[] {
    return this.counterStmt.all();
  }

  schemaVersion(sv: number): SchemaVersion {
    let v = this.svCache.get(sv);
    if (!v) {
      const row = this.svStmt.get(sv);
      if (!row) throw new Error(`schema version ${sv} is missing from ${SCHEMA}`);
      v = { sv, hash: row.hash, ...(JSON.parse(row.info) as SchemaInfo) };
      this.svCache.set(sv, v);
    }
    return v;
  }

  /**
   * The part of [first, last] an upload can carry: from the first entry, up to where the schema
   * version changes (an upload, like a batch, names one schema_hash). With its size.
   */
  uploadPlan(
    tid: number,
    first: number,
    last: number,
  ): { firstSeq: number; lastSeq: number; rows: number; bytes: number; sv: number } | undefined {
    const head = this.db
      .prepare(`SELECT seq, sv FROM ${JOURNAL} WHERE tid = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT 1`)
      .get(tid, first, last) as { seq: number; sv: number } | undefined;
    if (!head) return undefined;
    const cut = this.db
      .prepare(`SELECT min(seq) FROM ${JOURNAL} WHERE tid = ? AND seq > ? AND seq <= ? AND sv != ?`)
      .pluck()
      .get(tid, head.seq, last, head.sv) as number | null;
    const end = cut === null ? last : cut - 1;
    const size = this.db
      .prepare(
        `SELECT count(*) AS rows, max(seq) AS last, sum(length(data)) + 64 * count(*) AS bytes
         FROM ${JOURNAL} WHERE tid = ? AND seq BETWEEN ? AND ?`,
      )
      .get(tid, head.seq, end) as { rows: number; last: number; bytes: number };
    return { firstSeq: head.seq, lastSeq: size.last, rows: size.rows, bytes: size.bytes, sv: head.sv };
  }

  /** Remove confirmed entries. Only ever called with a seq the cloud has confirmed. */
  deleteThrough(tid: number, seq: number): number {
    return this.deleteStmt.run(tid, seq).changes;
  }

  /** Exact size of what is still pending after `afterSeq` (a scan; used sparingly). */
  pendingSize(tid: number, afterSeq: number): { rows: number; bytes: number } {
    const r = this.sizeStmt.get(tid, afterSeq)!;
    return { rows: r.rows, bytes: r.bytes ?? 0 };
  }

  /** The seq below which dropping the oldest entries frees at least `bytes`. */
  seqFreeing(tid: number, afterSeq: number, bytes: number): { lastSeq: number; rows: number; bytes: number } {
    const it = this.db
      .prepare(`SELECT seq, length(data) + 32 AS b FROM ${JOURNAL} WHERE tid = ? AND seq > ? ORDER BY seq`)
      .iterate(tid, afterSeq) as IterableIterator<{ seq: number; b: number }>;
    let freed = 0;
    let rows = 0;
    let lastSeq = afterSeq;
    for (const r of it) {
      freed += r.b;
      rows++;
      lastSeq = r.seq;
      if (freed >= bytes) break;
    }
    return { lastSeq, rows, bytes: freed };
  }

  /**
   * Drop entries through `lastSeq` and start a new journal_epoch whose commit_seq restarts at 1
   * for the entries left. The cloud sees a new epoch, not a silent hole in the old one.
   */
  dropAndRenumber(tid: number, lastSeq: number, newEpoch: string): { dropped: number; kept: number } {
    const tx = this.db.transaction(() => {
      const dropped = this.deleteStmt.run(tid, lastSeq).changes;
      // Two passes through negative numbers: a single `seq - n` update could collide with an
      // entry not yet renumbered, whatever order SQLite visits them in.
      const kept = this.db
        .prepare(`UPDATE ${JOURNAL} SET seq = -(seq - ?) WHERE tid = ? AND seq > ?`)
        .run(lastSeq, tid, lastSeq).changes;
      this.db.prepare(`UPDATE ${JOURNAL} SET seq = -seq WHERE tid = ? AND seq < 0`).run(tid);
      this.db.prepare(`UPDATE ${SEQ} SET seq = seq - ?, epoch = ? WHERE tid = ?`).run(lastSeq, newEpoch, tid);
      return { dropped, kept };
    });
    return tx.immediate();
  }
}
