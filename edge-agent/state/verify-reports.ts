import type Database from 'better-sqlite3';

/**
 * A verify the cloud asked for: first waiting for its digest (taken when every change of the
 * table is in a batch), then waiting until every change through its position is confirmed.
 */
export type VerifyReportRecord = {
  verifyId: string;
  table: string;
  /** The columns the cloud asked to digest. */
  columns: string[];
  /** null until the digest is taken. */
  epoch: string | null;
  throughSeq: number | null;
  /** The exact request published (its request_id included): a re-send is the same message. */
  payload: string | null;
};

export class VerifyReportStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => string,
  ) {}

  /** A verify asked for (a control is handled once: a second delivery changes nothing). */
  add(verifyId: string, table: string, columns: readonly string[]): void {
    this.db
      .prepare(
        `INSERT INTO verify_reports (verify_id, table_name, columns, created_at)
         VALUES (?, ?, ?, ?) ON CONFLICT(verify_id) DO NOTHING`,
      )
      .run(verifyId, table, JSON.stringify(columns), this.now());
  }

  /** The digest of a verify, and the report that carries it. */
  digest(verifyId: string, epoch: string, throughSeq: number, payload: string): void {
    this.db
      .prepare('UPDATE verify_reports SET epoch = ?, through_seq = ?, payload = ? WHERE verify_id = ?')
      .run(epoch, throughSeq, payload, verifyId);
  }

  of(table: string): VerifyReportRecord[] {
    return (
      this.db
        .prepare('SELECT * FROM verify_reports WHERE table_name = ? ORDER BY created_at, verify_id')
        .all(table) as {
        verify_id: string;
        table_name: string;
        columns: string;
        epoch: string | null;
        through_seq: number | null;
        payload: string | null;
      }[]
    ).map((r) => ({
      verifyId: r.verify_id,
      table: r.table_name,
      columns: JSON.parse(r.columns) as string[],
      epoch: r.epoch,
      throughSeq: r.through_seq,
      payload: r.payload,
    }));
  }

  delete(verifyId: string): void {
    this.db.prepare('DELETE FROM verify_reports WHERE verify_id = ?').run(verifyId);
  }
}
