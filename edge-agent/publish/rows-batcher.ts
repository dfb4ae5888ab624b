import { buildRowBatch } from './row-batch';
import type { RowsCursor } from './rows-cursor';
import type { RowsInflight, RowsLaneDeps } from './rows-deps';
import { reportLeftOut } from './rows-refusals';
import type { RowsVerify } from './rows-verify';

/**
 * What one read of the journal gave: nothing to read (`empty`), a range moved past with nothing
 * to send (`skipped`), or a batch recorded in state.db and ready to publish.
 */
export type NextBatch = 'empty' | 'skipped' | RowsInflight;

/** Reads the journal after the sent cursor and turns it into recorded batches. */
export class RowsBatcher {
  private avgRowBytes = 200;

  constructor(
    private readonly table: string,
    private readonly r: RowsLaneDeps,
    private readonly cursor: RowsCursor,
    private readonly verify: RowsVerify,
  ) {}

  /** What is unsent makes a batch at its caps (rows, or estimated bytes). */
  full(): boolean {
    const unsent = this.cursor.unsent();
    return unsent >= this.r.maxRows || unsent * this.avgRowBytes >= this.r.maxBytes;
  }

  /**
   * Read and record the next batch. A batch is recorded, with its exact payload, before it is
   * published: a restart re-sends the same batch_id with the same bytes.
   */
  next(windowEmpty: boolean, uploadOpen: boolean): NextBatch {
    const { cursor } = this;
    const want = uploadOpen ? undefined : this.verify.wanted();
    const read = this.r.journal.read(cursor.tid, cursor.sentSeq, this.r.maxRows, undefined, want?.columns);
    if (!read || read.throughSeq === 0) {
      cursor.sentThrough(cursor.counterSeq);
      return 'empty';
    }
    const batchId = this.r.newId();
    const res = buildRowBatch({
      batchId,
      table: this.table,
      epoch: cursor.epoch,
      hash: read.hash,
      fingerprint: read.fingerprint,
      changes: read.changes,
      withSchema: cursor.needsSchema(read.hash),
      lkcvOf: this.r.state.cloudVersions.lookup(this.table, cursor.epoch),
      maxRows: this.r.maxRows,
      maxBytes: this.r.maxBytes,
    });
    reportLeftOut(this.r, { table: this.table, epoch: cursor.epoch }, read, res);
    const b = res.batch;
    // The digest stands for this read only when the batch carries every change read.
    if (b) cursor.onWire(b.lastSeq);
    if (want && read.verify && res.throughSeq >= (read.changes.at(-1)?.commit_seq ?? 0)) {
      this.verify.digested(want.verifyId, read.verify);
    }
    // Nothing to send in what was read (placeholders, or changes left out): move past it.
    const through = b
      ? res.throughSeq
      : Math.max(res.throughSeq, read.changes.length === 0 ? read.throughSeq : 0);
    if (!b) {
      if (through === 0) return 'empty';
      cursor.sentThrough(through);
      // Nothing of it is in flight: it is as good as confirmed (the window holds nothing before it).
      if (windowEmpty) cursor.advanceTo(through, []);
      return 'skipped';
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
      epoch: cursor.epoch,
      firstSeq: b.firstSeq,
      lastSeq,
      withSchema: b.withSchema,
      hash: b.hash,
      payload: b.payload,
    });
    if (b.withSchema) cursor.announced(b.hash, cursor.epoch);
    this.avgRowBytes = Math.max(16, Math.round(b.bytes / b.rowCount));
    // Placeholders read after the last change of a full batch are read again next time: harmless.
    cursor.sentThrough(lastSeq);
    return {
      batchId,
      payload: b.payload,
      rows: b.rowCount,
      sentAt: 0,
      sends: 0,
      confirmed: false,
      firstSeq: b.firstSeq,
      lastSeq,
    };
  }
}
