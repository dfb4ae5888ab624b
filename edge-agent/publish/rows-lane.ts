import type { Receipt } from '../../domain/protocol/contracts';
import type { Journal, VerifyResult } from '../capture/journal';
import type { StateStore } from '../state/state-store';
import type { Control } from '../../domain/protocol/contracts';
import type { UploadMark } from '../state/uploads';
import { type Inflight, Lane, type LaneDeps } from './lane';
import { buildRowBatch } from './row-batch';
import { type PutFn, UploadJob } from './upload';

type RowsInflight = Inflight & { firstSeq: number; lastSeq: number };

export type RowsLaneDeps = LaneDeps &
  Readonly<{
    journal: Journal;
    state: StateStore;
    newId: () => string;
    maxRows: number;
    maxBytes: number;
    /** sync/ingest/request of this device (verify reports). */
    uploadsTopic?: string;
    /** The secondary upload flow (only with signed controls: a url_grant must be verifiable). */
    uploads?: Readonly<{
      requestTopic: string;
      /**
       * Journal a resync of the table (after a gap): the last seq of its rows (the upload goes
       * through there; the sweep after it travels as a batch) and the sweep's seq.
       */
      resync: (tid: number) => { through: number; sweepSeq: number } | undefined;
      put?: PutFn;
    }>;
  }>;

/**
 * The rows strategy of one table. Invariants:
 * - a batch is recorded in state.db before it is published (a restart re-sends the same
 *   batch_id with the same journal range);
 * - confirmedSeq moves only when the oldest in-flight batch is confirmed (receipt, or PUBACK in
 *   puback mode), and journal rows are deleted only up to confirmedSeq.
 */
export class RowsLane extends Lane {
  readonly kind = 'rows' as const;
  declare readonly inflight: RowsInflight[];
  tid: number;
  epoch: string;
  confirmedSeq: number;
  /** Last journal seq already put in a batch (or skipped as oversize). */
  sentSeq: number;
  /** The journal's counter as last read: rows up to here exist or were confirmed. */
  counterSeq: number;
  pauseEpoch: string | null = null;
  watermark: number | null = null;
  private announcedHash: string | null;
  private announcedEpoch: string | null;
  private avgRowBytes = 200;
  private cleanupThrough = 0;
  private readonly sendingReports = new Set<string>();
  /**
   * The largest commit_seq put on the wire in this epoch, as far as this run knows (from the
   * confirmed cursor at start). With a row predicate, a verify reports this position: entries the
   * filter skipped never reach the cloud, which waits for the report's position to be taken in.
   */
  private wireSeq: number;
  /** The upload in progress: while it is open, no batch of this table goes out. */
  upload: UploadJob | null = null;

  constructor(
    table: string,
    private readonly r: RowsLaneDeps,
    reg: { tid: number; epoch: string; seq: number },
  ) {
    super(table, r);
    this.tid = reg.tid;
    this.epoch = reg.epoch;
    this.counterSeq = reg.seq;
    const st = r.state.tables.get(table)!;
    this.confirmedSeq = st.confirmedSeq;
    this.sentSeq = st.confirmedSeq;
    this.cleanupThrough = st.confirmedSeq;
    this.wireSeq = st.confirmedSeq;
    this.paused = st.paused;
    this.pauseEpoch = st.pauseEpoch;
    this.watermark = st.serverWatermark;
    this.announcedHash = st.announcedHash;
    this.announcedEpoch = st.announcedEpoch;
    this.restore();
    this.restoreUpload();
  }

  private restoreUpload(): void {
    const rec = this.r.state.uploads.get(this.table);
    if (!rec) return;
    if (rec.epoch !== this.epoch || rec.lastSeq <= this.confirmedSeq || !this.r.uploads) {
      this.r.state.uploads.delete(rec.uploadId);
      return;
    }
    this.upload = this.newJob(rec);
    this.sentSeq = Math.max(this.sentSeq, rec.lastSeq);
    this.r.log.info(
      { event: 'restore_upload', table: this.table, upload_id: rec.uploadId, status: rec.status },
      'an unfinished upload continues where it was',
    );
  }

  private newJob(rec: ConstructorParameters<typeof UploadJob>[0]): UploadJob {
    const u = this.r.uploads!;
    const lkcvOf = this.r.state.cloudVersions.lookup(this.table, rec.epoch);
    return new UploadJob(rec, {
      journal: this.r.journal,
      state: this.r.state,
      tid: () => this.tid,
      log: this.r.log,
      now: this.r.now,
      newId: this.r.newId,
      connected: this.r.sender.connected,
      publish: this.r.sender.publish,
      requestTopic: u.requestTopic,
      receiptTimeoutMs: this.r.receiptTimeoutMs,
      maxLineBytes: this.r.maxBytes,
      wake: this.r.wake,
      failed: this.r.failed,
      ...(lkcvOf ? { lkcvOf } : {}),
      ...(u.put ? { put: u.put } : {}),
    });
  }

  /** Rows from `seq` on go through the upload flow (a large snapshot, or what follows a gap). */
  markForUpload(mark: Omit<UploadMark, 'table'>): void {
    if (!this.r.uploads) return;
    this.r.state.uploads.setMark({ ...mark, table: this.table });
  }

  /** Start an upload when a mark asks for one and the range is more than one batch. */
  private maybeStartUpload(): boolean {
    const u = this.r.uploads;
    if (!u || this.inflight.length > 0) return false;
    const mark = this.r.state.uploads.mark(this.table);
    if (!mark) return false;
    if (mark.epoch !== this.epoch) {
      this.r.state.uploads.clearMark(this.table);
      return false;
    }
    if (mark.throughSeq === null) {
      const done = u.resync(this.tid);
      if (done === undefined) {
        this.r.state.uploads.clearMark(this.table);
        return false;
      }
      this.r.log.warn(
        {
          event: 'resync_snapshot',
          table: this.table,
          journal_epoch: this.epoch,
          through_seq: done.through,
          sweep_seq: done.sweepSeq,
        },
        `after the retention gap, every current row of ${this.table} was journaled again (resync, ending ` +
          'with a sweep); it goes to the cloud through the upload flow with what the journal kept',
      );
      mark.throughSeq = done.through;
      this.r.state.uploads.setMark(mark);
      this.counterSeq = Math.max(this.counterSeq, done.sweepSeq);
    }
    const first = this.sentSeq + 1;
    const last = Math.min(mark.throughSeq, this.counterSeq);
    const plan = first <= last ? this.r.journal.uploadPlan(this.tid, first, last) : undefined;
    const schema = this.r.journal.tableSchema(this.tid);
    if (!plan || !schema || plan.rows <= this.r.maxRows) {
      // One batch or less: the ordinary path is the cheaper one.
      this.r.state.uploads.clearMark(this.table);
      return false;
    }
    const rec = {
      uploadId: this.r.newId(),
      table: this.table,
      epoch: this.epoch,
      firstSeq: plan.firstSeq,
      lastSeq: plan.lastSeq,
      rowCount: plan.rows,
      schemaHash: schema.hash,
      sv: 0,
      reason: mark.reason,
      status: 'requesting' as const,
      url: null,
      expiresAt: null,
      requests: 0,
      finalizeId: this.r.newId(),
    };
    this.r.state.uploads.save(rec);
    this.upload = this.newJob(rec);
    this.sentSeq = plan.lastSeq;
    this.r.log.info(
      {
        event: 'upload_started',
        table: this.table,
        upload_id: rec.uploadId,
        reason: rec.reason,
        rows: rec.rowCount,
        bytes: plan.bytes,
        first_commit_seq: rec.firstSeq,
        last_commit_seq: rec.lastSeq,
      },
      `${rec.rowCount} rows of ${this.table} go through the upload flow (${rec.reason})`,
    );
    this.upload.step();
    return true;
  }

  /** A finished upload: confirmed (the cursor moves past it) or abandoned (back to batches). */
  private settleUpload(): void {
    const job = this.upload;
    if (!job?.outcome) return;
    this.upload = null;
    this.r.state.uploads.delete(job.uploadId);
    const mark = this.r.state.uploads.mark(this.table);
    if (job.outcome === 'confirmed') {
      this.announcedHash = job.rec.schemaHash;
      this.announcedEpoch = job.rec.epoch;
      this.advanceTo(job.rec.lastSeq, []);
      this.r.counters.confirmedBatches++;
      this.r.counters.confirmedRows += job.rec.rowCount;
      this.r.log.info(
        {
          event: 'confirm',
          table: this.table,
          batch_id: job.uploadId,
          first_commit_seq: job.rec.firstSeq,
          last_commit_seq: job.rec.lastSeq,
          via: 'upload',
        },
        'upload confirmed',
      );
      if (mark && (mark.throughSeq ?? 0) <= this.confirmedSeq) this.r.state.uploads.clearMark(this.table);
    } else {
      this.r.state.uploads.clearMark(this.table);
      this.sentSeq = this.confirmedSeq;
      this.draining = true;
    }
    this.r.wake();
  }

  /** A verified url_grant for this table. */
  onGrant(c: Control): string {
    if (!this.upload) return 'no upload open for this table';
    const outcome = this.upload.onGrant(c);
    this.settleUpload();
    return outcome;
  }

  /** Rebuild the in-flight window from state.db: same batch ids, same bytes. */
  private restore(): void {
    for (const rec of this.r.state.batches.inflight(this.table)) {
      if (rec.kind !== 'rows' || rec.firstSeq === null || rec.lastSeq === null) continue;
      if (rec.payload === null || rec.epoch !== this.epoch) {
        // Recorded by an agent that kept no payload (or of an epoch that is over): the range is
        // read again under a new batch id (the cloud dedupes rows by commit_seq).
        this.r.state.batches.drop([rec.batchId]);
        continue;
      }
      this.inflight.push({
        batchId: rec.batchId,
        payload: rec.payload,
        rows: (JSON.parse(rec.payload) as { rows: unknown[] }).rows.length,
        sentAt: 0,
        sends: 0,
        confirmed: false,
        firstSeq: rec.firstSeq,
        lastSeq: rec.lastSeq,
      });
      this.sentSeq = Math.max(this.sentSeq, rec.lastSeq);
    }
    if (this.inflight.length > 0) {
      this.r.log.info(
        { event: 'restore_inflight', table: this.table, batches: this.inflight.length },
        'restored unconfirmed batches; they will be re-sent with the same batch ids and bytes',
      );
    }
  }

  pendingRows(): number {
    return Math.max(0, this.counterSeq - this.confirmedSeq);
  }

  private unsentRows(): number {
    return Math.max(0, this.counterSeq - this.sentSeq);
  }

  pump(): void {
    this.pumpReports();
    if (this.upload) {
      // An open upload goes on while paused: its rows are journaled already, and its finalize
      // is what lets the journal range go.
      this.upload.step();
      this.settleUpload();
      if (this.upload) return;
    }
    if (this.paused) return;
    // Its filter cannot apply to its schema now (main.ts logs why): nothing of it goes out.
    if (this.r.journal.withheld(this.tid)) return;
    // A verify's digest is taken: nothing more of this table goes before its report, so the cloud
    // compares the mirror at exactly the digest's position.
    if (this.reportHeld()) return;
    if (this.maybeStartUpload()) return;
    while (!this.windowFull()) {
      const unsent = this.unsentRows();
      if (unsent === 0) {
        this.draining = false;
        this.digestWhenIdle();
        return;
      }
      const full = unsent >= this.r.maxRows || unsent * this.avgRowBytes >= this.r.maxBytes;
      if (!this.draining && !full) return;
      if (!this.buildNext()) {
        this.draining = false;
        return;
      }
      if (this.reportHeld()) return;
    }
  }

  private buildNext(): boolean {
    const want = this.upload ? undefined : this.wantedVerify();
    const read = this.r.journal.read(this.tid, this.sentSeq, this.r.maxRows, undefined, want?.columns);
    if (!read || read.throughSeq === 0) {
      this.sentSeq = Math.max(this.sentSeq, this.counterSeq);
      return false;
    }
    const batchId = this.r.newId();
    const res = buildRowBatch({
      batchId,
      table: this.table,
      epoch: this.epoch,
      hash: read.hash,
      fingerprint: read.fingerprint,
      changes: read.changes,
      withSchema: read.hash !== this.announcedHash || this.epoch !== this.announcedEpoch,
      lkcvOf: this.r.state.cloudVersions.lookup(this.table, this.epoch),
      maxRows: this.r.maxRows,
      maxBytes: this.r.maxBytes,
    });
    for (const o of res.tooLarge) {
      this.r.log.error(
        {
          event: 'refused',
          code: 'row_too_large',
          table: this.table,
          journal_epoch: this.epoch,
          commit_seq: o.seq,
          bytes: o.bytes,
        },
        `change ${o.seq} of ${this.table} is ${o.bytes} bytes, more than max_batch_bytes even alone; ` +
          'it goes to the cloud as refused (row_too_large) with its key, and the table flows on. Shrink the row ' +
          'or raise max_batch_bytes, then touch the row to send it again.',
      );
    }
    for (const seq of res.unsendable) {
      this.r.log.error(
        { event: 'drop_oversize', table: this.table, journal_epoch: this.epoch, commit_seq: seq },
        `change ${seq} of ${this.table} has a key larger than max_batch_bytes: not even a refusal can carry it; ` +
          'left out (recorded as a gap in state.db).',
      );
      this.r.state.gaps.record({
        table: this.table,
        epoch: this.epoch,
        firstSeq: seq,
        lastSeq: seq,
        rows: 1,
        bytes: 0,
        reason: 'oversize_key',
        newEpoch: null,
        at: new Date(this.r.now()).toISOString(),
      });
    }
    for (const c of res.batch ? read.changes : []) {
      if (c.op === 'refused' && c.commit_seq <= res.throughSeq) {
        this.r.log.error(
          {
            event: 'refused',
            code: c.refusal?.code,
            column: c.refusal?.column,
            table: this.table,
            commit_seq: c.commit_seq,
          },
          `change ${c.commit_seq} of ${this.table} cannot be encoded (${c.refusal?.message ?? ''}); it goes to the ` +
            'cloud as refused with its key, and the table flows on. Fix the value in the application to send the row again.',
        );
      }
    }
    const b = res.batch;
    // The digest stands for this read only when the batch carries every change read.
    if (b) this.wireSeq = Math.max(this.wireSeq, b.lastSeq);
    if (want && read.verify && res.throughSeq >= (read.changes.at(-1)?.commit_seq ?? 0)) {
      this.digested(want.verifyId, read.verify);
    }
    // Nothing to send in what was read (placeholders, or changes left out): move past it.
    const through = b
      ? res.throughSeq
      : Math.max(res.throughSeq, read.changes.length === 0 ? read.throughSeq : 0);
    if (!b) {
      if (through === 0) return false;
      this.sentSeq = Math.max(this.sentSeq, through);
      // Nothing of it is in flight: it is as good as confirmed (the window holds nothing before it).
      if (this.inflight.length === 0) this.advanceTo(through, []);
      return true;
    }
    // Entries read after the batch's last change and left out of it (a row predicate's skips) are
    // covered by it: its confirmation moves the cursor past them, so a verify digested at the
    // head of this read is confirmed with it.
    const lastSeq =
      res.throughSeq >= (read.changes.at(-1)?.commit_seq ?? 0)
        ? Math.max(b.lastSeq, read.throughSeq)
        : b.lastSeq;
    this.r.state.batches.recordRowBatch({
      batchId,
      table: this.table,
      epoch: this.epoch,
      firstSeq: b.firstSeq,
      lastSeq,
      withSchema: b.withSchema,
      hash: b.hash,
      payload: b.payload,
    });
    if (b.withSchema) {
      this.announcedHash = b.hash;
      this.announcedEpoch = this.epoch;
    }
    this.avgRowBytes = Math.max(16, Math.round(b.bytes / b.rowCount));
    // Placeholders read after the last change of a full batch are read again next time: harmless.
    this.sentSeq = Math.max(this.sentSeq, lastSeq);
    const f: RowsInflight = {
      batchId,
      payload: b.payload,
      rows: b.rowCount,
      sentAt: 0,
      sends: 0,
      confirmed: false,
      firstSeq: b.firstSeq,
      lastSeq,
    };
    this.inflight.push(f);
    this.send(f);
    return true;
  }

  /** The next batch carries schema_columns (after a schema change, or a resync the cloud asked for). */
  resetAnnounced(): void {
    this.announcedHash = null;
    this.announcedEpoch = null;
    this.r.state.tables.resetAnnounced(this.table);
  }

  /** A verify the cloud asked for: its digest is taken when every change of the table is in a batch. */
  requestVerify(verifyId: string, columns: readonly string[]): void {
    this.r.state.verifyReports.add(verifyId, this.table, columns);
    this.pump();
  }

  private wantedVerify(): { verifyId: string; columns: readonly string[] } | undefined {
    return this.r.state.verifyReports.of(this.table).find((r) => r.payload === null);
  }

  /** A digested report not published yet holds this table's batches. */
  private reportHeld(): boolean {
    return this.r.state.verifyReports
      .of(this.table)
      .some((r) => r.payload !== null && r.epoch === this.epoch);
  }

  /** Nothing unsent: the digest can be taken now, if the log has not moved since. */
  private digestWhenIdle(): void {
    const want = this.upload ? undefined : this.wantedVerify();
    if (!want) return;
    const v = this.r.journal.verify(this.tid, want.columns, this.sentSeq);
    if (v) {
      this.digested(want.verifyId, v);
      this.pumpReports();
    }
  }

  private digested(verifyId: string, digest: VerifyResult): void {
    const v = this.r.journal.hasPredicate(this.tid)
      ? { ...digest, throughSeq: Math.min(digest.throughSeq, this.wireSeq) }
      : digest;
    if (v.missing.length > 0) {
      this.r.log.warn(
        { event: 'verify_columns_missing', table: this.table, verify_id: verifyId, missing: v.missing },
        `verify ${verifyId}: ${this.table} has no column ${v.missing.join(', ')} now; the report ` +
          `digests the columns it has (${v.columns.join(', ')}) and says so in its columns`,
      );
    }
    this.r.state.verifyReports.digest(
      verifyId,
      v.epoch,
      v.throughSeq,
      JSON.stringify({
        format_version: 1,
        request_kind: 'verify_report',
        request_id: this.r.newId(),
        verify_id: verifyId,
        source_table: this.table,
        journal_epoch: v.epoch,
        through_commit_seq: v.throughSeq,
        schema_hash: v.hash,
        columns: v.columns,
        digests: v.digests,
      }),
    );
    this.r.log.info(
      {
        event: 'verify',
        table: this.table,
        verify_id: verifyId,
        through_commit_seq: v.throughSeq,
        buckets: v.digests.length,
      },
      `verify of ${this.table} digested at commit_seq ${v.throughSeq}; the report goes once that is confirmed`,
    );
  }

  /**
   * Publish verify reports whose position is confirmed: every change through their
   * through_commit_seq (same epoch) is at the cloud, so the report is ordered after them.
   */
  pumpReports(): void {
    for (const rep of this.r.state.verifyReports.of(this.table)) {
      if (rep.payload === null || rep.throughSeq === null) continue;
      if (rep.epoch !== this.epoch) {
        this.r.state.verifyReports.delete(rep.verifyId);
        this.r.log.warn(
          {
            event: 'verify_report_dropped',
            table: this.table,
            verify_id: rep.verifyId,
            journal_epoch: rep.epoch,
          },
          `the verify report ${rep.verifyId} of ${this.table} names journal_epoch ${rep.epoch}, which is over ` +
            '(retention drop); it is not sent. Ask for a new verify.',
        );
        continue;
      }
      if (this.confirmedSeq < rep.throughSeq || this.sendingReports.has(rep.verifyId)) continue;
      if (!this.r.sender.connected() || !this.r.uploadsTopic) continue;
      this.sendingReports.add(rep.verifyId);
      const payload = rep.payload;
      this.r.sender
        .publish(this.r.uploadsTopic, payload)
        .then(
          () => {
            this.sendingReports.delete(rep.verifyId);
            this.r.state.verifyReports.delete(rep.verifyId);
            this.r.log.info(
              {
                event: 'verify_report',
                table: this.table,
                verify_id: rep.verifyId,
                through_commit_seq: rep.throughSeq,
              },
              'verify report published',
            );
          },
          (err: Error) => {
            this.sendingReports.delete(rep.verifyId);
            this.r.log.warn({ event: 'publish_failed', verify_id: rep.verifyId, err: err.message });
          },
        )
        .catch((err: unknown) =>
          this.r.failed(
            err,
            'verify_report_failed',
            'recording a sent verify report failed; it is sent again',
          ),
        );
    }
  }

  onReceipt(r: Receipt): boolean {
    if (this.upload && r.batch_id === this.upload.uploadId) {
      if (r.journal_epoch === this.epoch && this.upload.onReceipt()) this.settleUpload();
      return true;
    }
    const b = this.inflight.find((x) => x.batchId === r.batch_id);
    if (!b) return false;
    if (r.journal_epoch !== undefined && r.journal_epoch !== this.epoch) {
      this.r.log.warn(
        {
          event: 'receipt_mismatch',
          table: this.table,
          batch_id: r.batch_id,
          journal_epoch: r.journal_epoch,
        },
        'receipt names another journal_epoch; ignored (the batch stays unconfirmed and will be re-sent)',
      );
      return true;
    }
    this.confirmById(r.batch_id);
    return true;
  }

  protected confirmById(batchId: string): void {
    const done = this.popConfirmed(batchId) as RowsInflight[];
    if (done.length === 0) return;
    this.advanceTo(
      done[done.length - 1]!.lastSeq,
      done.map((d) => d.batchId),
    );
    for (const d of done) {
      this.r.counters.confirmedBatches++;
      this.r.counters.confirmedRows += d.rows;
      this.r.log.info(
        {
          event: 'confirm',
          table: this.table,
          batch_id: d.batchId,
          first_commit_seq: d.firstSeq,
          last_commit_seq: d.lastSeq,
          via: this.r.delivery,
        },
        'batch confirmed',
      );
    }
    this.r.wake();
  }

  /** Cursor first (state.db), then the journal rows it covers. */
  private advanceTo(seq: number, batchIds: readonly string[]): void {
    if (seq > this.confirmedSeq || batchIds.length > 0) {
      this.confirmedSeq = Math.max(this.confirmedSeq, seq);
      this.r.state.batches.confirmRows(this.table, this.confirmedSeq, batchIds);
      this.r.journal.confirmed(this.tid, this.epoch, this.confirmedSeq);
    }
    this.sentSeq = Math.max(this.sentSeq, this.confirmedSeq);
    this.cleanupThrough = this.confirmedSeq;
    this.cleanup();
  }

  /** Delete confirmed journal rows; if the application holds the write lock, retry next tick. */
  cleanup(): void {
    if (this.cleanupThrough <= 0) return;
    try {
      this.r.journal.deleteThrough(this.tid, this.cleanupThrough);
      this.cleanupThrough = 0;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
    }
  }

  /** Rows through `w` are accepted by the cloud (a control's server_watermark). */
  private acceptThrough(w: number, why: string): void {
    if (w > this.counterSeq) {
      this.r.log.warn(
        { event: 'watermark_ignored', table: this.table, server_watermark: w, journal_seq: this.counterSeq },
        `${why}: server_watermark ${w} is beyond anything journaled in epoch ${this.epoch}; ignored, nothing deleted`,
      );
      return;
    }
    if (w < this.confirmedSeq) {
      this.r.log.warn(
        {
          event: 'watermark_behind',
          table: this.table,
          server_watermark: w,
          confirmed_seq: this.confirmedSeq,
        },
        `${why}: server_watermark ${w} is behind commit_seq ${this.confirmedSeq} already confirmed by receipts; ` +
          'those rows were deleted locally and are not sent again',
      );
      return;
    }
    const accepted: string[] = [];
    while (this.inflight[0] && this.inflight[0].lastSeq <= w) accepted.push(this.inflight.shift()!.batchId);
    this.advanceTo(w, accepted);
  }

  pause(watermark: number | undefined): void {
    this.paused = true;
    this.pauseEpoch = this.epoch;
    this.watermark = watermark ?? null;
    this.r.state.tables.setPause(this.table, true, this.watermark, this.epoch);
    if (watermark !== undefined) this.acceptThrough(watermark, 'pause_lineage');
    this.r.log.warn(
      {
        event: 'pause',
        table: this.table,
        server_watermark: watermark,
        pending_rows: this.pendingRows(),
        journal_epoch: this.epoch,
      },
      `cloud paused ${this.table}: publishing stopped for this table, changes keep being journaled locally`,
    );
  }

  resume(watermark: number | undefined): void {
    if (watermark !== undefined) {
      if (this.pauseEpoch !== null && this.pauseEpoch !== this.epoch) {
        this.r.log.warn(
          {
            event: 'watermark_ignored',
            table: this.table,
            server_watermark: watermark,
            journal_epoch: this.epoch,
          },
          'the journal moved to a new epoch while paused (retention drop); the watermark belongs to the old ' +
            'epoch, so the new epoch is sent from its start',
        );
      } else {
        this.acceptThrough(watermark, 'resume_lineage');
        // A batch straddling the watermark would resend accepted rows under its old id: rebuild
        // it (and everything after it) from watermark + 1 instead.
        const i = this.inflight.findIndex((b) => b.firstSeq <= watermark);
        if (i >= 0) {
          const dropped = this.inflight.splice(i);
          this.r.state.batches.drop(dropped.map((d) => d.batchId));
        }
        this.sentSeq = Math.max(this.confirmedSeq, this.inflight.at(-1)?.lastSeq ?? 0);
      }
    }
    this.paused = false;
    this.pauseEpoch = null;
    this.watermark = null;
    this.r.state.tables.setPause(this.table, false, null, null);
    this.draining = true;
    this.r.log.info(
      {
        event: 'resume',
        table: this.table,
        server_watermark: watermark,
        from_commit_seq: this.confirmedSeq + 1,
        pending_rows: this.pendingRows(),
      },
      `cloud resumed ${this.table}: draining from commit_seq ${this.confirmedSeq + 1}`,
    );
    this.resendAll();
    this.r.wake();
  }

  /** After a retention drop renumbered the journal into a new epoch. */
  restartEpoch(epoch: string, counterSeq: number): void {
    if (this.upload) {
      this.r.state.uploads.delete(this.upload.uploadId);
      this.upload = null;
    }
    // What follows a gap goes through the upload flow, with a resync snapshot of the table
    // journaled when it resumes (see docs/upload.md).
    this.markForUpload({ epoch, throughSeq: null, reason: 'gap' });
    this.r.state.batches.drop(this.inflight.map((b) => b.batchId));
    this.inflight.length = 0;
    this.epoch = epoch;
    this.confirmedSeq = 0;
    this.sentSeq = 0;
    this.wireSeq = 0;
    this.counterSeq = counterSeq;
    this.cleanupThrough = 0;
    this.r.state.batches.resetEpoch(this.table, epoch);
  }
}
