import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import { normalizeWire, storageClassOf } from '../../domain/protocol/wire-values';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { migrate } from './migrations';
import { MaterializationError } from './values';

const TABLES = [
  'edge_cloud_lineages',
  'edge_cloud_rows',
  'edge_column_bindings',
  'edge_control_lineages',
  'edge_data_points',
  'edge_export_segments',
  'edge_mirror_coalesced_entries',
  'edge_mirror_coalesced_members',
  'edge_mirror_coalesced_tables',
  'edge_mirror_epochs',
  'edge_mirror_failures',
  'edge_mirror_held_rows',
  'edge_mirror_lineages',
  'edge_mirror_replays',
  'edge_mirror_reports',
  'edge_mirror_tables',
  'edge_mirror_tombstones',
  'edge_pending_controls',
  'edge_registry_reviews',
  'edge_rejections',
  'edge_replay_intents',
  'edge_schema_registry',
  'edge_schema_reviews',
  'edge_schema_versions',
  'edge_segment_lineages',
  'edge_staged_counts',
  'edge_staged_lineages',
  'edge_staged_rows',
  'edge_table_lineages',
  'edge_ts_coalesced_tables',
  'edge_ts_held_rows',
  'edge_ts_lineages',
  'edge_ts_replays',
  'edge_verify_runs',
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
      '0004_registry_coalescing',
      '0005_cloud_rows',
      '0006_exact_replication',
      '0007_last_seen',
      '0008_telemetry_reads',
    ]);
    const tables = await t.store.dialect.listTables(t.store.db);
    expect(tables.filter((n) => !n.startsWith('kysely_'))).toEqual(TABLES);
    expect(await migrate(t.store)).toEqual([]);
  });

  it('lets two stores migrate the same database concurrently', async () => {
    const other = t.reopen();
    await expect(Promise.all([migrate(t.store), migrate(other)])).resolves.toEqual([[], []]);
  });

  it('round-trips every storage class exactly through each column affinity', async () => {
    const { dialect, db } = t.store;
    // Per affinity, the values a device's column of that affinity can hold (SQLite applies the
    // affinity before the agent reads them); an untyped (BLOB) column holds every class.
    const reals: WireValue[] = [
      0.30000000000000004,
      3.141592653589793,
      1.5e-300,
      { $real: '5' },
      { $real: '9007199254740992' },
      { $real: '1.7976931348623157e+308' },
      { $real: 'Infinity' },
      { $real: '-Infinity' },
    ];
    const ints: WireValue[] = [
      0,
      -1,
      9007199254740991,
      { $int: '9007199254740992' },
      { $int: '9223372036854775807' },
      { $int: '-9223372036854775808' },
    ];
    const texts: WireValue[] = ['', 'Infinity', '5', 'héllo wörld ✓ 🚀', 'x'.repeat(10_000)];
    const blobs: WireValue[] = [{ $blob: '' }, { $blob: 'AAEC/v8=' }];
    const cases: [Affinity, WireValue][] = [
      ...ints.map((v): [Affinity, WireValue] => ['INTEGER', v]),
      ...reals.map((v): [Affinity, WireValue] => ['REAL', v]),
      ...texts.map((v): [Affinity, WireValue] => ['TEXT', v]),
      ...[...ints, ...reals, ...texts, ...blobs, { $real: '-0' } as WireValue].map(
        (v): [Affinity, WireValue] => ['BLOB', v],
      ),
      ...[...ints, ...reals.filter((r) => typeof r === 'number'), 'abc', ...blobs].map(
        (v): [Affinity, WireValue] => ['NUMERIC', v],
      ),
      // PostgreSQL's double precision keeps the sign of zero (SQLite's REAL column does not,
      // on the device either: it never sends -0 for a REAL column).
      ...(kind === 'postgres' ? [['REAL', { $real: '-0' }] as [Affinity, WireValue]] : []),
      ['INTEGER', null],
      ['BLOB', null],
    ];
    const affinities: Affinity[] = ['INTEGER', 'REAL', 'TEXT', 'BLOB', 'NUMERIC'];
    await dialect.exec(
      db,
      `CREATE TABLE "t_values" ("k" ${dialect.columnType('INTEGER')} PRIMARY KEY, ${affinities
        .map((a) => `"${a.toLowerCase()}" ${dialect.columnType(a)}`)
        .join(', ')})`,
      [],
    );
    await db.transaction().execute(async (tx) => {
      for (const [i, [a, v]] of cases.entries()) {
        await dialect.exec(
          tx,
          `INSERT INTO "t_values" ("k", "${a.toLowerCase()}") VALUES (${dialect.placeholder(1)}, ${dialect.placeholder(2)})`,
          [i, dialect.bindValue(a, v)],
        );
      }
    });
    const select = `SELECT "k", ${affinities.map((a) => `"${a.toLowerCase()}"`).join(', ')} FROM "t_values" ORDER BY "k"`;
    const outside = await dialect.execExact(db, select, []);
    const inside = await db.transaction().execute((tx) => dialect.execExact(tx, select, []));
    for (const rows of [outside, inside]) {
      const got = rows.map((r, i) => dialect.toWire(cases[i]![0], r[cases[i]![0].toLowerCase()]));
      expect(got).toEqual(cases.map(([, v]) => normalizeWire(v)));
      expect(got.map(storageClassOf)).toEqual(cases.map(([, v]) => storageClassOf(v)));
    }
  });

  it('refuses a value whose class the column type cannot hold rather than re-typing it', () => {
    const { dialect } = t.store;
    const bad: [Affinity, WireValue][] =
      kind === 'postgres'
        ? [
            ['INTEGER', 'abc'],
            ['INTEGER', 1.5],
            ['REAL', 'abc'],
            ['TEXT', { $blob: 'AA==' }],
            ['TEXT', 1.5],
            ['TEXT', 'a\u0000b'],
            ['INTEGER', { $int: '9223372036854775808' }],
          ]
        : [
            ['INTEGER', { $int: '9223372036854775808' }],
            ['BLOB', { $blob: 'A' }],
          ];
    for (const [a, v] of bad) {
      expect(() => dialect.bindValue(a, v)).toThrow(MaterializationError);
    }
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
