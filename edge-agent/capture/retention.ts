import type { Logger } from 'pino';
import type { StateStore } from '../state/state-store';
import type { RowsLane } from '../publish/rows-lane';
import type { Journal } from './journal';

export type RetentionDeps = Readonly<{
  journal: Journal;
  state: StateStore;
  limitBytes: number;
  log: Logger;
  newEpoch: () => string;
  now: () => number;
}>;

const WARN_EVERY_MS = 60_000;
/** Measuring the journal is a scan: at most this often. */
const CHECK_EVERY_MS = 1_000;

/**
 * local_retention_bytes: when the journal outgrows it, drop the oldest entries of the largest
 * paused table (the cloud asked the device to hold those rows, so they are the ones at risk
 * anyway), record the gap in state.db, and move that table to a new journal_epoch so the cloud
 * sees a discontinuity instead of a silent hole. Never silent: every drop is an error line.
 * Tables that are not paused are never dropped: their rows are waiting for the broker.
 */
export class Retention {
  private lastWarn = 0;
  private lastCheck = 0;
  droppedRows = 0;

  constructor(private readonly d: RetentionDeps) {}

  enforce(lanes: readonly RowsLane[]): void {
    const { journal, limitBytes, log } = this.d;
    const now = this.d.now();
    if (now - this.lastCheck < CHECK_EVERY_MS) return;
    this.lastCheck = now;
    const busy = lanes.filter((l) => l.pendingRows() > 0);
    if (busy.length === 0) return;
    const sizes = busy.map((l) => ({ lane: l, ...journal.pendingSize(l.tid, l.confirmedSeq) }));
    const total = sizes.reduce((n, s) => n + s.bytes, 0);
    if (total <= limitBytes) return;

    const paused = sizes.filter((s) => s.lane.paused && s.rows > 0).sort((a, b) => b.bytes - a.bytes);
    if (paused.length === 0) {
      if (now - this.lastWarn >= WARN_EVERY_MS) {
        this.lastWarn = now;
        log.error(
          { event: 'retention_exceeded', journal_bytes: total, limit_bytes: limitBytes },
          `the journal holds ${total} bytes, over local_retention_bytes (${limitBytes}), and no table is paused: ` +
            'nothing was dropped, every change is kept until the cloud confirms it. Check the broker ' +
            'connection, or raise local_retention_bytes if the disk allows.',
        );
      }
      return;
    }
    let toFree = total - Math.floor(limitBytes * 0.9);
    for (const s of paused) {
      if (toFree <= 0) break;
      const lane = s.lane;
      const cut = journal.seqFreeing(lane.tid, lane.confirmedSeq, Math.min(toFree, s.bytes));
      if (cut.rows === 0) continue;
      const oldEpoch = lane.epoch;
      const newEpoch = this.d.newEpoch();
      const firstSeq = lane.confirmedSeq + 1;
      // The gap is recorded before the rows go, so even a crash mid-way leaves a trace.
      this.d.state.gaps.record({
        table: lane.table,
        epoch: oldEpoch,
        firstSeq,
        lastSeq: cut.lastSeq,
        rows: cut.rows,
        bytes: cut.bytes,
        reason: 'local_retention_bytes',
        newEpoch,
        at: new Date(this.d.now()).toISOString(),
      });
      const { kept } = journal.dropAndRenumber(lane.tid, cut.lastSeq, newEpoch);
      lane.restartEpoch(newEpoch, kept);
      this.droppedRows += cut.rows;
      toFree -= cut.bytes;
      log.error(
        {
          event: 'drop',
          table: lane.table,
          journal_epoch: oldEpoch,
          first_commit_seq: firstSeq,
          last_commit_seq: cut.lastSeq,
          rows: cut.rows,
          bytes: cut.bytes,
          new_journal_epoch: newEpoch,
          kept_rows: kept,
        },
        `DATA DROPPED: the journal outgrew local_retention_bytes (${limitBytes}) while ${lane.table} was paused; ` +
          `its oldest ${cut.rows} changes (epoch ${oldEpoch}, commit_seq ${firstSeq}..${cut.lastSeq}) were deleted. ` +
          `The remaining ${kept} changes continue in the new journal_epoch ${newEpoch} from commit_seq 1, so the ` +
          'cloud sees the discontinuity. The gap is recorded in state.db (table gaps). To recover those rows, ' +
          're-touch them in the application or re-enroll the table.',
      );
    }
  }
}
