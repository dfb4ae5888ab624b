import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { migrate } from './migrations';

const TABLES = [
  'edge_cloud_lineages',
  'edge_cloud_rows',
  'edge_column_bindings',
  'edge_control_lineages',
  'edge_export_segments',
  'edge_mirror_epochs',
  'edge_mirror_failures',
  'edge_mirror_held_rows',
  'edge_mirror_lineages',
  'edge_mirror_replays',
  'edge_mirror_reports',
  'edge_mirror_tables',
  'edge_mirror_tombstones',
  'edge_pending_controls',
  'edge_rejections',
  'edge_replay_intents',
  'edge_schema_reviews',
  'edge_schema_versions',
  'edge_segment_lineages',
  'edge_staged_counts',
  'edge_staged_lineages',
  'edge_staged_rows',
  'edge_table_lineages',
  'edge_ts_held_rows',
  'edge_ts_lineages',
  'edge_ts_replays',
  'projection_checkpoints',
];

describe.each(DIALECTS)('read store on %s', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore(kind, { migrate: false });
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('migrates an empty database to the full schema, then is a no-op', async () => {
    expect(await migrate(t.store)).toEqual([
      '0001_read_stores',
      '0002_staged_counts',
      '0003_mirror_reports',
      '0007_cloud_rows',
    ]);
    const tables = await t.store.dialect.listTables(t.store.db);
    expect(tables.filter((n) => !n.startsWith('kysely_'))).toEqual(TABLES);
    expect(await migrate(t.store)).toEqual([]);
  });

  it('lets two stores migrate the same database concurrently', async () => {
    const other = t.reopen();
    await expect(Promise.all([migrate(t.store), migrate(other)])).resolves.toEqual([[], []]);
  });

  it('round-trips exact integers beyond 2^53 and bytes', async () => {
    const { dialect, db } = t.store;
    await dialect.exec(
      db,
      `CREATE TABLE "t_values" ("i" ${dialect.columnType('INTEGER')}, "b" ${dialect.columnType('BLOB')}, "n" ${dialect.columnType('NUMERIC')})`,
      [],
    );
    const big = { $int: '9007199254740993' };
    await db.transaction().execute(async (tx) => {
      await dialect.exec(
        tx,
        `INSERT INTO "t_values" VALUES (${dialect.placeholder(1)}, ${dialect.placeholder(2)}, ${dialect.placeholder(3)})`,
        [
          dialect.bindValue('INTEGER', big),
          dialect.bindValue('BLOB', { $blob: 'AAEC/w==' }),
          dialect.bindValue('NUMERIC', 42),
        ],
      );
    });
    const [row] = await dialect.exec(db, 'SELECT * FROM "t_values"', []);
    expect(row!.i).toBe(9007199254740993n);
    expect(Buffer.from(row!.b as Buffer).toString('base64')).toBe('AAEC/w==');
    expect(row!.n).toBe(42);
  });

  if (kind === 'sqlite') {
    it('runs SQLite in WAL mode with a busy timeout', async () => {
      const mode = await t.store.dialect.exec(t.store.db, 'PRAGMA journal_mode', []);
      expect(mode[0]).toEqual({ journal_mode: 'wal' });
      const busy = await t.store.dialect.exec(t.store.db, 'PRAGMA busy_timeout', []);
      expect(Object.values(busy[0]!)[0]).toBe(5000);
    });
  }
});
