import { uuidv7 } from 'uuidv7';
import type { ColumnBinding, LineageEvent } from '../../domain/lineage/events';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import { type SchemaColumns, schemaHash } from '../../domain/protocol/fingerprint';
import { BucketDigests, bucketOf, normalizeWire, storageClassOf } from '../../domain/protocol/wire-values';
import { pkHash } from '../../domain/shared/canonical';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { waitFor } from '../../tests/support/wait';
import { startProjector, type Projector } from '../runner/projector';
import { quoteIdent } from '../store/identifiers';
import { getLineage } from '../store/queries/lineage-detail';
import { listMirrorRows } from '../store/queries/mirror-rows';
import { getReview } from '../store/queries/reviews';
import { listStagedRows } from '../store/queries/staged-rows';
import { listVerifyRuns } from '../store/queries/verify';
import { dumpStore } from '../test-support/dump';
import { bindAll, RecordingCommands, TestLineage, upsert } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const VALUES: SchemaColumns = {
  table_name: 'vals',
  columns: [
    { name: 'k', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'i', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
    { name: 'r', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 't', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
    { name: 'b', decl_type_affinity: 'BLOB', pk_ordinal: 0, not_null: false },
    { name: 'n', decl_type_affinity: 'NUMERIC', pk_ordinal: 0, not_null: false },
  ],
};

const sweep = (commit_seq: number, since: number, buckets: number[] | null = null): RowChange => ({
  commit_seq,
  op: 'sweep',
  pk: {},
  row: null,
  sweep: { resync_id: uuidv7(), since_commit_seq: since, buckets },
});

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(DIALECTS)('exact replication in the mirror (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  let commands: RecordingCommands;
  const PROJECT = uuidv7();

  beforeAll(async () => {
    t = await openTestStore(kind);
    commands = new RecordingCommands();
    projector = await startProjector({
      nc: nats.nc,
      store: t.store,
      commands,
      only: ['mirror', 'lineages', 'staged_rows'],
    });
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  function lineage(schema: SchemaColumns, device_id = uuidv7()) {
    return new TestLineage(nats.events, {
      project_id: PROJECT,
      device_id,
      device_name: `dev-${kind}`,
      source_table: schema.table_name,
    });
  }

  async function approvedLineage(
    schema: SchemaColumns,
    bindings: readonly ColumnBinding[] = bindAll(schema),
  ) {
    const l = lineage(schema);
    const review = uuidv7();
    await l.append(l.registered(), l.observed(schema), l.queued(review, schema), l.paused('schema_review'));
    await l.append(l.claimed(review));
    await l.append(l.approved(review, schema, bindings), l.resumed('schema_review'));
    return l;
  }

  /** A lineage that took a project-scope registry approval: it writes to the coalesced table. */
  async function coalescedLineage(schema: SchemaColumns, registry_id: string) {
    const l = lineage(schema);
    await l.append(l.registered(), l.observed(schema));
    await l.append({
      type: 'SchemaApprovedByRegistry',
      data: {
        registry_id,
        review_id: null,
        schema_hash: schemaHash(schema),
        scope: 'project',
        scope_id: PROJECT,
        bindings: bindAll(schema),
      },
    });
    return l;
  }

  async function mirrorRows(l: TestLineage) {
    await projector.waitForCaughtUp();
    const page = await listMirrorRows(t.store.db, {
      project_id: PROJECT,
      lineage_id: l.lineage_id,
      limit: 500,
    });
    return page;
  }
  const ids = async (l: TestLineage) => (await mirrorRows(l)).items.map((r) => r.row.id);

  it('keeps every value and its storage class through apply and read, and a rebuild reproduces it', async () => {
    const l = await approvedLineage(VALUES);
    const rows: Record<string, WireValue>[] = [
      { k: 1, i: 0, r: 0.30000000000000004, t: '', b: { $real: '-0' }, n: 5 },
      { k: 2, i: { $int: '9223372036854775807' }, r: { $real: '5' }, t: 'Infinity', b: 5, n: 2.5 },
      {
        k: 3,
        i: { $int: '-9223372036854775808' },
        r: { $real: 'Infinity' },
        t: 'héllo ✓ 🚀',
        b: { $blob: '' },
        n: 'abc',
      },
      { k: 4, i: -1, r: { $real: '-Infinity' }, t: '5', b: { $blob: 'AAEC/v8=' }, n: { $blob: 'AA==' } },
      { k: 5, i: 9007199254740991, r: 1.5e-300, t: 'x'.repeat(5000), b: 'text', n: { $real: 'Infinity' } },
      { k: 6, i: null, r: { $real: '9007199254740992' }, t: null, b: { $int: '9007199254740993' }, n: null },
      {
        k: 7,
        i: { $int: '9007199254740992' },
        r: 3.141592653589793,
        t: '0.3',
        b: 0.30000000000000004,
        n: { $int: '-9223372036854775808' },
      },
      {
        k: 8,
        i: 42,
        r: { $real: '1.7976931348623157e+308' },
        t: 'null',
        b: { $real: 'Infinity' },
        n: { $real: '-Infinity' },
      },
      { k: 9, i: 7, r: null, t: 'a', b: null, n: 0.1 },
    ];
    // PostgreSQL's double precision keeps -0.0; a SQLite REAL column (the device's too) does not.
    if (kind === 'postgres') rows.push({ k: 10, i: 1, r: { $real: '-0' }, t: 'z', b: { $real: '5' }, n: 1 });
    await l.append(
      l.accepted(
        uuidv7(),
        rows.map((r, i) => upsert(i + 1, r, ['k'])),
      ),
    );
    const read = async () => (await mirrorRows(l)).items.map((r) => r.row);
    const got = await read();
    const want = rows.map((r) =>
      Object.fromEntries(Object.entries(r).map(([c, v]) => [c, normalizeWire(v)])),
    );
    expect(got).toEqual(want);
    const classes = (rs: Record<string, WireValue>[]) =>
      rs.map((r) => Object.fromEntries(Object.entries(r).map(([c, v]) => [c, storageClassOf(v)])));
    expect(classes(got)).toEqual(classes(rows));
    // -0 is not 0 (toEqual treats them alike for numbers, not for $real text).
    expect(got[0]!.b).toEqual({ $real: '-0' });

    const onlyMirror = (n: string) => n.startsWith('edge_mirror_');
    const before = await dumpStore(t.store, onlyMirror);
    await projector.rebuild('mirror');
    expect(await read()).toEqual(got);
    expect(await dumpStore(t.store, onlyMirror)).toEqual(before);
  });

  it('pages by key with a cursor over keys of every storage class, a coalesced table too', async () => {
    const KEYED: SchemaColumns = {
      table_name: 'keyed',
      columns: [
        { name: 'g', decl_type_affinity: 'TEXT', pk_ordinal: 1, not_null: true },
        { name: 'k', decl_type_affinity: 'BLOB', pk_ordinal: 2, not_null: true },
        { name: 'v', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
      ],
    };
    const ks: WireValue[] = [
      { $int: '9007199254740993' },
      { $int: '9007199254740992' },
      { $real: '5' },
      6,
      { $real: '-Infinity' },
      { $blob: 'AAH/' },
      { $blob: '' },
      'x',
      'X "q" \\',
    ];
    const changes = ['b', 'a', 'é'].flatMap((g, gi) =>
      ks.map((k, ki) => upsert(gi * 100 + ki + 1, { g, k, v: ki }, ['g', 'k'])),
    );
    const registry = uuidv7();
    const lineages = [await approvedLineage(KEYED), await coalescedLineage(KEYED, registry)];
    await coalescedLineage(KEYED, registry).then((other) =>
      other.append(other.accepted(uuidv7(), [upsert(1, { g: 'a', k: 1, v: 0 }, ['g', 'k'])])),
    );
    for (const l of lineages) {
      await l.append(l.accepted(uuidv7(), changes));
      const all = await mirrorRows(l);
      expect(all.total).toBeNull();
      expect(all.items).toHaveLength(changes.length);
      const paged: unknown[] = [];
      let after: string | undefined;
      for (let n = 0; n < 20; n++) {
        const p = await listMirrorRows(t.store.db, {
          project_id: PROJECT,
          lineage_id: l.lineage_id,
          limit: 4,
          count: true,
          ...(after ? { after } : {}),
        });
        expect(p.total).toBe(changes.length);
        paged.push(...p.items);
        if (!p.next_cursor) break;
        after = p.next_cursor;
      }
      // The same rows in the same order, values exact, as one page by OFFSET gives them.
      expect(paged).toEqual(all.items);
    }
    await expect(
      listMirrorRows(t.store.db, {
        project_id: PROJECT,
        lineage_id: lineages[0]!.lineage_id,
        after: 'bm90IGpzb24',
      }),
    ).rejects.toThrow(RangeError);
  });

  it('sweeps every older row of the table (an older epoch too) and tombstones it', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e1 = uuidv7();
    await l.append(
      l.accepted(
        e1,
        range(1, 20).map((id) => upsert(id, { id, mode: 'old' })),
      ),
    );
    // A resync in a new journal epoch: ids 1..10 are all the device still has.
    const e2 = uuidv7();
    await l.append(
      l.accepted(e2, [...range(1, 10).map((id) => upsert(id, { id, mode: 'resynced' })), sweep(11, 1)]),
    );
    expect(await ids(l)).toEqual(range(1, 10));
    expect(new Set((await mirrorRows(l)).items.map((r) => r.row.mode))).toEqual(new Set(['resynced']));
    const tombstones = await t.store.db
      .selectFrom('edge_mirror_tombstones')
      .selectAll()
      .where('lineage_id', '=', l.lineage_id)
      .execute();
    expect(tombstones.map((x) => x.pk_hash).sort()).toEqual(
      range(11, 20)
        .map((id) => pkHash({ id }))
        .sort(),
    );
    // A late change from before the sweep cannot bring a swept row back; a newer one can.
    await l.append(l.accepted(e1, [upsert(30, { id: 15, mode: 'late' })]));
    expect(await ids(l)).toEqual(range(1, 10));
    await l.append(l.accepted(e2, [upsert(12, { id: 15, mode: 'new' })]));
    expect(await ids(l)).toEqual([...range(1, 10), 15]);
  });

  it('sweeps only the named buckets, after the changes before it in the same batch', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    await l.append(
      l.accepted(
        e,
        range(1, 60).map((id) => upsert(id, { id, mode: 'a' })),
      ),
    );
    // The device lost ids 4 and 5 without a delete; the repair resyncs their buckets.
    const buckets = [...new Set([4, 5].map((id) => bucketOf({ id })))];
    const inBuckets = range(1, 60).filter((id) => buckets.includes(bucketOf({ id })));
    const resent = inBuckets.filter((id) => id !== 4 && id !== 5);
    const first = 61;
    await l.append(
      l.accepted(e, [
        ...resent.map((id, i) => upsert(first + i, { id, mode: 'b' })),
        sweep(first + resent.length, first, buckets),
        upsert(first + resent.length + 1, { id: 100, mode: 'after' }),
      ]),
    );
    expect(await ids(l)).toEqual([...range(1, 60).filter((id) => id !== 4 && id !== 5), 100]);
  });

  it('replays a staged sweep in order and lists it among staged rows', async () => {
    const l = lineage(DEVICE_STATE);
    const review = uuidv7();
    const e = uuidv7();
    await l.append(
      l.registered(),
      l.observed(DEVICE_STATE),
      l.queued(review, DEVICE_STATE),
      l.paused('schema_review'),
    );
    const s = sweep(5, 3);
    await l.append(
      l.staged(e, [
        upsert(1, { id: 1, mode: 'gone' }),
        upsert(2, { id: 2, mode: 'gone' }),
        upsert(3, { id: 3, mode: 'kept' }),
        upsert(4, { id: 4, mode: 'kept' }),
        s,
      ]),
    );
    await projector.waitForCaughtUp();
    const staged = await listStagedRows(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id });
    expect(staged.items.find((r) => r.op === 'sweep')).toMatchObject({
      commit_seq: 5,
      pk: {},
      sweep: s.sweep,
    });
    await l.append(l.claimed(review));
    await l.append(
      l.approved(review, DEVICE_STATE, bindAll(DEVICE_STATE)),
      l.resumed('schema_review'),
      l.released(uuidv7(), DEVICE_STATE),
    );
    expect(await ids(l)).toEqual([3, 4]);
  });

  it('sweeps only its own device rows in a coalesced table', async () => {
    const registry = uuidv7();
    const a = await coalescedLineage(DEVICE_STATE, registry);
    const b = await coalescedLineage(DEVICE_STATE, registry);
    const e = uuidv7();
    await a.append(
      a.accepted(
        e,
        range(1, 10).map((id) => upsert(id, { id, mode: 'a' })),
      ),
    );
    await b.append(
      b.accepted(
        e,
        range(1, 10).map((id) => upsert(id, { id, mode: 'b' })),
      ),
    );
    const all = [...new Set(range(1, 10).map((id) => bucketOf({ id })))];
    await a.append(a.accepted(e, [upsert(11, { id: 2, mode: 'a2' }), sweep(12, 11, all)]));
    const pa = await mirrorRows(a);
    expect(pa.table).toMatch(/^edge_mirror_p/);
    expect(pa.items.map((r) => r.row)).toEqual([{ id: 2, mode: 'a2' }]);
    expect(await ids(b)).toEqual(range(1, 10));
  });

  it('never materializes refused changes and shows them on the lineage', async () => {
    const l = await approvedLineage(DEVICE_STATE);
    const e = uuidv7();
    const refused: RowChange = {
      commit_seq: 2,
      op: 'refused',
      pk: { id: 2 },
      row: null,
      refusal: { code: 'unencodable_text', column: 'mode', message: 'mode is not valid UTF-8' },
    };
    await l.append(l.accepted(e, [upsert(1, { id: 1, mode: 'ok' })]), {
      type: 'RowsRefused',
      data: { batch_id: uuidv7(), journal_epoch: e, schema_hash: schemaHash(DEVICE_STATE), rows: [refused] },
    });
    // Defensive: a refused change inside accepted rows is not written either.
    await l.append(l.accepted(e, [{ ...refused, commit_seq: 3, pk: { id: 3 } }]));
    expect(await ids(l)).toEqual([1]);
    const detail = await getLineage(t.store.db, PROJECT, l.lineage_id);
    expect(detail).toMatchObject({ refused_rows: 1, last_commit_seq: 3 });
    expect(detail!.recent_refusals).toEqual([
      {
        code: 'unencodable_text',
        commit_seq: 2,
        journal_epoch: e,
        pk: { id: 2 },
        column: 'mode',
        message: 'mode is not valid UTF-8',
        at: expect.any(String),
      },
    ]);
  });

  describe('verify', () => {
    const columns = ['id', 'mode'];
    /** The device's digests over its rows, as the agent computes them. */
    const digestsOf = (rows: Record<string, WireValue>[]) => {
      const d = new BucketDigests();
      for (const r of rows) d.addRow({ id: r.id! }, r, columns);
      return d.list();
    };
    const reported = (
      verify_id: string,
      epoch: string,
      through: number,
      rows: Record<string, WireValue>[],
      cols = columns,
    ): LineageEvent => ({
      type: 'VerifyReported',
      data: {
        verify_id,
        journal_epoch: epoch,
        through_commit_seq: through,
        schema_hash: schemaHash(DEVICE_STATE),
        columns: cols,
        digests: digestsOf(rows),
      },
    });
    const runs = async (l: TestLineage) => {
      await projector.waitForCaughtUp();
      return (await listVerifyRuns(t.store.db, { project_id: PROJECT, lineage_id: l.lineage_id })).items;
    };
    const outcomeOf = async (l: TestLineage, verifyId: string) => {
      await waitFor(() => commands.verifyOutcomes.some((o) => o.info.verify_id === verifyId), {
        message: `outcome of ${verifyId} sent`,
      });
      return commands.verifyOutcomes.find((o) => o.info.verify_id === verifyId)!;
    };

    it('reports equal, then the divergent bucket of a row corrupted in the store', async () => {
      const l = await approvedLineage(DEVICE_STATE);
      const e = uuidv7();
      const device = range(1, 40).map((id) => ({ id, mode: `m${id}` }) as Record<string, WireValue>);
      const v1 = uuidv7();
      await l.append(
        l.accepted(
          e,
          device.map((r, i) => upsert(i + 1, r)),
        ),
      );
      await l.append(reported(v1, e, 40, device));
      const sent = await outcomeOf(l, v1);
      expect(sent).toEqual({
        lineageId: l.lineage_id,
        info: { verify_id: v1, outcome: 'equal', divergent_buckets: [], device_rows: 40, mirror_rows: 40 },
      });

      const table = (await mirrorRows(l)).table!;
      await t.store.dialect.exec(
        t.store.db,
        `UPDATE ${quoteIdent(table)} SET "mode" = 'corrupt' WHERE "id" = 7`,
        [],
      );
      const v2 = uuidv7();
      await l.append(reported(v2, e, 40, device));
      expect((await outcomeOf(l, v2)).info).toMatchObject({
        outcome: 'divergent',
        divergent_buckets: [bucketOf({ id: 7 })],
        device_rows: 40,
        mirror_rows: 40,
      });
      const list = await runs(l);
      expect(list.map((r) => [r.verify_id, r.outcome])).toEqual([
        [v2, 'divergent'],
        [v1, 'equal'],
      ]);
      expect(list[0]).toMatchObject({
        journal_epoch: e,
        through_commit_seq: 40,
        columns,
        completed_at: null,
      });
    });

    it('compares at the report position: rows after it are not counted yet', async () => {
      const l = await approvedLineage(DEVICE_STATE);
      const e = uuidv7();
      const device = range(1, 5).map((id) => ({ id, mode: 'x' }) as Record<string, WireValue>);
      const v = uuidv7();
      await l.append(
        l.accepted(
          e,
          device.map((r, i) => upsert(i + 1, r)),
        ),
        reported(v, e, 5, device),
        l.accepted(e, [upsert(6, { id: 6, mode: 'later' })]),
      );
      expect((await outcomeOf(l, v)).info).toMatchObject({ outcome: 'equal', mirror_rows: 5 });
    });

    it('is not comparable with staged rows waiting or a column that is not mirrored', async () => {
      const bindings = bindAll(DEVICE_STATE, { mode: { action: 'ignore', target: null } });
      const l = await approvedLineage(DEVICE_STATE, bindings);
      const e = uuidv7();
      await l.append(l.accepted(e, [upsert(1, { id: 1, mode: 'a' })]));
      const v1 = uuidv7();
      await l.append(reported(v1, e, 1, [{ id: 1, mode: 'a' }]));
      expect((await outcomeOf(l, v1)).info).toMatchObject({
        outcome: 'not_comparable',
        detail: expect.stringContaining('mode'),
      });
      const v2 = uuidv7();
      await l.append(l.staged(e, [upsert(2, { id: 2, mode: 'b' })], { reason: 'lineage_paused' }));
      await l.append(reported(v2, e, 2, [{ id: 1 }, { id: 2 }], ['id']));
      expect((await outcomeOf(l, v2)).info).toMatchObject({
        outcome: 'not_comparable',
        detail: expect.stringContaining('staged'),
      });
    });

    it('keeps the outcome in the outbox until VerifyCompleted, re-sends it after a restart, never while rebuilding', async () => {
      const l = await approvedLineage(DEVICE_STATE);
      const e = uuidv7();
      const v = uuidv7();
      await l.append(
        l.accepted(e, [upsert(1, { id: 1, mode: 'a' })]),
        reported(v, e, 1, [{ id: 1, mode: 'a' }]),
      );
      await outcomeOf(l, v);
      const sends = () => commands.verifyOutcomes.filter((o) => o.info.verify_id === v).length;
      const outbox = () =>
        t.store.db
          .selectFrom('edge_mirror_reports')
          .selectAll()
          .where('lineage_id', '=', l.lineage_id)
          .execute();
      expect(await outbox()).toHaveLength(1);
      // As if the process died after the commit and before the send: a restart sends it again.
      await projector.stop();
      projector = await startProjector({
        nc: nats.nc,
        store: t.store,
        commands,
        only: ['mirror', 'lineages', 'staged_rows'],
      });
      await waitFor(() => sends() === 2, { message: 'outcome re-sent after restart' });
      // The domain recorded it: the outbox copy goes and the run shows it completed.
      await l.append({
        type: 'VerifyRequested',
        data: {
          verify_id: v,
          control_id: uuidv7(),
          columns,
          trigger: 'operator',
          requested_at: '2026-04-28T10:00:00.000Z',
        },
      });
      await l.append({
        type: 'VerifyCompleted',
        data: { verify_id: v, outcome: 'equal', divergent_buckets: [], device_rows: 1, mirror_rows: 1 },
      });
      await waitFor(async () => (await outbox()).length === 0, { message: 'outbox emptied' });
      expect((await runs(l))[0]!.completed_at).not.toBeNull();
      const detail = await getLineage(t.store.db, PROJECT, l.lineage_id);
      expect(detail!.verify).toMatchObject({
        verify_id: v,
        status: 'completed',
        outcome: 'equal',
        divergent_buckets: [],
      });
      // A rebuild sends nothing (the outcome was taken) and reproduces the run.
      const before = sends();
      await projector.rebuild('mirror');
      expect(sends()).toBe(before);
      expect((await runs(l)).map((r) => r.verify_id)).toEqual([v]);
    });
  });

  it('shows the last resync on the lineage and reopens a rejected review', async () => {
    const l = lineage(DEVICE_STATE);
    const review = uuidv7();
    await l.append(
      l.registered(),
      l.observed(DEVICE_STATE),
      l.queued(review, DEVICE_STATE),
      l.paused('schema_review'),
    );
    await l.append(l.claimed(review));
    await l.append({
      type: 'SchemaReviewRejected',
      data: { review_id: review, action_version: 3, reason: 'no' },
    });
    await l.append({ type: 'SchemaReviewReopened', data: { review_id: review, action_version: 4 } });
    const resync = uuidv7();
    await l.append({
      type: 'ResyncRequested',
      data: { resync_id: resync, control_id: uuidv7(), buckets: [3, 9], reason: 'verify_repair' },
    });
    await projector.waitForCaughtUp();
    expect(await getReview(t.store.db, PROJECT, review)).toMatchObject({
      status: 'queued',
      action_version: 4,
      reason: null,
    });
    expect((await getLineage(t.store.db, PROJECT, l.lineage_id))!.resync).toMatchObject({
      resync_id: resync,
      reason: 'verify_repair',
      buckets: [3, 9],
    });
  });
});
