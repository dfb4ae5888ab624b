import { uuidv7 } from 'uuidv7';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { waitFor } from '../../tests/support/wait';
import type { ColumnBinding } from '../../domain/lineage/events';
import type { RowChange } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { startProjector, type Projector } from '../runner/projector';
import { quoteIdent } from '../store/identifiers';
import { listMirrorRows } from '../store/queries/mirror-rows';
import { bindAll, del, RecordingCommands, TestLineage, upsert } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const PROJECT = uuidv7();

describe.each(DIALECTS)('mirror projection (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  let commands: RecordingCommands;

  beforeAll(async () => {
    t = await openTestStore(kind);
    commands = new RecordingCommands();
    projector = await startProjector({ nc: nats.nc, store: t.store, commands, only: ['mirror'] });
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  /** A registered lineage whose schema is approved (all columns mirrored unless overridden). */
  async function approvedLineage(
    schema: SchemaColumns,
    bindings: readonly ColumnBinding[] = bindAll(schema),
  ) {
    const l = new TestLineage(nats.events, {
      project_id: PROJECT,
      device_id: uuidv7(),
      device_name: `dev-${kind}`,
      source_table: schema.table_name,
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(schema), l.queued(review, schema), l.paused('schema_review'));
    await l.append(l.claimed(review));
    await l.append(l.approved(review, schema, bindings), l.resumed('schema_review'));
    return l;
  }

  async function rows(l: TestLineage, opts: { limit?: number } = {}) {
    await projector.waitForCaughtUp();
    const page = await listMirrorRows(t.store.db, {
      project_id: PROJECT,
      lineage_id: l.lineage_id,
      limit: opts.limit ?? 500,
    });
    return page.items.map((r): Record<string, unknown> => ({ ...r.row, _seq: r.source_commit_seq }));
  }

  it('upserts by key, deletes, and never lets a lower position overwrite or resurrect a row', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e1 = uuidv7();
    await l.append(l.accepted(e1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { id: 2, mode: 'a' })]));
    await l.append(l.accepted(e1, [{ ...upsert(5, { id: 1, mode: 'b' }), op: 'update' }]));
    await l.append(l.accepted(e1, [{ ...upsert(3, { id: 1, mode: 'stale' }), op: 'update' }]));
    expect(await rows(l)).toEqual([
      { id: 1, mode: 'b', _seq: 5 },
      { id: 2, mode: 'a', _seq: 2 },
    ]);

    await l.append(l.accepted(e1, [del(6, { id: 2 })]));
    await l.append(l.accepted(e1, [upsert(4, { id: 2, mode: 'late insert' })]));
    await l.append(l.accepted(e1, [del(2, { id: 1 })])); // a delete older than the row: ignored
    expect(await rows(l)).toEqual([{ id: 1, mode: 'b', _seq: 5 }]);

    await l.append(l.accepted(e1, [upsert(7, { id: 2, mode: 'back' })]));
    // A new journal epoch (the agent reinitialised its journal) restarts commit_seq and still wins.
    const e2 = uuidv7();
    await l.append(l.accepted(e2, [{ ...upsert(1, { id: 1, mode: 'new epoch' }), op: 'update' }]));
    expect(await rows(l)).toEqual([
      { id: 1, mode: 'new epoch', _seq: 1 },
      { id: 2, mode: 'back', _seq: 7 },
    ]);
  });

  it('keeps only the latest change of a key within one batch', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    await l.append(
      l.accepted(e, [
        upsert(10, { id: 5, mode: 'a' }),
        { ...upsert(12, { id: 5, mode: 'c' }), op: 'update' },
        { ...upsert(11, { id: 5, mode: 'b' }), op: 'update' },
        upsert(20, { id: 6, mode: 'x' }),
        del(21, { id: 6 }),
        del(30, { id: 7 }),
        upsert(31, { id: 7, mode: 'reborn' }),
      ]),
    );
    expect(await rows(l)).toEqual([
      { id: 5, mode: 'c', _seq: 12 },
      { id: 7, mode: 'reborn', _seq: 31 },
    ]);
  });

  it('writes full 4096-row batches', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    const batch = (from: number, mode: string): RowChange[] =>
      Array.from({ length: 4096 }, (_, i) => upsert(from + i, { id: i, mode: `${mode}-${i}` }));
    await l.append(l.accepted(e, batch(1, 'first')));
    await l.append(
      l.accepted(e, [
        ...batch(5000, 'second').slice(0, 4000),
        ...Array.from({ length: 96 }, (_, i) => del(9000 + i, { id: 4000 + i })),
      ]),
    );
    await projector.waitForCaughtUp();
    const page = await listMirrorRows(t.store.db, {
      project_id: PROJECT,
      lineage_id: l.lineage_id,
      page: 8,
      limit: 500,
      count: true,
    });
    expect(page.total).toBe(4000);
    expect(page.items.map((r) => r.row.mode)).toEqual(
      Array.from({ length: 500 }, (_, i) => `second-${3500 + i}`),
    );
  });

  it('stores integers beyond 2^53 exactly and blobs byte for byte', async () => {
    const schema: SchemaColumns = {
      table_name: 'values_t',
      columns: [
        { name: 'k', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
        { name: 'i', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
        { name: 'n', decl_type_affinity: 'NUMERIC', pk_ordinal: 0, not_null: false },
        { name: 'r', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
        { name: 'b', decl_type_affinity: 'BLOB', pk_ordinal: 0, not_null: false },
      ],
    };
    const l = await approvedLineage(schema);
    const max = { $int: '9223372036854775807' };
    const min = { $int: '-9223372036854775808' };
    const blob = { $blob: Buffer.from([0, 1, 2, 250, 255]).toString('base64') };
    await l.append(
      l.accepted(uuidv7(), [
        upsert(1, { k: max, i: min, n: { $int: '123456789012345678' }, r: 1.5, b: blob }, ['k']),
        upsert(2, { k: 1, i: 9007199254740991, n: 2.25, r: null, b: { $blob: '' } }, ['k']),
      ]),
    );
    expect(await rows(l)).toEqual([
      { k: 1, i: 9007199254740991, n: 2.25, r: null, b: { $blob: '' }, _seq: 2 },
      { k: max, i: min, n: { $int: '123456789012345678' }, r: 1.5, b: blob, _seq: 1 },
    ]);
  });

  it('quotes hostile table and column names and never runs them', async () => {
    const hostile = [
      '"; DROP TABLE edge_table_lineages; --',
      'a"b',
      'semi;colon',
      'Ünïcödé 日本',
      'c'.repeat(200),
      'device_id',
    ];
    const schema: SchemaColumns = {
      table_name: '"; DROP TABLE x; --',
      columns: [
        { name: 'id"); --', decl_type_affinity: 'TEXT', pk_ordinal: 1, not_null: true },
        ...hostile.map((name) => ({
          name,
          decl_type_affinity: 'TEXT' as const,
          pk_ordinal: 0,
          not_null: false,
        })),
      ],
    };
    const bindings = bindAll(schema, { 'semi;colon': { target: "renamed'); DROP TABLE y; --" } });
    const l = await approvedLineage(schema, bindings);
    const row = Object.fromEntries(schema.columns.map((c) => [c.name, `v:${c.name}`]));
    await l.append(l.accepted(uuidv7(), [upsert(1, row, ['id"); --'])]));
    const [got] = await rows(l);
    const expected = Object.fromEntries(bindings.map((b) => [b.target!, `v:${b.column}`]));
    expect(got).toEqual({ ...expected, _seq: 1 });
    const detail = await listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id });
    expect(detail.table).toMatch(/^edge_mirror_[0-9a-f]{8}____drop_table_x_____[0-9a-f]{8}$/);
    const physical = detail.columns.map((c) => c.column);
    expect(new Set(physical.map((c) => c.toLowerCase())).size).toBe(physical.length);
    expect(physical).not.toContain('device_id');
    const tables = await t.store.dialect.listTables(t.store.db);
    expect(tables).toContain('edge_mirror_tables');
    expect(tables).not.toContain('x');
  });

  it('holds staged rows and replays them in commit order when released, then reports the replay once', async () => {
    const l = new TestLineage(nats.events, {
      project_id: PROJECT,
      device_id: uuidv7(),
      device_name: 'stager',
      source_table: 'device_state',
    });
    const review = uuidv7();
    const e = uuidv7();
    await l.append(
      l.registered(),
      l.observed(DEVICE_STATE),
      l.queued(review, DEVICE_STATE),
      l.paused('schema_review'),
    );
    // Out of commit order on purpose: the replay sorts.
    await l.append(l.staged(e, [upsert(3, { id: 1, mode: 'third' }), del(4, { id: 2 })]));
    await l.append(l.staged(e, [upsert(1, { id: 1, mode: 'first' }), upsert(2, { id: 2, mode: 'x' })]));
    expect(await rows(l)).toEqual([]);
    const replay = uuidv7();
    await l.append(l.claimed(review));
    await l.append(
      l.approved(review, DEVICE_STATE, bindAll(DEVICE_STATE)),
      l.resumed('schema_review'),
      l.released(replay, DEVICE_STATE),
    );
    expect(await rows(l)).toEqual([{ id: 1, mode: 'third', _seq: 3 }]);
    const held = await t.store.db
      .selectFrom('edge_mirror_held_rows')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('lineage_id', '=', l.lineage_id)
      .executeTakeFirstOrThrow();
    expect(Number(held.n)).toBe(0);
    await projector.waitForCaughtUp();
    const sent = () => commands.sent.filter((c) => c.lineageId === l.lineage_id);
    await waitFor(() => sent().length > 0, { message: 'CompleteReplay sent' });
    expect(sent()).toEqual([
      { lineageId: l.lineage_id, command: { type: 'CompleteReplay', data: { replay_id: replay, rows: 4 } } },
    ]);
    await l.append(l.completed(replay, 4));
    await projector.waitForCaughtUp();
    const r = await t.store.db
      .selectFrom('edge_mirror_replays')
      .selectAll()
      .where('replay_id', '=', replay)
      .executeTakeFirstOrThrow();
    expect(r.status).toBe('completed');
    expect(sent()).toHaveLength(1);
  });

  it('sends nothing while rebuilding, then CompleteReplay once for replays the domain has not completed', async () => {
    const released = async (complete: boolean) => {
      const l = new TestLineage(nats.events, {
        project_id: PROJECT,
        device_id: uuidv7(),
        device_name: 'replayer',
        source_table: 'device_state',
      });
      const review = uuidv7();
      const replay = uuidv7();
      await l.append(
        l.registered(),
        l.observed(DEVICE_STATE),
        l.queued(review, DEVICE_STATE),
        l.paused('schema_review'),
      );
      await l.append(l.staged(uuidv7(), [upsert(1, { id: 1, mode: 'a' })]));
      await l.append(l.claimed(review));
      await l.append(
        l.approved(review, DEVICE_STATE, bindAll(DEVICE_STATE)),
        l.resumed('schema_review'),
        l.released(replay, DEVICE_STATE),
      );
      if (complete) await l.append(l.completed(replay, 1));
      return { lineageId: l.lineage_id, replay };
    };
    const done = await released(true);
    const pending = await released(false);
    await projector.waitForCaughtUp();
    const sentFor = (id: string) => commands.sent.filter((c) => c.lineageId === id).length;
    await waitFor(() => sentFor(done.lineageId) === 1 && sentFor(pending.lineageId) === 1, {
      message: 'live sends',
    });

    const before = commands.sent.length;
    const positions: number[] = [];
    await projector.rebuild('mirror', {
      onProgress: (p) => {
        positions.push(p.position);
        // Nothing leaves the projector while history is refolded.
        if (p.position < p.target) expect(commands.sent.length).toBe(before);
      },
    });
    await waitFor(() => sentFor(pending.lineageId) === 2, {
      message: 'pending replay re-sent after the rebuild',
    });
    expect(sentFor(done.lineageId)).toBe(1);
    expect(commands.sent.slice(before).map((c) => c.lineageId)).not.toContain(done.lineageId);
    expect(positions.length).toBeGreaterThan(1);
  });

  it('adds columns for an additive approval and starts a new generation when the key changes', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    await l.append(l.accepted(e, [upsert(1, { id: 1, mode: 'a' })]));
    const wider: SchemaColumns = {
      ...DEVICE_STATE,
      columns: [
        ...DEVICE_STATE.columns,
        { name: 'fan', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
      ],
    };
    const r2 = uuidv7();
    await l.append(l.observed(wider, 'compatible_additive'), l.queued(r2, wider, 'compatible_additive'));
    await l.append(l.claimed(r2));
    await l.append(l.approved(r2, wider, bindAll(wider)));
    await l.append(l.accepted(e, [upsert(2, { id: 2, mode: 'b', fan: 3 })]));
    expect(await rows(l)).toEqual([
      { id: 1, mode: 'a', fan: null, _seq: 1 },
      { id: 2, mode: 'b', fan: 3, _seq: 2 },
    ]);
    const first = (await listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id })).table;

    const rekeyed: SchemaColumns = {
      ...wider,
      columns: wider.columns.map((c) => ({ ...c, pk_ordinal: c.name === 'mode' ? 1 : 0 })),
    };
    const r3 = uuidv7();
    await l.append(l.observed(rekeyed, 'breaking'), l.queued(r3, rekeyed, 'breaking'));
    await l.append(l.claimed(r3));
    await l.append(l.approved(r3, rekeyed, bindAll(rekeyed)));
    await l.append(l.accepted(e, [upsert(3, { id: 9, mode: 'k', fan: 1 }, ['mode'])]));
    expect(await rows(l)).toEqual([{ id: 9, mode: 'k', fan: 1, _seq: 3 }]);
    const detail = await getLineageTables(l.lineage_id);
    expect(detail).toEqual([
      { table_name: first, generation: 1, status: 'retired' },
      {
        table_name: expect.stringMatching(/^edge_mirror_[0-9a-f]{8}_device_state_[0-9a-f]{8}$/),
        generation: 2,
        status: 'current',
      },
    ]);
  });

  async function getLineageTables(lineageId: string) {
    return t.store.db
      .selectFrom('edge_mirror_tables')
      .select(['table_name', 'generation', 'status'])
      .where('lineage_id', '=', lineageId)
      .orderBy('generation')
      .execute();
  }

  it('records rows it cannot write on the lineage, reports them, and goes on', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    // One row without a key value fails alone; the others land.
    const seq = await l.append(
      l.accepted(e, [
        upsert(1, { id: 1, mode: 'ok' }),
        { commit_seq: 2, op: 'insert', pk: { id: null }, row: { id: null, mode: 'no key' } },
        upsert(3, { id: 3, mode: 'ok' }),
      ]),
    );
    expect(await rows(l)).toEqual([
      { id: 1, mode: 'ok', _seq: 1 },
      { id: 3, mode: 'ok', _seq: 3 },
    ]);
    const failures = await t.store.db
      .selectFrom('edge_mirror_failures')
      .selectAll()
      .where('lineage_id', '=', l.lineage_id)
      .execute();
    expect(failures).toMatchObject([
      { stream_seq: seq, event_type: 'RowsAccepted', code: 'missing_key', failed_rows: 1 },
    ]);

    // The table is dropped behind the mirror's back: a permanent failure, recorded, not fatal.
    const table = (await listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id }))
      .table!;
    await t.store.dialect.exec(t.store.db, `DROP TABLE ${quoteIdent(table)}`, []);
    await l.append(l.accepted(e, [upsert(4, { id: 4, mode: 'lost' }), upsert(5, { id: 5, mode: 'lost' })]));
    const other = await approvedLineage(DEVICE_STATE);
    await other.append(other.accepted(e, [upsert(1, { id: 1, mode: 'still flowing' })]));
    expect(await rows(other)).toEqual([{ id: 1, mode: 'still flowing', _seq: 1 }]);

    const m = await t.store.db
      .selectFrom('edge_mirror_lineages')
      .selectAll()
      .where('lineage_id', '=', l.lineage_id)
      .executeTakeFirstOrThrow();
    expect(m).toMatchObject({ materialization_errors: 2, failed_rows: 3 });
    expect(m.last_error).toMatch(kind === 'postgres' ? /^42P01: / : /no such table/);
    expect(commands.failures.filter((f) => f.lineageId === l.lineage_id)).toHaveLength(2);
    const status = await projector.status();
    expect(status.find((s) => s.name === 'mirror')).toMatchObject({ state: 'live', last_error: null });
    expect(status.find((s) => s.name === 'lineages')).toMatchObject({ state: 'idle' });
  });

  it('keeps a failure report until the domain has taken it, and re-sends it after a restart', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    const seq = await l.append(
      l.accepted(e, [{ commit_seq: 1, op: 'insert', pk: { id: null }, row: { id: null, mode: 'x' } }]),
    );
    const outbox = () =>
      t.store.db
        .selectFrom('edge_mirror_reports')
        .selectAll()
        .where('lineage_id', '=', l.lineage_id)
        .execute();
    await waitFor(async () => (await outbox()).length === 1, { message: 'report kept in the outbox' });
    const sent = () => commands.failures.filter((f) => f.lineageId === l.lineage_id).length;
    await waitFor(() => sent() === 1, { message: 'report sent after commit' });
    // As if the process had died after its commit and before the send: a restart sends it again.
    await projector.stop();
    projector = await startProjector({ nc: nats.nc, store: t.store, commands, only: ['mirror'] });
    await waitFor(() => sent() === 2, { message: 'report re-sent after the restart' });
    // The domain takes it: its MaterializationFailed comes back and the outbox copy goes.
    const report = commands.failures.find((f) => f.lineageId === l.lineage_id)!.info;
    await l.append({
      type: 'MaterializationFailed',
      data: {
        source_seq: seq,
        code: report.code,
        message: report.message,
        permanent: true,
        rows: report.rows,
        journal_epoch: report.journal_epoch,
        consecutive_failures: 1,
      },
    });
    await waitFor(async () => (await outbox()).length === 0, { message: 'outbox emptied' });
  });

  it('reports the failures of one decision (a release and the batch after it) as one report with every row', async () => {
    // The domain takes one report per (stream sequence, journal epoch): two reports for one
    // message would lose the second one's rows, which then were never staged nor replayed.
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    const table = (
      await (async () => {
        await l.append(l.accepted(e, [upsert(1, { id: 1, mode: 'ok' })]));
        await projector.waitForCaughtUp();
        return listMirrorRows(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id });
      })()
    ).table!;
    await l.append(l.staged(e, [upsert(2, { id: 2, mode: 'held' })], { reason: 'lineage_paused' }));
    await t.store.dialect.exec(t.store.db, `DROP TABLE ${quoteIdent(table)}`, []);
    const seq = await l.append(
      l.released(uuidv7(), DEVICE_STATE),
      l.accepted(e, [upsert(3, { id: 3, mode: 'live' }), del(4, { id: 1 })]),
    );
    await projector.waitForCaughtUp();
    await waitFor(() => commands.failures.some((f) => f.info.source_seq === seq));
    const reports = commands.failures.filter((f) => f.info.source_seq === seq);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.info).toMatchObject({
      journal_epoch: e,
      permanent: true,
      event_type: 'StagedRowsReleased',
    });
    expect(reports[0]!.info.rows.map((r) => r.commit_seq).sort()).toEqual([2, 3, 4]);
  });

  if (kind === 'postgres') {
    it('isolates a value PostgreSQL refuses (text in a bigint column) to its own row', async () => {
      const l = await approvedLineage(DEVICE_STATE);
      await l.append(
        l.accepted(uuidv7(), [
          upsert(1, { id: 1, mode: 'ok' }),
          upsert(2, { id: 'two', mode: 'bad' }),
          upsert(3, { id: 3, mode: 'ok' }),
        ]),
      );
      expect((await rows(l)).map((r) => r.id)).toEqual([1, 3]);
      const m = await t.store.db
        .selectFrom('edge_mirror_lineages')
        .selectAll()
        .where('lineage_id', '=', l.lineage_id)
        .executeTakeFirstOrThrow();
      expect(m).toMatchObject({ materialization_errors: 1, failed_rows: 1 });
      expect(m.last_error).toMatch(/^type_mismatch: /);
    });
  }
});
