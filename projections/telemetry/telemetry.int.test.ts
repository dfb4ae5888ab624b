import { uuidv7 } from 'uuidv7';
import type { WireValue } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { storageClassOf } from '../../domain/protocol/wire-values';
import { waitFor } from '../../tests/support/wait';
import { startProjector, type Projector } from '../runner/projector';
import { quoteIdent } from '../store/identifiers';
import { getLineage } from '../store/queries/lineage-detail';
import { bindAll, RecordingCommands, TestLineage } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const TEMPS: SchemaColumns = {
  table_name: 'temps',
  columns: [
    { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'value_c', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'humidity', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
  ],
};

describe.each(DIALECTS)('telemetry projection (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  let commands: RecordingCommands;
  beforeAll(async () => {
    t = await openTestStore(kind);
    commands = new RecordingCommands();
    projector = await startProjector({
      nc: nats.nc,
      store: t.store,
      commands,
      only: ['lineages', 'telemetry'],
    });
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  it('holds staged batches, writes them on release, appends live ones, and widens the table', async () => {
    const project = uuidv7();
    const l = new TestLineage(nats.events, {
      project_id: project,
      device_id: uuidv7(),
      device_name: 'sensor',
      source_table: 'temps',
      kind: 'telemetry',
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(TEMPS), l.queued(review, TEMPS), l.paused('schema_review'));
    await l.append(
      l.telemetry(
        1,
        [
          { ts: '2026-04-28T09:00:01Z', fields: { value_c: 21.5, humidity: 40 } },
          {
            ts: '2026-04-28T09:00:02Z',
            row_id: '01900000-0000-7000-8000-00000000000a',
            fields: { value_c: 21.7 },
          },
        ],
        'schema_review',
      ),
    );
    await l.append(l.claimed(review));
    const replay = uuidv7();
    const bindings = bindAll(TEMPS, {
      ts: { action: 'ignore', target: null },
      value_c: { action: 'map', target: 'temperature' },
    });
    await l.append(
      l.approved(review, TEMPS, bindings),
      l.resumed('schema_review'),
      l.released(replay, TEMPS),
    );
    await l.append(l.telemetry(2, [{ ts: '2026-04-28T09:00:03Z', fields: { value_c: 22, humidity: 41 } }]));
    await projector.waitForCaughtUp();

    const detail = await getLineage(t.store.db, project, l.lineage_id);
    expect(detail).toMatchObject({
      kind: 'telemetry',
      staged_rows: 0,
      // The two replayed rows count as materialized once the domain records ReplayCompleted.
      replaying_rows: 2,
      materialized_rows: 1,
      last_batch_seq: 2,
    });
    const table = detail!.materialization.table_name!;
    expect(table).toMatch(/^edge_ts_[0-9a-f]{8}_temps$/);
    const read = () =>
      t.store.dialect.exec(
        t.store.db,
        `SELECT * FROM ${quoteIdent(table)} ORDER BY batch_seq, batch_row`,
        [],
      );
    expect(await read()).toEqual([
      {
        device_id: l.ids.device_id,
        event_ts: '2026-04-28T09:00:01Z',
        event_ms: Date.parse('2026-04-28T09:00:01Z'),
        row_id: null,
        batch_seq: 1,
        batch_row: 0,
        temperature: 21.5,
        humidity: 40,
      },
      {
        device_id: l.ids.device_id,
        event_ts: '2026-04-28T09:00:02Z',
        event_ms: Date.parse('2026-04-28T09:00:02Z'),
        row_id: '01900000-0000-7000-8000-00000000000a',
        batch_seq: 1,
        batch_row: 1,
        temperature: 21.7,
        humidity: null,
      },
      {
        device_id: l.ids.device_id,
        event_ts: '2026-04-28T09:00:03Z',
        event_ms: Date.parse('2026-04-28T09:00:03Z'),
        row_id: null,
        batch_seq: 2,
        batch_row: 0,
        temperature: 22,
        humidity: 41,
      },
    ]);
    await waitFor(() => commands.sent.some((c) => c.lineageId === l.lineage_id), {
      message: 'CompleteReplay',
    });
    expect(commands.sent.filter((c) => c.lineageId === l.lineage_id)).toEqual([
      { lineageId: l.lineage_id, command: { type: 'CompleteReplay', data: { replay_id: replay, rows: 2 } } },
    ]);

    const wider: SchemaColumns = {
      ...TEMPS,
      columns: [
        ...TEMPS.columns,
        { name: 'pressure', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
      ],
    };
    const r2 = uuidv7();
    await l.append(l.observed(wider, 'compatible_additive'), l.queued(r2, wider, 'compatible_additive'));
    await l.append(l.claimed(r2));
    await l.append(l.approved(r2, wider, bindAll(wider, { ts: { action: 'ignore', target: null } })));
    await l.append(
      l.telemetry(3, [{ ts: '2026-04-28T09:00:04Z', fields: { value_c: 23, humidity: 42, pressure: 1013 } }]),
    );
    await projector.waitForCaughtUp();
    const rows = await read();
    expect(rows.at(-1)).toMatchObject({ batch_seq: 3, value_c: 23, temperature: null, pressure: 1013 });
    expect(rows[0]).toMatchObject({ temperature: 21.5, value_c: null, pressure: null });

    await l.append(l.deleted());
    await projector.waitForCaughtUp();
    expect(await t.store.dialect.listTables(t.store.db)).not.toContain(table);
  });

  it('keeps every value and its storage class, with the mirror codec', async () => {
    const schema: SchemaColumns = {
      table_name: 'readings',
      columns: [
        { name: 'i', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
        { name: 'r', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
        { name: 'u', decl_type_affinity: 'BLOB', pk_ordinal: 0, not_null: false },
      ],
    };
    const project = uuidv7();
    const l = new TestLineage(nats.events, {
      project_id: project,
      device_id: uuidv7(),
      device_name: 'sensor',
      source_table: 'readings',
      kind: 'telemetry',
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(schema), l.queued(review, schema), l.paused('schema_review'));
    await l.append(l.claimed(review));
    await l.append(l.approved(review, schema, bindAll(schema)), l.resumed('schema_review'));
    const fields: Record<string, WireValue>[] = [
      { i: { $int: '9223372036854775807' }, r: { $real: '5' }, u: 5 },
      { i: 5, r: { $real: 'Infinity' }, u: { $real: '-0' } },
      { i: -1, r: 0.30000000000000004, u: { $blob: 'AAEC/v8=' } },
      { i: null, r: { $real: '-Infinity' }, u: 'Infinity' },
    ];
    await l.append(
      l.telemetry(
        1,
        fields.map((f, i) => ({ ts: `2026-04-28T09:00:0${i}Z`, fields: f })),
      ),
    );
    await projector.waitForCaughtUp();
    const table = (await getLineage(t.store.db, project, l.lineage_id))!.materialization.table_name!;
    const rows = await t.store.dialect.execExact(
      t.store.db,
      `SELECT "i", "r", "u" FROM ${quoteIdent(table)} ORDER BY "batch_row"`,
      [],
    );
    const affinity = { i: 'INTEGER', r: 'REAL', u: 'BLOB' } as const;
    const got = rows.map((r) =>
      Object.fromEntries(
        (['i', 'r', 'u'] as const).map((c) => [c, t.store.dialect.toWire(affinity[c], r[c])]),
      ),
    );
    expect(got).toEqual(fields);
    expect(got.map((r) => Object.values(r).map(storageClassOf))).toEqual(
      fields.map((r) => Object.values(r).map(storageClassOf)),
    );
  });
});
