import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** Per-table progress (SPEC §3 "state.db holds per table"). */
export type TableState = {
  name: string;
  strategy: 'rows' | 'telemetry';
  epoch: string | null;
  /** Rows: last commit_seq the cloud confirmed (receipt or PUBACK); journal rows up to it are gone. */
  confirmedSeq: number;
  schemaHash: string | null;
  /** Hash and epoch whose schema_columns already went out in a batch. */
  announcedHash: string | null;
  announcedEpoch: string | null;
  paused: boolean;
  /** Epoch current when the pause arrived: the watermark is a commit_seq of that epoch. */
  pauseEpoch: string | null;
  serverWatermark: number | null;
  /** Telemetry: last batch_seq assigned, and the confirmed cursor. */
  batchSeq: number;
  cursor: TelemetryCursor | null;
};

export type TelemetryCursor = { ts: string | number; rowid: number };

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

export type ControlRecord = {
  controlId: string;
  kind: string;
  table: string;
  raw: string;
  ackedAt: string | null;
  appliedAt: string | null;
};

/** The newest pause/resume control acted on for a table (replay protection, docs/security.md). */
export type ControlOrder = { table: string; issuedAt: string; controlId: string };
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

/** WAL pages after which a commit checkpoints (4 KiB pages: 256 KiB). */
const WAL_CHECKPOINT_PAGES = 64;
/** Size the WAL file is cut back to after a checkpoint. */
const WAL_LIMIT_BYTES = 256 * 1024;

const DDL = `
CREATE TABLE IF NOT EXISTS tables (
  name TEXT PRIMARY KEY, strategy TEXT NOT NULL, epoch TEXT, confirmed_seq INTEGER NOT NULL DEFAULT 0,
  schema_hash TEXT, announced_hash TEXT, announced_epoch TEXT,
  paused INTEGER NOT NULL DEFAULT 0, pause_epoch TEXT, server_watermark INTEGER,
  batch_seq INTEGER NOT NULL DEFAULT 0, cursor TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS inflight (
  batch_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, kind TEXT NOT NULL, epoch TEXT,
  first_seq INTEGER, last_seq INTEGER, with_schema INTEGER NOT NULL DEFAULT 0, batch_seq INTEGER,
  end_cursor TEXT, payload TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS controls (
  control_id TEXT PRIMARY KEY, kind TEXT NOT NULL, table_name TEXT NOT NULL, raw TEXT NOT NULL,
  received_at TEXT NOT NULL, acked_at TEXT, applied_at TEXT, outcome TEXT);
CREATE TABLE IF NOT EXISTS control_order (
  table_name TEXT PRIMARY KEY, issued_at TEXT NOT NULL, control_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_versions (
  table_name TEXT NOT NULL, pk TEXT NOT NULL, cloud_version INTEGER NOT NULL,
  prev_version INTEGER, from_seq INTEGER, epoch TEXT,
  PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, epoch TEXT NOT NULL, first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, reason TEXT NOT NULL,
  new_epoch TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
  upload_id TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE, epoch TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, row_count INTEGER NOT NULL,
  schema_hash TEXT NOT NULL, sv INTEGER NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
  url TEXT, expires_at TEXT, requests INTEGER NOT NULL DEFAULT 0, finalize_id TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS upload_marks (
  table_name TEXT PRIMARY KEY, epoch TEXT NOT NULL, through_seq INTEGER, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verify_reports (
  verify_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, columns TEXT NOT NULL, epoch TEXT, through_seq INTEGER,
  payload TEXT, created_at TEXT NOT NULL);
`;

type TableRow = {
  name: string;
  strategy: 'rows' | 'telemetry';
  epoch: string | null;
  confirmed_seq: number;
  schema_hash: string | null;
  announced_hash: string | null;
  announced_epoch: string | null;
  paused: number;
  pause_epoch: string | null;
  server_watermark: number | null;
  batch_seq: number;
  cursor: string | null;
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

const toTable = (r: TableRow): TableState => ({
  name: r.name,
  strategy: r.strategy,
  epoch: r.epoch,
  confirmedSeq: r.confirmed_seq,
  schemaHash: r.schema_hash,
  announcedHash: r.announced_hash,
  announcedEpoch: r.announced_epoch,
  paused: r.paused === 1,
  pauseEpoch: r.pause_epoch,
  serverWatermark: r.server_watermark,
  batchSeq: r.batch_seq,
  cursor: r.cursor ? (JSON.parse(r.cursor) as TelemetryCursor) : null,
});

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
 * The agent's own state (state.db, WAL). Every write that moves a cursor happens in one
 * transaction with the in-flight bookkeeping it depends on, so a crash leaves either the old or
 * the new position, never a mix.
 */
export class StateStore {
  readonly db: Database.Database;
  private readonly now: () => string;

  constructor(path: string, now: () => Date = () => new Date()) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a power cut may lose the last commits but never corrupts; losing a
    // cursor move only means a batch is sent again, which the cloud dedupes.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // The WAL is checkpointed after this many pages (SQLite's default, 1000 pages, is 4 MiB: more
    // than a small state disk holds) and cut back to the limit once the checkpoint let it restart.
    // Unbounded, the WAL alone fills the disk, and it can then never be checkpointed: the
    // checkpoint has to grow state.db, on a disk the WAL fills.
    this.db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    this.db.pragma(`journal_size_limit = ${WAL_LIMIT_BYTES}`);
    this.db.exec(DDL);
    // state.db files written before cloud_versions knew where in the journal a write landed.
    const cv = new Set(
      (
        this.db.prepare('SELECT name FROM pragma_table_info(?)').all('cloud_versions') as { name: string }[]
      ).map((c) => c.name),
    );
    for (const [col, type] of [
      ['prev_version', 'INTEGER'],
      ['from_seq', 'INTEGER'],
      ['epoch', 'TEXT'],
    ] as const) {
      if (!cv.has(col)) this.db.exec(`ALTER TABLE cloud_versions ADD COLUMN ${col} ${type}`);
    }
    this.now = () => now().toISOString();
  }

  close(): void {
    this.db.close();
  }

  /**
   * After a write failed on a full disk: no transaction left open, and what the WAL holds
   * checkpointed into state.db if there is room for that, so the next write starts the WAL over
   * instead of growing it. Never throws (the disk may still be full); never waits for a reader.
   */
  relieveFullDisk(): void {
    try {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Still full: the next write says so again.
    }
  }

  table(name: string): TableState | undefined {
    const r = this.db.prepare('SELECT * FROM tables WHERE name = ?').get(name) as TableRow | undefined;
    return r ? toTable(r) : undefined;
  }

  tables(): TableState[] {
    return (this.db.prepare('SELECT * FROM tables ORDER BY name').all() as TableRow[]).map(toTable);
  }

  ensureTable(name: string, strategy: 'rows' | 'telemetry'): TableState {
    this.db
      .prepare(
        'INSERT INTO tables (name, strategy, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING',
      )
      .run(name, strategy, this.now());
    return this.table(name)!;
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

  setSchemaHash(name: string, hash: string): void {
    this.db
      .prepare('UPDATE tables SET schema_hash = ?, updated_at = ? WHERE name = ?')
      .run(hash, this.now(), name);
  }

  inflight(table?: string): InflightRecord[] {
    const rows = (
      table
        ? this.db.prepare('SELECT * FROM inflight WHERE table_name = ? ORDER BY rowid').all(table)
        : this.db.prepare('SELECT * FROM inflight ORDER BY rowid').all()
    ) as InflightRow[];
    return rows.map(toInflight);
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

  dropInflight(batchIds: readonly string[]): void {
    const del = this.db.prepare('DELETE FROM inflight WHERE batch_id = ?');
    this.db.transaction(() => batchIds.forEach((id) => del.run(id)))();
  }

  setPause(table: string, paused: boolean, watermark: number | null, epoch: string | null): void {
    this.db
      .prepare(
        'UPDATE tables SET paused = ?, server_watermark = ?, pause_epoch = ?, updated_at = ? WHERE name = ?',
      )
      .run(paused ? 1 : 0, watermark, epoch, this.now(), table);
  }

  // ---- controls ----

  control(id: string): ControlRecord | undefined {
    const r = this.db
      .prepare(
        'SELECT control_id, kind, table_name, raw, acked_at, applied_at FROM controls WHERE control_id = ?',
      )
      .get(id) as
      | {
          control_id: string;
          kind: string;
          table_name: string;
          raw: string;
          acked_at: string | null;
          applied_at: string | null;
        }
      | undefined;
    return r
      ? {
          controlId: r.control_id,
          kind: r.kind,
          table: r.table_name,
          raw: r.raw,
          ackedAt: r.acked_at,
          appliedAt: r.applied_at,
        }
      : undefined;
  }

  /** Remember a control before acking it: after a crash it is acked again and applied. */
  recordControl(id: string, kind: string, table: string, raw: string): void {
    this.db
      .prepare(
        'INSERT INTO controls (control_id, kind, table_name, raw, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      )
      .run(id, kind, table, raw, this.now());
  }

  markControlAcked(id: string): void {
    this.db.prepare('UPDATE controls SET acked_at = ? WHERE control_id = ?').run(this.now(), id);
  }

  /** Done with a control; with `order`, it is now the newest of its table, in the same transaction. */
  markControlApplied(id: string, outcome: string, order?: ControlOrder): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE controls SET applied_at = ?, outcome = ? WHERE control_id = ?')
        .run(this.now(), outcome, id);
      if (order)
        this.db
          .prepare(
            `INSERT INTO control_order (table_name, issued_at, control_id) VALUES (?, ?, ?)
             ON CONFLICT (table_name) DO UPDATE SET issued_at = excluded.issued_at, control_id = excluded.control_id`,
          )
          .run(order.table, order.issuedAt, order.controlId);
    })();
  }

  controlOrder(table: string): ControlOrder | undefined {
    const r = this.db
      .prepare('SELECT issued_at, control_id FROM control_order WHERE table_name = ?')
      .get(table) as { issued_at: string; control_id: string } | undefined;
    return r ? { table, issuedAt: r.issued_at, controlId: r.control_id } : undefined;
  }

  unackedControls(): ControlRecord[] {
    return (
      this.db.prepare('SELECT control_id FROM controls WHERE acked_at IS NULL ORDER BY rowid').all() as {
        control_id: string;
      }[]
    ).map((r) => this.control(r.control_id)!);
  }

  unappliedControls(): ControlRecord[] {
    return (
      this.db.prepare('SELECT control_id FROM controls WHERE applied_at IS NULL ORDER BY rowid').all() as {
        control_id: string;
      }[]
    ).map((r) => this.control(r.control_id)!);
  }

  // ---- cloud versions (state_write) ----

  /**
   * Record the versions a state_write applied. A higher version moves the key on (the old one is
   * kept as `prev_version`, for changes journaled before the write); the same version again (a
   * write sent again after a conflict) leaves the record as it was.
   */
  setCloudVersions(
    table: string,
    entries: readonly { pk: string; cloudVersion: number; fromSeq: number; epoch: string | null }[],
  ): void {
    const up = this.db.prepare(
      `INSERT INTO cloud_versions (table_name, pk, cloud_version, prev_version, from_seq, epoch)
       VALUES (?, ?, ?, NULL, ?, ?)
       ON CONFLICT (table_name, pk) DO UPDATE SET prev_version = cloud_versions.cloud_version,
         cloud_version = excluded.cloud_version, from_seq = excluded.from_seq, epoch = excluded.epoch
       WHERE excluded.cloud_version > cloud_versions.cloud_version`,
    );
    this.db.transaction(() =>
      entries.forEach((e) => up.run(table, e.pk, e.cloudVersion, e.fromSeq, e.epoch)),
    )();
  }

  /** The cloud version the agent holds for a key (canonical JSON of the wire pk), if any. */
  cloudVersion(table: string, pk: string): number | undefined {
    return this.db
      .prepare('SELECT cloud_version FROM cloud_versions WHERE table_name = ? AND pk = ?')
      .pluck()
      .get(table, pk) as number | undefined;
  }

  /**
   * `lkcv` of a journaled change: the cloud version the key had when the change was made. A
   * change journaled at or before the write that brought the current version (same epoch,
   * commit_seq ≤ from_seq) was made under the previous one; reporting the current one would let
   * a stale device value pass for a change made after the cloud's write.
   */
  cloudVersionLookup(
    table: string,
    epoch: string,
  ): ((pk: string, commitSeq: number) => number | undefined) | undefined {
    const any = this.db.prepare('SELECT 1 FROM cloud_versions WHERE table_name = ? LIMIT 1').get(table);
    if (!any) return undefined;
    const stmt = this.db.prepare(
      'SELECT cloud_version, prev_version, from_seq, epoch FROM cloud_versions WHERE table_name = ? AND pk = ?',
    );
    return (pk, commitSeq) => {
      const r = stmt.get(table, pk) as
        | {
            cloud_version: number;
            prev_version: number | null;
            from_seq: number | null;
            epoch: string | null;
          }
        | undefined;
      if (!r) return undefined;
      if (r.from_seq !== null && r.epoch === epoch && commitSeq <= r.from_seq)
        return r.prev_version ?? undefined;
      return r.cloud_version;
    };
  }

  // ---- uploads (secondary flow) ----

  upload(table: string): UploadRecord | undefined {
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

  saveUpload(u: UploadRecord): void {
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

  deleteUpload(uploadId: string): void {
    this.db.prepare('DELETE FROM uploads WHERE upload_id = ?').run(uploadId);
  }

  uploadMark(table: string): UploadMark | undefined {
    const r = this.db.prepare('SELECT * FROM upload_marks WHERE table_name = ?').get(table) as
      | { table_name: string; epoch: string; through_seq: number | null; reason: UploadMark['reason'] }
      | undefined;
    return r
      ? { table: r.table_name, epoch: r.epoch, throughSeq: r.through_seq, reason: r.reason }
      : undefined;
  }

  setUploadMark(m: UploadMark): void {
    this.db
      .prepare(
        `INSERT INTO upload_marks (table_name, epoch, through_seq, reason) VALUES (?, ?, ?, ?)
         ON CONFLICT(table_name) DO UPDATE SET epoch = excluded.epoch, through_seq = excluded.through_seq,
           reason = excluded.reason`,
      )
      .run(m.table, m.epoch, m.throughSeq, m.reason);
  }

  clearUploadMark(table: string): void {
    this.db.prepare('DELETE FROM upload_marks WHERE table_name = ?').run(table);
  }

  /** Forget which schema went out: the next batch of the table carries schema_columns. */
  resetAnnounced(table: string): void {
    this.db
      .prepare('UPDATE tables SET announced_hash = NULL, announced_epoch = NULL WHERE name = ?')
      .run(table);
  }

  // ---- verify reports ----

  /** A verify asked for (a control is handled once: a second delivery changes nothing). */
  addVerify(verifyId: string, table: string, columns: readonly string[]): void {
    this.db
      .prepare(
        `INSERT INTO verify_reports (verify_id, table_name, columns, created_at)
         VALUES (?, ?, ?, ?) ON CONFLICT(verify_id) DO NOTHING`,
      )
      .run(verifyId, table, JSON.stringify(columns), this.now());
  }

  /** The digest of a verify, and the report that carries it. */
  digestVerify(verifyId: string, epoch: string, throughSeq: number, payload: string): void {
    this.db
      .prepare('UPDATE verify_reports SET epoch = ?, through_seq = ?, payload = ? WHERE verify_id = ?')
      .run(epoch, throughSeq, payload, verifyId);
  }

  verifyReports(table: string): VerifyReportRecord[] {
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

  deleteVerifyReport(verifyId: string): void {
    this.db.prepare('DELETE FROM verify_reports WHERE verify_id = ?').run(verifyId);
  }

  // ---- gaps (retention) ----

  recordGap(g: GapRecord): void {
    this.db
      .prepare(
        `INSERT INTO gaps (table_name, epoch, first_seq, last_seq, rows, bytes, reason, new_epoch, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(g.table, g.epoch, g.firstSeq, g.lastSeq, g.rows, g.bytes, g.reason, g.newEpoch, g.at);
  }

  gaps(): GapRecord[] {
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
