import type { Control } from '../../domain/protocol/contracts';
import type { UploadMark } from '../state/uploads';
import type { RowsCursor } from './rows-cursor';
import type { RowsLaneDeps } from './rows-deps';
import { UploadJob } from './upload';

export type UploadStats = Readonly<{ upload_id: string; status: string; rows: number }>;

/**
 * The secondary upload flow of one rows table: at most one upload at a time, and while it is
 * open no batch of the table goes out. A range goes this way when a mark asks for it (a large
 * first-run snapshot, a resync, what follows a retention gap) and it is more than one batch.
 */
export class RowsUploads {
  private job: UploadJob | null = null;

  constructor(
    private readonly table: string,
    private readonly r: RowsLaneDeps,
    private readonly cursor: RowsCursor,
    private readonly lane: Readonly<{ inflight: () => number; drain: () => void }>,
  ) {}

  get open(): boolean {
    return this.job !== null;
  }

  stats(): UploadStats | undefined {
    return this.job
      ? { upload_id: this.job.uploadId, status: this.job.rec.status, rows: this.job.rec.rowCount }
      : undefined;
  }

  /** An upload recorded by the last run continues where it was, if its range still stands. */
  restore(): void {
    const rec = this.r.state.uploads.get(this.table);
    if (!rec) return;
    if (rec.epoch !== this.cursor.epoch || rec.lastSeq <= this.cursor.confirmedSeq || !this.r.uploads) {
      this.r.state.uploads.delete(rec.uploadId);
      return;
    }
    this.job = this.newJob(rec);
    this.cursor.sentThrough(rec.lastSeq);
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
      tid: () => this.cursor.tid,
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
  mark(mark: Omit<UploadMark, 'table'>): void {
    if (!this.r.uploads) return;
    this.r.state.uploads.setMark({ ...mark, table: this.table });
  }

  /** Start an upload when a mark asks for one and the range is more than one batch. */
  maybeStart(): boolean {
    const u = this.r.uploads;
    if (!u || this.lane.inflight() > 0) return false;
    const mark = this.r.state.uploads.mark(this.table);
    if (!mark) return false;
    if (mark.epoch !== this.cursor.epoch) {
      this.r.state.uploads.clearMark(this.table);
      return false;
    }
    if (mark.throughSeq === null) {
      const done = u.resync(this.cursor.tid);
      if (done === undefined) {
        this.r.state.uploads.clearMark(this.table);
        return false;
      }
      this.r.log.warn(
        {
          event: 'resync_snapshot',
          table: this.table,
          journal_epoch: this.cursor.epoch,
          through_seq: done.through,
          sweep_seq: done.sweepSeq,
        },
        `after the retention gap, every current row of ${this.table} was journaled again (resync, ending ` +
          'with a sweep); it goes to the cloud through the upload flow with what the journal kept',
      );
      mark.throughSeq = done.through;
      this.r.state.uploads.setMark(mark);
      this.cursor.journaledThrough(done.sweepSeq);
    }
    const first = this.cursor.sentSeq + 1;
    const last = Math.min(mark.throughSeq, this.cursor.counterSeq);
    const plan = first <= last ? this.r.journal.uploadPlan(this.cursor.tid, first, last) : undefined;
    const schema = this.r.journal.tableSchema(this.cursor.tid);
    if (!plan || !schema || plan.rows <= this.r.maxRows) {
      // One batch or less: the ordinary path is the cheaper one.
      this.r.state.uploads.clearMark(this.table);
      return false;
    }
    const rec = {
      uploadId: this.r.newId(),
      table: this.table,
      epoch: this.cursor.epoch,
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
    const job = this.newJob(rec);
    this.job = job;
    this.cursor.sentThrough(plan.lastSeq);
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
    job.step();
    return true;
  }

  /** Move the open upload on; true while it is still open. */
  step(): boolean {
    if (!this.job) return false;
    this.job.step();
    this.settle();
    return this.job !== null;
  }

  /** A finished upload: confirmed (the cursor moves past it) or abandoned (back to batches). */
  private settle(): void {
    const job = this.job;
    if (!job?.outcome) return;
    this.job = null;
    this.r.state.uploads.delete(job.uploadId);
    const mark = this.r.state.uploads.mark(this.table);
    if (job.outcome === 'confirmed') {
      this.cursor.announced(job.rec.schemaHash, job.rec.epoch);
      this.cursor.advanceTo(job.rec.lastSeq, []);
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
      if (mark && (mark.throughSeq ?? 0) <= this.cursor.confirmedSeq)
        this.r.state.uploads.clearMark(this.table);
    } else {
      this.r.state.uploads.clearMark(this.table);
      this.cursor.resendAfter(this.cursor.confirmedSeq);
      this.lane.drain();
    }
    this.r.wake();
  }

  /** A verified url_grant for this table. */
  onGrant(c: Control): string {
    if (!this.job) return 'no upload open for this table';
    const outcome = this.job.onGrant(c);
    this.settle();
    return outcome;
  }

  /** A receipt naming the open upload: true if it was this upload's (whatever it changed). */
  onReceipt(batchId: string, journalEpoch: string | undefined): boolean {
    if (!this.job || batchId !== this.job.uploadId) return false;
    if (journalEpoch === this.cursor.epoch && this.job.onReceipt()) this.settle();
    return true;
  }

  /** The epoch is over (retention drop): the open upload goes with it. */
  drop(): void {
    if (!this.job) return;
    this.r.state.uploads.delete(this.job.uploadId);
    this.job = null;
  }
}
