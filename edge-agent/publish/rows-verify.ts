import type { VerifyResult } from '../capture/journal';
import type { RowsCursor } from './rows-cursor';
import type { RowsLaneDeps } from './rows-deps';

/**
 * The verifies the cloud asked for on one rows table. A verify's digest is taken when every
 * change of the table is in a batch; its report is published once every change through the
 * digest's position is confirmed, so the cloud compares the mirror at exactly that position.
 */
export class RowsVerify {
  private readonly sending = new Set<string>();

  constructor(
    private readonly table: string,
    private readonly r: RowsLaneDeps,
    private readonly cursor: RowsCursor,
  ) {}

  /** A verify asked for (a control is handled once: a second delivery changes nothing). */
  request(verifyId: string, columns: readonly string[]): void {
    this.r.state.verifyReports.add(verifyId, this.table, columns);
  }

  /** The oldest verify still waiting for its digest. */
  wanted(): { verifyId: string; columns: readonly string[] } | undefined {
    return this.r.state.verifyReports.of(this.table).find((r) => r.payload === null);
  }

  /** A digested report not published yet holds this table's batches. */
  held(): boolean {
    return this.r.state.verifyReports
      .of(this.table)
      .some((r) => r.payload !== null && r.epoch === this.cursor.epoch);
  }

  /** Nothing unsent: the digest can be taken now, if the log has not moved since. */
  digestWhenIdle(uploadOpen: boolean): void {
    const want = uploadOpen ? undefined : this.wanted();
    if (!want) return;
    const v = this.r.journal.verify(this.cursor.tid, want.columns, this.cursor.sentSeq);
    if (v) {
      this.digested(want.verifyId, v);
      this.pumpReports();
    }
  }

  digested(verifyId: string, digest: VerifyResult): void {
    const v = this.r.journal.hasPredicate(this.cursor.tid)
      ? { ...digest, throughSeq: Math.min(digest.throughSeq, this.cursor.wireSeq) }
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
      if (rep.epoch !== this.cursor.epoch) {
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
      if (this.cursor.confirmedSeq < rep.throughSeq || this.sending.has(rep.verifyId)) continue;
      if (!this.r.sender.connected() || !this.r.uploadsTopic) continue;
      this.sending.add(rep.verifyId);
      const payload = rep.payload;
      this.r.sender
        .publish(this.r.uploadsTopic, payload)
        .then(
          () => {
            this.sending.delete(rep.verifyId);
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
            this.sending.delete(rep.verifyId);
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
}
