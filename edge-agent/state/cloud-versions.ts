import type Database from 'better-sqlite3';

/** The cloud versions state_write controls brought to this device, per key. */
export class CloudVersionStore {
  constructor(private readonly db: Database.Database) {}

  /**
   * Record the versions a state_write applied. A higher version moves the key on (the old one is
   * kept as `prev_version`, for changes journaled before the write); the same version again (a
   * write sent again after a conflict) leaves the record as it was.
   */
  set(
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
  get(table: string, pk: string): number | undefined {
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
  lookup(table: string, epoch: string): ((pk: string, commitSeq: number) => number | undefined) | undefined {
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
}
