import Database from 'better-sqlite3';
import { BatchStore } from './batches';
import { CloudVersionStore } from './cloud-versions';
import { migrate, SCHEMA_VERSION } from './schema';
import { TableStore } from './tables';

/** The layout agents wrote before state.db carried a user_version, exactly as they created it. */
const UNVERSIONED_DDL = `
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
CREATE TABLE IF NOT EXISTS control_order (
  table_name TEXT PRIMARY KEY, issued_at TEXT NOT NULL, control_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_versions (
  table_name TEXT NOT NULL, pk TEXT NOT NULL, cloud_version INTEGER NOT NULL,
  prev_version INTEGER, from_seq INTEGER, epoch TEXT,
  PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, epoch TEXT NOT NULL, first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, reason TEXT NOT NULL,
  new_epoch TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
  upload_id TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE, epoch TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, row_count INTEGER NOT NULL,
  schema_hash TEXT NOT NULL, sv INTEGER NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
  url TEXT, expires_at TEXT, requests INTEGER NOT NULL DEFAULT 0, finalize_id TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS upload_marks (
  table_name TEXT PRIMARY KEY, epoch TEXT NOT NULL, through_seq INTEGER, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verify_reports (
  verify_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, columns TEXT NOT NULL, epoch TEXT, through_seq INTEGER,
  payload TEXT, created_at TEXT NOT NULL);
`;

const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const PK = '{"id":1}';
const now = () => '2026-01-01T00:00:00.000Z';

/** Every table with its columns, keys, indexes and rowid-ness: what the stores rely on. */
function layout(db: Database.Database): unknown {
  const tables = (
    db
      .prepare("SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%'")
      .all() as { name: string; wr: number }[]
  ).sort((a, b) => a.name.localeCompare(b.name));
  return tables.map((t) => ({
    ...t,
    columns: db.prepare('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)').all(t.name),
    indexes: db.prepare('SELECT name, "unique", origin FROM pragma_index_list(?) ORDER BY name').all(t.name),
  }));
}

function fillThrough(db: Database.Database): void {
  const tables = new TableStore(db, now);
  const batches = new BatchStore(db, now);
  tables.ensure('t', 'rows');
  batches.resetEpoch('t', EPOCH);
  batches.recordRowBatch({
    batchId: 'b-1',
    table: 't',
    epoch: EPOCH,
    firstSeq: 1,
    lastSeq: 5,
    withSchema: true,
    hash: 'h',
    payload: '{"rows":[]}',
  });
  new CloudVersionStore(db).set('t', [{ pk: PK, cloudVersion: 3, fromSeq: 2, epoch: EPOCH }]);
}

function expectFilled(db: Database.Database): void {
  expect(new TableStore(db, now).get('t')).toMatchObject({ epoch: EPOCH, announcedHash: 'h' });
  expect(new BatchStore(db, now).inflight('t').map((r) => [r.batchId, r.lastSeq])).toEqual([['b-1', 5]]);
  const lkcv = new CloudVersionStore(db).lookup('t', EPOCH)!;
  expect([lkcv(PK, 2), lkcv(PK, 3)]).toEqual([undefined, 3]);
}

describe('state.db schema', () => {
  it('takes an unversioned state.db of the current layout as the latest version and keeps its rows', () => {
    const fresh = new Database(':memory:');
    expect(migrate(fresh)).toBe(0);
    fillThrough(fresh);

    const old = new Database(':memory:');
    old.exec(UNVERSIONED_DDL);
    fillThrough(old);
    expect(migrate(old)).toBe(SCHEMA_VERSION);

    for (const db of [fresh, old]) {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expectFilled(db);
      // Opened again: nothing left to do.
      expect(migrate(db)).toBe(SCHEMA_VERSION);
      expectFilled(db);
    }
    expect(layout(old)).toEqual(layout(fresh));
    fresh.close();
    old.close();
  });

  it('brings the first unversioned layout (cloud_versions without its journal position) to the latest', () => {
    const fresh = new Database(':memory:');
    migrate(fresh);
    const first = new Database(':memory:');
    first.exec(`
CREATE TABLE tables (
  name TEXT PRIMARY KEY, strategy TEXT NOT NULL, epoch TEXT, confirmed_seq INTEGER NOT NULL DEFAULT 0,
  schema_hash TEXT, announced_hash TEXT, announced_epoch TEXT,
  paused INTEGER NOT NULL DEFAULT 0, pause_epoch TEXT, server_watermark INTEGER,
  batch_seq INTEGER NOT NULL DEFAULT 0, cursor TEXT, updated_at TEXT);
CREATE TABLE inflight (
  batch_id TEXT PRIMARY KEY, table_name TEXT NOT NULL, kind TEXT NOT NULL, epoch TEXT,
  first_seq INTEGER, last_seq INTEGER, with_schema INTEGER NOT NULL DEFAULT 0, batch_seq INTEGER,
  end_cursor TEXT, payload TEXT, created_at TEXT NOT NULL);
CREATE TABLE controls (
  control_id TEXT PRIMARY KEY, kind TEXT NOT NULL, table_name TEXT NOT NULL, raw TEXT NOT NULL,
  received_at TEXT NOT NULL, acked_at TEXT, applied_at TEXT, outcome TEXT);
CREATE TABLE cloud_versions (
  table_name TEXT NOT NULL, pk TEXT NOT NULL, cloud_version INTEGER NOT NULL,
  PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TABLE gaps (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, epoch TEXT NOT NULL, first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, reason TEXT NOT NULL,
  new_epoch TEXT, at TEXT NOT NULL);
INSERT INTO cloud_versions VALUES ('t', '${PK}', 7);
`);
    expect(migrate(first)).toBe(1);
    expect(first.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(layout(first)).toEqual(layout(fresh));
    expect(new CloudVersionStore(first).lookup('t', EPOCH)!(PK, 1)).toBe(7);
    fresh.close();
    first.close();
  });
});
