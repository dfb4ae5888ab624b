import type Database from 'better-sqlite3';
import { sha256 } from '@noble/hashes/sha256';
import { utf8ToBytes } from '@noble/hashes/utils';
import type { WireValue } from '../../domain/protocol/contracts';
import { canonicalJson } from '../../domain/shared/canonical';

/**
 * The keys of a filtered table (one with a row predicate) that the cloud may hold, in state.db.
 *
 * A change whose row does not match the predicate is sent as a delete only when its key is here
 * (the row left the filter, or the cloud may still have it); otherwise nothing of it is sent, not
 * even its key. The set is a superset of what the cloud holds:
 * - a key goes in (add_seq) when a read puts its row in a batch, before the batch is published;
 * - a delete read for it records its commit_seq (del_seq); the key leaves only once that delete is
 *   confirmed and no later upsert of it was read (add_seq < del_seq). A range read again (a
 *   resume, an abandoned upload) finds the key still here and sends the delete again.
 * Commit_seqs compare within one journal_epoch: a key seen in another epoch stays (harmless).
 */
export class FilterKeys {
  private readonly add: Database.Statement;
  private readonly del: Database.Statement;
  private readonly get: Database.Statement;
  private readonly settle: Database.Statement;

  constructor(readonly db: Database.Database) {
    db.exec(
      'CREATE TABLE IF NOT EXISTS filter_keys (tid INTEGER NOT NULL, key BLOB NOT NULL, epoch TEXT NOT NULL, ' +
        'add_seq INTEGER NOT NULL, del_seq INTEGER, PRIMARY KEY (tid, key)) WITHOUT ROWID',
    );
    // Confirmations look up pending deletes only.
    db.exec(
      'CREATE INDEX IF NOT EXISTS filter_keys_del ON filter_keys (tid, del_seq) WHERE del_seq IS NOT NULL',
    );
    this.add = db.prepare(
      `INSERT INTO filter_keys (tid, key, epoch, add_seq) VALUES (?, ?, ?, ?)
       ON CONFLICT (tid, key) DO UPDATE SET
         add_seq = CASE WHEN epoch = excluded.epoch THEN max(add_seq, excluded.add_seq) ELSE excluded.add_seq END,
         del_seq = CASE WHEN epoch = excluded.epoch THEN del_seq ELSE NULL END,
         epoch = excluded.epoch`,
    );
    this.del = db.prepare(
      `UPDATE filter_keys SET
         del_seq = CASE WHEN epoch = @epoch THEN max(coalesce(del_seq, 0), @seq) ELSE @seq END,
         add_seq = CASE WHEN epoch = @epoch THEN add_seq ELSE 0 END,
         epoch = @epoch
       WHERE tid = @tid AND key = @key`,
    );
    this.get = db.prepare('SELECT 1 FROM filter_keys WHERE tid = ? AND key = ?').pluck();
    this.settle = db.prepare(
      'DELETE FROM filter_keys WHERE tid = ? AND epoch = ? AND del_seq IS NOT NULL AND del_seq <= ? AND add_seq < del_seq',
    );
  }

  /** 16 bytes of the SHA-256 of the key's canonical JSON: no key value is stored here. */
  static keyOf(pk: Readonly<Record<string, WireValue>>): Buffer {
    return Buffer.from(sha256(utf8ToBytes(canonicalJson(pk))).subarray(0, 16));
  }

  has(tid: number, key: Buffer): boolean {
    return this.get.get(tid, key) !== undefined;
  }

  sent(tid: number, key: Buffer, epoch: string, seq: number): void {
    this.add.run(tid, key, epoch, seq);
  }

  deleted(tid: number, key: Buffer, epoch: string, seq: number): void {
    this.del.run({ tid, key, epoch, seq });
  }

  /** Every change of the table through `seq` is confirmed: keys whose delete is confirmed leave. */
  confirmed(tid: number, epoch: string, seq: number): void {
    this.settle.run(tid, epoch, seq);
  }

  /** Run `fn` in one state.db transaction (a read's keys are written together). */
  batch<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
