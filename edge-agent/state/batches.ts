import type Database from 'better-sqlite3';
import type { TelemetryCursor } from './tables';

export type InflightRecord = {
  batchId: string;
  table: string;
  kind: 'rows' | 'telemetry';
  epoch: string | null;
  firstSeq: number | null;
  lastSeq: number | null;
  withSchema: boolean;
  batchSeq: number | null;
  /** Telemetry: the batch's end cursor and its exact payload (the rows may be gone from the table). */
  endCursor: TelemetryCursor | null;
  payload: string | null;
};

type InflightRow = {
  batch_id: string;
  table_name: string;
  kind: 'rows' | 'telemetry';
  epoch: string | null;
  first_seq: number | null;
  last_seq: number | null;
  with_schema: number;
  batch_seq: number | null;
  end_cursor: string | null;
  payload: string | null;
};

const toInflight = (r: InflightRow): InflightRecord => ({
  batchId: r.batch_id,
  table: r.table_name,
  kind: r.kind,
  epoch: r.epoch,
  firstSeq: r.first_seq,
  lastSeq: r.last_seq,
  withSchema: r.with_schema === 1,
  batchSeq: r.batch_seq,
  endCursor: r.end_cursor ? (JSON.parse(r.end_cursor) as TelemetryCursor) : null,
  payload: r.payload,
});

/**
 * Batches in flight (`inflight`) and the cursors they move (`tables`). Every write that moves a
 * cursor happens in one transaction with the in-flight bookkeeping it depends on, so a crash
 * leaves either the old or the new position, never a mix.
 */
export class BatchStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => string,
  ) {}

  inflight(table?: string): InflightRecord[] {
    const rows = (
      table
        ? this.db.prepare('SELECT * FROM inflight WHERE table_name = ? ORDER BY rowid').all(table)
        : this.db.prepare('SELECT * FROM inflight ORDER BY rowid').all()
    ) as InflightRow[];
    return rows.map(toInflight);
  }

  /** The journal was (re)initialised under a new epoch: the old cursor means nothing there. */
  resetEpoch(name: string, epoch: string): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE tables SET epoch = ?, confirmed_seq = 0, updated_at = ? WHERE name = ?')
        .run(epoch, this.now(), name);
      this.db.prepare("DELETE FROM inflight WHERE table_name = ? AND kind = 'rows'").run(name);
    })();
  }

  /**
   * Record a batch, with its exact payload, before it is published: a re-send after a receipt
   * timeout or a restart carries the same batch_id with the same bytes (the values were read
   * from the table, which may have changed since).
   */
  recordRowBatch(rec: {
    batchId: string;
    table: string;
    epoch: string;
    firstSeq: number;
    lastSeq: number;
    withSchema: boolean;
    hash: string;
    payload: string;
  }): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO inflight (batch_id, table_name, kind, epoch, first_seq, last_seq, with_schema, payload, created_at)
           VALUES (?, ?, 'rows', ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          rec.batchId,
          rec.table,
          rec.epoch,
          rec.firstSeq,
          rec.lastSeq,
          rec.withSchema ? 1 : 0,
          rec.payload,
          this.now(),
        );
      if (rec.withSchema) {
        this.db
          .prepare('UPDATE tables SET announced_hash = ?, announced_epoch = ? WHERE name = ?')
          .run(rec.hash, rec.epoch, rec.table);
      }
    })();
  }

  /** Assign the next batch_seq and record the telemetry batch with its payload, atomically. */
  recordTelemetryBatch(rec: {
    batchId: string;
    table: string;
    batchSeq: number;
    endCursor: TelemetryCursor;
    payload: string;
    withSchema: boolean;
    hash: string;
  }): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO inflight (batch_id, table_name, kind, batch_seq, end_cursor, payload, with_schema, created_at)
           VALUES (?, ?, 'telemetry', ?, ?, ?, ?, ?)`,
        )
        .run(
          rec.batchId,
          rec.table,
          rec.batchSeq,
          JSON.stringify(rec.endCursor),
          rec.payload,
          rec.withSchema ? 1 : 0,
          this.now(),
        );
      this.db
        .prepare(
          `UPDATE tables SET batch_seq = ?, updated_at = ?${rec.withSchema ? ', announced_hash = ?' : ''} WHERE name = ?`,
        )
        .run(...[rec.batchSeq, this.now(), ...(rec.withSchema ? [rec.hash] : []), rec.table]);
    })();
  }

  /** Confirmed batches leave the window and move the cursor (rows) in one transaction. */
  confirmRows(table: string, confirmedSeq: number, batchIds: readonly string[]): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE tables SET confirmed_seq = max(confirmed_seq, ?), updated_at = ? WHERE name = ?')
        .run(confirmedSeq, this.now(), table);
      const del = this.db.prepare('DELETE FROM inflight WHERE batch_id = ?');
      for (const id of batchIds) del.run(id);
    })();
  }

  confirmTelemetry(table: string, cursor: TelemetryCursor, batchIds: readonly string[]): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE tables SET cursor = ?, updated_at = ? WHERE name = ?')
        .run(JSON.stringify(cursor), this.now(), table);
      const del = this.db.prepare('DELETE FROM inflight WHERE batch_id = ?');
      for (const id of batchIds) del.run(id);
    })();
  }

  drop(batchIds: readonly string[]): void {
    const del = this.db.prepare('DELETE FROM inflight WHERE batch_id = ?');
    this.db.transaction(() => batchIds.forEach((id) => del.run(id)))();
  }
}
