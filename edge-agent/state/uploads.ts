import type Database from 'better-sqlite3';

/** An upload of the secondary flow (one per table at a time). */
export type UploadRecord = {
  uploadId: string;
  table: string;
  epoch: string;
  firstSeq: number;
  lastSeq: number;
  rowCount: number;
  schemaHash: string;
  sv: number;
  reason: UploadMark['reason'];
  status: 'requesting' | 'uploading' | 'finalizing';
  url: string | null;
  expiresAt: string | null;
  requests: number;
  /** The finalize's request_id: every re-send of the finalize is the same message. */
  finalizeId: string;
};

/**
 * Journal rows of a table that go through the upload flow (a large first-run snapshot, or what
 * follows a retention gap). `throughSeq` null: a resync snapshot is still to be journaled.
 */
export type UploadMark = {
  table: string;
  epoch: string;
  throughSeq: number | null;
  reason: 'snapshot' | 'gap' | 'resync';
};

/** Uploads of the secondary flow in progress, and the ranges marked to go through it. */
export class UploadStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => string,
  ) {}

  get(table: string): UploadRecord | undefined {
    const r = this.db.prepare('SELECT * FROM uploads WHERE table_name = ?').get(table) as
      Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      uploadId: r.upload_id as string,
      table: r.table_name as string,
      epoch: r.epoch as string,
      firstSeq: r.first_seq as number,
      lastSeq: r.last_seq as number,
      rowCount: r.row_count as number,
      schemaHash: r.schema_hash as string,
      sv: r.sv as number,
      reason: r.reason as UploadRecord['reason'],
      status: r.status as UploadRecord['status'],
      url: (r.url as string | null) ?? null,
      expiresAt: (r.expires_at as string | null) ?? null,
      requests: r.requests as number,
      finalizeId: r.finalize_id as string,
    };
  }

  save(u: UploadRecord): void {
    this.db
      .prepare(
        `INSERT INTO uploads (upload_id, table_name, epoch, first_seq, last_seq, row_count, schema_hash, sv,
           reason, status, url, expires_at, requests, finalize_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(upload_id) DO UPDATE SET status = excluded.status, url = excluded.url,
           expires_at = excluded.expires_at, requests = excluded.requests`,
      )
      .run(
        u.uploadId,
        u.table,
        u.epoch,
        u.firstSeq,
        u.lastSeq,
        u.rowCount,
        u.schemaHash,
        u.sv,
        u.reason,
        u.status,
        u.url,
        u.expiresAt,
        u.requests,
        u.finalizeId,
        this.now(),
      );
  }

  delete(uploadId: string): void {
    this.db.prepare('DELETE FROM uploads WHERE upload_id = ?').run(uploadId);
  }

  mark(table: string): UploadMark | undefined {
    const r = this.db.prepare('SELECT * FROM upload_marks WHERE table_name = ?').get(table) as
      | { table_name: string; epoch: string; through_seq: number | null; reason: UploadMark['reason'] }
      | undefined;
    return r
      ? { table: r.table_name, epoch: r.epoch, throughSeq: r.through_seq, reason: r.reason }
      : undefined;
  }

  setMark(m: UploadMark): void {
    this.db
      .prepare(
        `INSERT INTO upload_marks (table_name, epoch, through_seq, reason) VALUES (?, ?, ?, ?)
         ON CONFLICT(table_name) DO UPDATE SET epoch = excluded.epoch, through_seq = excluded.through_seq,
           reason = excluded.reason`,
      )
      .run(m.table, m.epoch, m.throughSeq, m.reason);
  }

  clearMark(table: string): void {
    this.db.prepare('DELETE FROM upload_marks WHERE table_name = ?').run(table);
  }
}
