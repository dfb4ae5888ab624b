import type Database from 'better-sqlite3';

export type GapRecord = {
  table: string;
  epoch: string;
  firstSeq: number;
  lastSeq: number;
  rows: number;
  bytes: number;
  reason: string;
  newEpoch: string | null;
  at: string;
};

/** Journal ranges that never reached the cloud (retention drops, oversize keys). */
export class GapStore {
  constructor(private readonly db: Database.Database) {}

  record(g: GapRecord): void {
    this.db
      .prepare(
        `INSERT INTO gaps (table_name, epoch, first_seq, last_seq, rows, bytes, reason, new_epoch, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(g.table, g.epoch, g.firstSeq, g.lastSeq, g.rows, g.bytes, g.reason, g.newEpoch, g.at);
  }

  all(): GapRecord[] {
    return (
      this.db.prepare('SELECT * FROM gaps ORDER BY id').all() as {
        table_name: string;
        epoch: string;
        first_seq: number;
        last_seq: number;
        rows: number;
        bytes: number;
        reason: string;
        new_epoch: string | null;
        at: string;
      }[]
    ).map((r) => ({
      table: r.table_name,
      epoch: r.epoch,
      firstSeq: r.first_seq,
      lastSeq: r.last_seq,
      rows: r.rows,
      bytes: r.bytes,
      reason: r.reason,
      newEpoch: r.new_epoch,
      at: r.at,
    }));
  }
}
