import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { BatchStore } from './batches';
import { CloudVersionStore } from './cloud-versions';
import { ControlStore } from './controls';
import { GapStore } from './gaps';
import { migrate } from './schema';
import { TableStore } from './tables';
import { UploadStore } from './uploads';
import { VerifyReportStore } from './verify-reports';

/** WAL pages after which a commit checkpoints (4 KiB pages: 256 KiB). */
const WAL_CHECKPOINT_PAGES = 64;
/** Size the WAL file is cut back to after a checkpoint. */
const WAL_LIMIT_BYTES = 256 * 1024;

/**
 * The agent's own state (state.db, WAL), one store per concern over one connection. Every write
 * that moves a cursor happens in one transaction with the in-flight bookkeeping it depends on
 * (see BatchStore), so a crash leaves either the old or the new position, never a mix.
 */
export class StateStore {
  readonly db: Database.Database;
  readonly tables: TableStore;
  readonly batches: BatchStore;
  readonly controls: ControlStore;
  readonly cloudVersions: CloudVersionStore;
  readonly uploads: UploadStore;
  readonly verifyReports: VerifyReportStore;
  readonly gaps: GapStore;

  constructor(path: string, now: () => Date = () => new Date()) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a power cut may lose the last commits but never corrupts; losing a
    // cursor move only means a batch is sent again, which the cloud dedupes.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // The WAL is checkpointed after this many pages (SQLite's default, 1000 pages, is 4 MiB: more
    // than a small state disk holds) and cut back to the limit once the checkpoint let it restart.
    // Unbounded, the WAL alone fills the disk, and it can then never be checkpointed: the
    // checkpoint has to grow state.db, on a disk the WAL fills.
    this.db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    this.db.pragma(`journal_size_limit = ${WAL_LIMIT_BYTES}`);
    migrate(this.db);
    const iso = () => now().toISOString();
    this.tables = new TableStore(this.db, iso);
    this.batches = new BatchStore(this.db, iso);
    this.controls = new ControlStore(this.db, iso);
    this.cloudVersions = new CloudVersionStore(this.db);
    this.uploads = new UploadStore(this.db, iso);
    this.verifyReports = new VerifyReportStore(this.db, iso);
    this.gaps = new GapStore(this.db);
  }

  close(): void {
    this.db.close();
  }

  /**
   * After a write failed on a full disk: no transaction left open, and what the WAL holds
   * checkpointed into state.db if there is room for that, so the next write starts the WAL over
   * instead of growing it. Never throws (the disk may still be full); never waits for a reader.
   */
  relieveFullDisk(): void {
    try {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Still full: the next write says so again.
    }
  }
}
