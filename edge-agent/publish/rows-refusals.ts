import type { ReadResult } from '../capture/journal';
import type { RowBatchResult } from './row-batch';
import type { RowsLaneDeps } from './rows-deps';

/**
 * Say what of a read did not travel as an ordinary change: changes refused (too large, or not
 * encodable) go to the cloud as `refused` with their key and the table flows on; a change whose
 * key alone is too large cannot even be refused, and is recorded as a gap in state.db.
 */
export function reportLeftOut(
  d: Pick<RowsLaneDeps, 'log' | 'state' | 'now'>,
  at: Readonly<{ table: string; epoch: string }>,
  read: ReadResult,
  res: RowBatchResult,
): void {
  const { table, epoch } = at;
  for (const o of res.tooLarge) {
    d.log.error(
      {
        event: 'refused',
        code: 'row_too_large',
        table,
        journal_epoch: epoch,
        commit_seq: o.seq,
        bytes: o.bytes,
      },
      `change ${o.seq} of ${table} is ${o.bytes} bytes, more than max_batch_bytes even alone; ` +
        'it goes to the cloud as refused (row_too_large) with its key, and the table flows on. Shrink the row ' +
        'or raise max_batch_bytes, then touch the row to send it again.',
    );
  }
  for (const seq of res.unsendable) {
    d.log.error(
      { event: 'drop_oversize', table, journal_epoch: epoch, commit_seq: seq },
      `change ${seq} of ${table} has a key larger than max_batch_bytes: not even a refusal can carry it; ` +
        'left out (recorded as a gap in state.db).',
    );
    d.state.gaps.record({
      table,
      epoch,
      firstSeq: seq,
      lastSeq: seq,
      rows: 1,
      bytes: 0,
      reason: 'oversize_key',
      newEpoch: null,
      at: new Date(d.now()).toISOString(),
    });
  }
  for (const c of res.batch ? read.changes : []) {
    if (c.op === 'refused' && c.commit_seq <= res.throughSeq) {
      d.log.error(
        {
          event: 'refused',
          code: c.refusal?.code,
          column: c.refusal?.column,
          table,
          commit_seq: c.commit_seq,
        },
        `change ${c.commit_seq} of ${table} cannot be encoded (${c.refusal?.message ?? ''}); it goes to the ` +
          'cloud as refused with its key, and the table flows on. Fix the value in the application to send the row again.',
      );
    }
  }
}
