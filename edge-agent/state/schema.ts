import type Database from 'better-sqlite3';

/**
 * One step of state.db's layout. Steps run in order, each in one transaction with the
 * `PRAGMA user_version` it brings the file to, so a crash leaves a file at one version or the next.
 * Creates are `IF NOT EXISTS`: a state.db written before the file carried a version may hold any
 * of these tables already (see `unversionedLayout`).
 */
export type Migration = Readonly<{
  version: number;
  apply: (db: Database.Database) => void;
  /** Whether an unversioned state.db already has what this step makes. */
  present: (db: Database.Database) => boolean;
}>;

const tableNames = (db: Database.Database): Set<string> =>
  new Set(
    (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as { name: string }[]).map(
      (r) => r.name,
    ),
  );

const columnNames = (db: Database.Database, table: string): Set<string> =>
  new Set(
    (db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as { name: string }[]).map((c) => c.name),
  );

const hasTables =
  (...names: string[]) =>
  (db: Database.Database): boolean => {
    const have = tableNames(db);
    return names.every((n) => have.has(n));
  };

/** The columns that say where in the journal a state_write landed. */
const CLOUD_VERSION_POSITION = [
  ['prev_version', 'INTEGER'],
  ['from_seq', 'INTEGER'],
  ['epoch', 'TEXT'],
] as const;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    present: hasTables('tables', 'inflight', 'controls', 'cloud_versions', 'gaps'),
    apply: (db) =>
      db.exec(`
CREATE TABLE IF NOT EXISTS tables (
  name TEXT PRIMARY KEY, strategy TEXT NOT NULL, epoch TEXT, confirmed_seq INTEGER NOT NULL DEFAULT 0,
  schema_hash TEXT, announced_hash TEXT, announced_epoch TEXT,
  paused INTEGER NOT NULL DEFAULT 0, pause_epoch TEXT, server_watermark INTEGER,
  batch_seq INTEGER NOT NULL DEFAULT 0, cursor TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS inflight (
  batch_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, kind TEXT NOT NULL, epoch TEXT,
  first_seq INTEGER, last_seq INTEGER, with_schema INTEGER NOT NULL DEFAULT 0, batch_seq INTEGER,
  end_cursor TEXT, payload TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS controls (
  control_id TEXT PRIMARY KEY, kind TEXT NOT NULL, table_name TEXT NOT NULL, raw TEXT NOT NULL,
  received_at TEXT NOT NULL, acked_at TEXT, applied_at TEXT, outcome TEXT);
CREATE TABLE IF NOT EXISTS cloud_versions (
  table_name TEXT NOT NULL, pk TEXT NOT NULL, cloud_version INTEGER NOT NULL,
  PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, epoch TEXT NOT NULL, first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, reason TEXT NOT NULL,
  new_epoch TEXT, at TEXT NOT NULL);
`),
  },
  {
    // cloud_versions learns where in the journal a write landed (lkcv of changes made before it).
    version: 2,
    present: (db) => columnNames(db, 'cloud_versions').has('from_seq'),
    apply: (db) => {
      // An unversioned state.db may have some of them already.
      const have = columnNames(db, 'cloud_versions');
      for (const [col, type] of CLOUD_VERSION_POSITION) {
        if (!have.has(col)) db.exec(`ALTER TABLE cloud_versions ADD COLUMN ${col} ${type}`);
      }
    },
  },
  {
    // The newest pause/resume control of each table (replay protection).
    version: 3,
    present: hasTables('control_order'),
    apply: (db) =>
      db.exec(`
CREATE TABLE IF NOT EXISTS control_order (
  table_name TEXT PRIMARY KEY, issued_at TEXT NOT NULL, control_id TEXT NOT NULL) WITHOUT ROWID;
`),
  },
  {
    // The secondary upload flow.
    version: 4,
    present: hasTables('uploads', 'upload_marks'),
    apply: (db) =>
      db.exec(`
CREATE TABLE IF NOT EXISTS uploads (
  upload_id TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE, epoch TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, row_count INTEGER NOT NULL,
  schema_hash TEXT NOT NULL, sv INTEGER NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
  url TEXT, expires_at TEXT, requests INTEGER NOT NULL DEFAULT 0, finalize_id TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS upload_marks (
  table_name TEXT PRIMARY KEY, epoch TEXT NOT NULL, through_seq INTEGER, reason TEXT NOT NULL);
`),
  },
  {
    version: 5,
    present: hasTables('verify_reports'),
    apply: (db) =>
      db.exec(`
CREATE TABLE IF NOT EXISTS verify_reports (
  verify_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, columns TEXT NOT NULL, epoch TEXT, through_seq INTEGER,
  payload TEXT, created_at TEXT NOT NULL);
`),
  },
];

export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

/**
 * The version a state.db without `user_version` stands at: agents before versioning created
 * every table they knew on open and added cloud_versions' columns when missing, so the layout
 * itself says which steps are done (the longest run of steps present, from the first).
 */
export function unversionedLayout(db: Database.Database): number {
  let version = 0;
  for (const m of MIGRATIONS) {
    if (!m.present(db)) break;
    version = m.version;
  }
  return version;
}

/** Bring state.db to SCHEMA_VERSION; returns the version it was found at. */
export function migrate(db: Database.Database): number {
  const stamped = db.pragma('user_version', { simple: true }) as number;
  const found = stamped === 0 ? unversionedLayout(db) : stamped;
  // An unversioned file gets the version its layout shows, so the next open reads it from there.
  if (found !== stamped) db.pragma(`user_version = ${found}`);
  for (const m of MIGRATIONS) {
    if (m.version <= found) continue;
    db.transaction(() => {
      m.apply(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return found;
}
