import type { RowsLaneDeps } from './rows-deps';

/**
 * Where a rows table stands in its journal: what the cloud confirmed, what went into batches,
 * what the journal holds, and which schema the cloud was last sent. The confirmed cursor is
 * written to state.db before the journal rows it covers are deleted.
 */
export class RowsCursor {
  readonly tid: number;
  private epochNow: string;
  private confirmed: number;
  /** Last journal seq already put in a batch (or skipped as oversize). */
  private sent: number;
  /** The journal's counter as last read: rows up to here exist or were confirmed. */
  private counter: number;
  /**
   * The largest commit_seq put on the wire in this epoch, as far as this run knows (from the
   * confirmed cursor at start). With a row predicate, a verify reports this position: entries the
   * filter skipped never reach the cloud, which waits for the report's position to be taken in.
   */
  private wire: number;
  private cleanupThrough: number;
  private announcedHash: string | null;
  private announcedEpoch: string | null;

  constructor(
    private readonly table: string,
    private readonly r: Pick<RowsLaneDeps, 'journal' | 'state'>,
    reg: { tid: number; epoch: string; seq: number },
    st: { confirmedSeq: number; announcedHash: string | null; announcedEpoch: string | null },
  ) {
    this.tid = reg.tid;
    this.epochNow = reg.epoch;
    this.counter = reg.seq;
    this.confirmed = st.confirmedSeq;
    this.sent = st.confirmedSeq;
    this.cleanupThrough = st.confirmedSeq;
    this.wire = st.confirmedSeq;
    this.announcedHash = st.announcedHash;
    this.announcedEpoch = st.announcedEpoch;
  }

  get epoch(): string {
    return this.epochNow;
  }
  get confirmedSeq(): number {
    return this.confirmed;
  }
  get sentSeq(): number {
    return this.sent;
  }
  get counterSeq(): number {
    return this.counter;
  }
  get wireSeq(): number {
    return this.wire;
  }

  pending(): number {
    return Math.max(0, this.counter - this.confirmed);
  }

  unsent(): number {
    return Math.max(0, this.counter - this.sent);
  }

  /** Rows through `seq` are in a batch (or need none). */
  sentThrough(seq: number): void {
    this.sent = Math.max(this.sent, seq);
  }

  /** Send again from after `seq` (an abandoned upload, a batch rebuilt after a watermark). */
  resendAfter(seq: number): void {
    this.sent = seq;
  }

  onWire(seq: number): void {
    this.wire = Math.max(this.wire, seq);
  }

  /** The journal's counter as read now. */
  setCounter(seq: number): void {
    this.counter = seq;
  }

  /** The journal holds at least this much (a registration or a resync read it). */
  journaledThrough(seq: number): void {
    this.counter = Math.max(this.counter, seq);
  }

  /** Whether a batch of this schema hash must carry schema_columns. */
  needsSchema(hash: string): boolean {
    return hash !== this.announcedHash || this.epochNow !== this.announcedEpoch;
  }

  announced(hash: string, epoch: string): void {
    this.announcedHash = hash;
    this.announcedEpoch = epoch;
  }

  /** The next batch carries schema_columns (after a schema change, or a resync the cloud asked for). */
  resetAnnounced(): void {
    this.announcedHash = null;
    this.announcedEpoch = null;
    this.r.state.tables.resetAnnounced(this.table);
  }

  /** Cursor first (state.db), then the journal rows it covers. */
  advanceTo(seq: number, batchIds: readonly string[]): void {
    if (seq > this.confirmed || batchIds.length > 0) {
      this.confirmed = Math.max(this.confirmed, seq);
      this.r.state.batches.confirmRows(this.table, this.confirmed, batchIds);
      this.r.journal.confirmed(this.tid, this.epochNow, this.confirmed);
    }
    this.sent = Math.max(this.sent, this.confirmed);
    this.cleanupThrough = this.confirmed;
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

  /** A retention drop renumbered the journal into a new epoch: everything starts over there. */
  restart(epoch: string, counterSeq: number): void {
    this.epochNow = epoch;
    this.confirmed = 0;
    this.sent = 0;
    this.wire = 0;
    this.counter = counterSeq;
    this.cleanupThrough = 0;
    this.r.state.batches.resetEpoch(this.table, epoch);
  }
}
