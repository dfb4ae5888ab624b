import type { Control, Receipt } from '../../domain/protocol/contracts';
import type { UploadMark } from '../state/uploads';
import { Lane } from './lane';
import { RowsBatcher } from './rows-batcher';
import { RowsCursor } from './rows-cursor';
import type { RowsInflight, RowsLaneDeps } from './rows-deps';
import { RowsUploads, type UploadStats } from './rows-upload';
import { RowsVerify } from './rows-verify';

export type { RowsLaneDeps } from './rows-deps';

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
  private pauseEpoch: string | null = null;
  private readonly cursor: RowsCursor;
  private readonly verify: RowsVerify;
  private readonly uploads: RowsUploads;
  private readonly batcher: RowsBatcher;

  constructor(
    table: string,
    private readonly r: RowsLaneDeps,
    reg: { tid: number; epoch: string; seq: number },
  ) {
    super(table, r);
    const st = r.state.tables.get(table)!;
    this.cursor = new RowsCursor(table, r, reg, st);
    this.verify = new RowsVerify(table, r, this.cursor);
    this.uploads = new RowsUploads(table, r, this.cursor, {
      inflight: () => this.inflight.length,
      drain: () => this.drain(),
    });
    this.batcher = new RowsBatcher(table, r, this.cursor, this.verify);
    this.paused = st.paused;
    this.pauseEpoch = st.pauseEpoch;
    this.restore();
    this.uploads.restore();
  }

  get tid(): number {
    return this.cursor.tid;
  }
  get epoch(): string {
    return this.cursor.epoch;
  }
  get confirmedSeq(): number {
    return this.cursor.confirmedSeq;
  }

  /** The upload in progress, if any (while it is open, no batch of this table goes out). */
  uploadStats(): UploadStats | undefined {
    return this.uploads.stats();
  }

  /** The journal's counter of this table as read now (ignored if it names another registration). */
  setCounter(tid: number, seq: number): void {
    if (tid === this.cursor.tid) this.cursor.setCounter(seq);
  }

  /** The journal holds at least this much (a registration read it). */
  journaledThrough(seq: number): void {
    this.cursor.journaledThrough(seq);
  }

  /** Rows from `seq` on go through the upload flow (a large snapshot, or what follows a gap). */
  markForUpload(mark: Omit<UploadMark, 'table'>): void {
    this.uploads.mark(mark);
  }

  /** A verified url_grant for this table. */
  onGrant(c: Control): string {
    return this.uploads.onGrant(c);
  }

  /** The next batch carries schema_columns (after a schema change, or a resync the cloud asked for). */
  resetAnnounced(): void {
    this.cursor.resetAnnounced();
  }

  /** A verify the cloud asked for: its digest is taken when every change of the table is in a batch. */
  requestVerify(verifyId: string, columns: readonly string[]): void {
    this.verify.request(verifyId, columns);
    this.pump();
  }

  /** Delete confirmed journal rows; if the application holds the write lock, retry next tick. */
  cleanup(): void {
    this.cursor.cleanup();
  }

  /** Rebuild the in-flight window from state.db: same batch ids, same bytes. */
  private restore(): void {
    for (const rec of this.r.state.batches.inflight(this.table)) {
      if (rec.kind !== 'rows' || rec.firstSeq === null || rec.lastSeq === null) continue;
      if (rec.payload === null || rec.epoch !== this.cursor.epoch) {
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
      this.cursor.sentThrough(rec.lastSeq);
    }
    if (this.inflight.length > 0) {
      this.r.log.info(
        { event: 'restore_inflight', table: this.table, batches: this.inflight.length },
        'restored unconfirmed batches; they will be re-sent with the same batch ids and bytes',
      );
    }
  }

  pendingRows(): number {
    return this.cursor.pending();
  }

  pump(): void {
    this.verify.pumpReports();
    // An open upload goes on while paused: its rows are journaled already, and its finalize
    // is what lets the journal range go.
    if (this.uploads.step()) return;
    if (this.paused) return;
    // Its filter cannot apply to its schema now (the agent logs why): nothing of it goes out.
    if (this.r.journal.withheld(this.cursor.tid)) return;
    // A verify's digest is taken: nothing more of this table goes before its report, so the cloud
    // compares the mirror at exactly the digest's position.
    if (this.verify.held()) return;
    if (this.uploads.maybeStart()) return;
    while (!this.windowFull()) {
      if (this.cursor.unsent() === 0) {
        this.draining = false;
        this.verify.digestWhenIdle(this.uploads.open);
        return;
      }
      if (!this.draining && !this.batcher.full()) return;
      const next = this.batcher.next(this.inflight.length === 0, this.uploads.open);
      if (next === 'empty') {
        this.draining = false;
        return;
      }
      if (next !== 'skipped') {
        this.inflight.push(next);
        this.send(next);
      }
      if (this.verify.held()) return;
    }
  }

  onReceipt(r: Receipt): boolean {
    if (this.uploads.onReceipt(r.batch_id, r.journal_epoch)) return true;
    const b = this.inflight.find((x) => x.batchId === r.batch_id);
    if (!b) return false;
    if (r.journal_epoch !== undefined && r.journal_epoch !== this.cursor.epoch) {
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
    this.cursor.advanceTo(
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

  /** Rows through `w` are accepted by the cloud (a control's server_watermark). */
  private acceptThrough(w: number, why: string): void {
    const { cursor } = this;
    if (w > cursor.counterSeq) {
      this.r.log.warn(
        {
          event: 'watermark_ignored',
          table: this.table,
          server_watermark: w,
          journal_seq: cursor.counterSeq,
        },
        `${why}: server_watermark ${w} is beyond anything journaled in epoch ${cursor.epoch}; ignored, nothing deleted`,
      );
      return;
    }
    if (w < cursor.confirmedSeq) {
      this.r.log.warn(
        {
          event: 'watermark_behind',
          table: this.table,
          server_watermark: w,
          confirmed_seq: cursor.confirmedSeq,
        },
        `${why}: server_watermark ${w} is behind commit_seq ${cursor.confirmedSeq} already confirmed by receipts; ` +
          'those rows were deleted locally and are not sent again',
      );
      return;
    }
    const accepted: string[] = [];
    while (this.inflight[0] && this.inflight[0].lastSeq <= w) accepted.push(this.inflight.shift()!.batchId);
    cursor.advanceTo(w, accepted);
  }

  pause(watermark: number | undefined): void {
    const epoch = this.cursor.epoch;
    this.paused = true;
    this.pauseEpoch = epoch;
    this.r.state.tables.setPause(this.table, true, watermark ?? null, epoch);
    if (watermark !== undefined) this.acceptThrough(watermark, 'pause_lineage');
    this.r.log.warn(
      {
        event: 'pause',
        table: this.table,
        server_watermark: watermark,
        pending_rows: this.pendingRows(),
        journal_epoch: epoch,
      },
      `cloud paused ${this.table}: publishing stopped for this table, changes keep being journaled locally`,
    );
  }

  resume(watermark: number | undefined): void {
    const { cursor } = this;
    if (watermark !== undefined) {
      if (this.pauseEpoch !== null && this.pauseEpoch !== cursor.epoch) {
        this.r.log.warn(
          {
            event: 'watermark_ignored',
            table: this.table,
            server_watermark: watermark,
            journal_epoch: cursor.epoch,
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
        cursor.resendAfter(Math.max(cursor.confirmedSeq, this.inflight.at(-1)?.lastSeq ?? 0));
      }
    }
    this.paused = false;
    this.pauseEpoch = null;
    this.r.state.tables.setPause(this.table, false, null, null);
    this.draining = true;
    this.r.log.info(
      {
        event: 'resume',
        table: this.table,
        server_watermark: watermark,
        from_commit_seq: cursor.confirmedSeq + 1,
        pending_rows: this.pendingRows(),
      },
      `cloud resumed ${this.table}: draining from commit_seq ${cursor.confirmedSeq + 1}`,
    );
    this.resendAll();
    this.r.wake();
  }

  /** After a retention drop renumbered the journal into a new epoch. */
  restartEpoch(epoch: string, counterSeq: number): void {
    this.uploads.drop();
    // What follows a gap goes through the upload flow, with a resync snapshot of the table
    // journaled when it resumes (see docs/upload.md).
    this.uploads.mark({ epoch, throughSeq: null, reason: 'gap' });
    this.r.state.batches.drop(this.inflight.map((b) => b.batchId));
    this.inflight.length = 0;
    this.cursor.restart(epoch, counterSeq);
  }
}
